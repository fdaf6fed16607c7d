//! `/v3/tokens` over [`services::tokens`](crate::server::services::tokens): creating (`POST`), listing
//! only one's own unless allowed more, updating the description and `enabled`, and logout. The secret
//! is shown once, in the response that creates the token (here, and for logins).

use async_trait::async_trait;
use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use rancher_auth::token::{ApiToken, CSRF_COOKIE, SESSION_COOKIE, USER_ID_LABEL};
use rancher_core::model::Token;
use serde_json::{Value, json};

use super::body::json_object;
use super::crud::to_output;
use super::kind::{ApiKind, Ctx, OwnFilter};
use super::query_value;
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiResult};
use crate::server::services::tokens::{self, TokenRequest};
use crate::server::state::AppState;

#[async_trait]
impl ApiKind for Token {
    const TYPE: &'static str = "token";
    const SELF_VERBS: &'static [&'static str] = &["get", "list", "delete"];

    fn owned_by(&self, caller: &Caller) -> bool {
        self.spec.user_id == caller.user_id()
    }

    fn own_filter(caller: &Caller) -> Option<OwnFilter> {
        Some(OwnFilter { label: USER_ID_LABEL, value: caller.user_id().to_owned() })
    }

    fn redact(&mut self) {
        self.status.hash.clear();
    }

    async fn prepare_update(&mut self, old: &Self, cx: &Ctx<'_>) -> ApiResult<()> {
        // Re-enabling a disabled token is for those who may update every token (admins).
        tokens::restrict_update(self, old, cx.caller.can("update", "tokens", None));
        Ok(())
    }
}

/// The response to a token's creation: the object plus `"token": "token-xxxxx:<secret>"`. A browser
/// login (`cookie`) gets the secret only in the HttpOnly session cookie (not in the body, where the
/// page's scripts could read it) and, readable by the page, the `CSRF` cookie its state-changing
/// requests must echo in `X-API-CSRF`.
pub(crate) fn created_response(stored: Token, secret: &ApiToken, cookie: bool) -> ApiResult<Response> {
    let mut out = to_output(stored)?;
    // A browser's session is its HttpOnly cookie: the page's scripts never see the secret.
    if !cookie {
        out["token"] = secret.expose().into();
    }
    let mut resp = (StatusCode::CREATED, Json(out)).into_response();
    if cookie {
        let csrf = rancher_auth::proxy::new_csrf_token();
        for value in [
            format!("{SESSION_COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Lax", secret.expose()),
            format!("{CSRF_COOKIE}={csrf}; Path=/; Secure; SameSite=Strict"),
        ] {
            let value = http::HeaderValue::from_str(&value).map_err(ApiError::encode("a cookie"))?;
            resp.headers_mut().append(http::header::SET_COOKIE, value);
        }
    }
    Ok(resp)
}

/// `POST /v3/tokens`: creates an API token for the caller; `?action=logout` revokes the caller's token.
pub(crate) async fn post(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    match query_value(query.as_deref(), "action").as_deref() {
        Some("logout") => {
            tokens::revoke(&state.store, &caller.token_name).await?;
            let mut resp = (StatusCode::OK, Json(json!({}))).into_response();
            let expire = format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure");
            if let Ok(v) = http::HeaderValue::from_str(&expire) {
                resp.headers_mut().insert(http::header::SET_COOKIE, v);
            }
            Ok(resp)
        }
        Some(other) => {
            Err(ApiError::BadRequest(format!("unknown action {other:?} on tokens (known: logout)")))
        }
        None => {
            let map = json_object(&headers, body, state.body_limit).await?;
            let ttl_ms = match map.get("ttl") {
                None | Some(Value::Null) => 0,
                Some(v) => v
                    .as_i64()
                    .ok_or_else(|| ApiError::invalid_field("ttl", "must be an integer (milliseconds)"))?,
            };
            let description = map.get("description").and_then(Value::as_str).unwrap_or_default().to_owned();
            let cluster_name = match map.get("clusterId").or_else(|| map.get("clusterName")) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(c)) if rancher_core::validation::dns1123_label(c).is_ok() => c.clone(),
                Some(_) => return Err(ApiError::invalid_field("clusterId", "must be a cluster id")),
            };
            if !cluster_name.is_empty() {
                tokens::check_cluster_scope(&state.store, &caller, &cluster_name).await?;
            }
            let req = TokenRequest { cluster_name, ..TokenRequest::local("api", ttl_ms, description, true) };
            let (stored, secret) =
                tokens::issue(&state.store, state.max_token_ttl_ms, &caller.user, req).await?;
            created_response(stored, &secret, false)
        }
    }
}
