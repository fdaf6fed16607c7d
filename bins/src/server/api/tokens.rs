//! Tokens: issuing (login and `POST /v3/tokens`), listing only one's own unless allowed more, logout.
//! The secret is shown once, in the response that creates the token; only its hash is stored. A
//! cluster-scoped token is minted only for someone with access to the cluster, and records the
//! cluster's uid: it never works for a later cluster of the same name.

use async_trait::async_trait;
use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use rancher_auth::token::{ApiToken, CSRF_COOKIE, SESSION_COOKIE, USER_ID_LABEL};
use rancher_core::model::{Cluster, Token, TokenSpec, User};
use rancher_core::store::Api;
use serde_json::{Value, json};

use super::body::json_object;
use super::crud::to_output;
use super::kind::{ApiKind, Ctx, OwnFilter};
use crate::server::auth::{Caller, is_cluster_admin};
use crate::server::cleanup::owner::{self, CLUSTER_UID_ANNOTATION};
use crate::server::error::{ApiError, ApiResult};
use crate::server::state::AppState;

/// Lifetime of a login session when the request names none: 16 hours, Rancher's default.
pub(crate) const DEFAULT_SESSION_TTL_MS: i64 = 16 * 3600 * 1000;

/// The longest any token lives unless `--auth-token-max-ttl` says otherwise: 90 days (Rancher's
/// `auth-token-max-ttl-minutes`).
pub const DEFAULT_TOKEN_MAX_TTL_MS: i64 = 90 * 24 * 3600 * 1000;

/// The lifetime a new token gets: what was asked, `0` meaning "as long as allowed", and never more
/// than the server's maximum `max_ms` (`0` there: no maximum, so `0` asked is "never expires").
///
/// # Errors
/// A 422 for a negative TTL.
pub(crate) fn bounded_ttl(requested_ms: i64, max_ms: i64) -> ApiResult<i64> {
    if requested_ms < 0 {
        return Err(ApiError::invalid_field(
            "ttl",
            "must be 0 (as long as the server allows) or a positive number of milliseconds",
        ));
    }
    Ok(match (requested_ms, max_ms) {
        (r, m) if m <= 0 => r,
        (0, m) => m,
        (r, m) => r.min(m),
    })
}

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
        // Only the description changes, and whether the token is enabled. Who it acts for, its
        // scope and its lifetimes never do: a cluster-scoped or short-lived token cannot widen itself.
        let (description, enabled) = (std::mem::take(&mut self.spec.description), self.spec.enabled);
        self.spec = old.spec.clone();
        self.spec.description = description;
        // Re-enabling a disabled token is for those who may update every token (admins).
        self.spec.enabled = enabled && (old.spec.enabled || cx.caller.can("update", "tokens", None));
        self.metadata.labels.insert(USER_ID_LABEL.into(), old.spec.user_id.clone());
        owner::preserve(&mut self.metadata, &old.metadata, CLUSTER_UID_ANNOTATION);
        Ok(())
    }
}

/// What a new token is for.
pub(crate) struct TokenRequest {
    pub(crate) kind: &'static str,
    pub(crate) ttl_ms: i64,
    pub(crate) description: String,
    pub(crate) derived: bool,
    /// When not empty, the token works for this cluster's proxy only.
    pub(crate) cluster_name: String,
    /// The provider the user logged in with; empty for `local`.
    pub(crate) auth_provider: String,
    /// The user's principal at that provider; empty for `local://<user id>`.
    pub(crate) user_principal: String,
    /// The user's group principals at login.
    pub(crate) group_principals: Vec<String>,
}

impl TokenRequest {
    /// A request for a token of the local provider.
    pub(crate) fn local(kind: &'static str, ttl_ms: i64, description: String, derived: bool) -> Self {
        TokenRequest {
            kind,
            ttl_ms,
            description,
            derived,
            cluster_name: String::new(),
            auth_provider: String::new(),
            user_principal: String::new(),
            group_principals: Vec::new(),
        }
    }
}

/// Issues a token for `user`: stores the hash, returns the stored object and the one-time credential.
/// Every token is issued here, so every one gets a lifetime within the server's maximum
/// ([`bounded_ttl`]).
pub(crate) async fn issue(state: &AppState, user: &User, req: TokenRequest) -> ApiResult<(Token, ApiToken)> {
    let ttl = bounded_ttl(req.ttl_ms, state.max_token_ttl_ms)?;
    // A cluster-scoped token is one of the cluster as it exists now.
    let cluster = if req.cluster_name.is_empty() {
        None
    } else {
        match Api::<Cluster>::all(state.store.clone()).get_opt(&req.cluster_name).await? {
            Some(c) if c.metadata.deletion_timestamp.is_none() => Some(c),
            _ => {
                return Err(ApiError::invalid_field(
                    "clusterId",
                    format!("cluster {:?} not found", req.cluster_name),
                ));
            }
        }
    };
    let tokens: Api<Token> = Api::all(state.store.clone());
    // A 5-character id collides rarely; retry a few times rather than fail the login.
    for _ in 0..5 {
        let secret = ApiToken::generate();
        let mut obj = Token::new(
            secret.name(),
            TokenSpec {
                user_id: user.metadata.name.clone(),
                auth_provider: if req.auth_provider.is_empty() {
                    "local".into()
                } else {
                    req.auth_provider.clone()
                },
                user_principal: if req.user_principal.is_empty() {
                    format!("local://{}", user.metadata.name)
                } else {
                    req.user_principal.clone()
                },
                group_principals: req.group_principals.clone(),
                ttl,
                description: req.description.clone(),
                kind: req.kind.into(),
                is_derived: req.derived,
                cluster_name: req.cluster_name.clone(),
                enabled: true,
                ..Default::default()
            },
        );
        obj.metadata.labels.insert(USER_ID_LABEL.into(), user.metadata.name.clone());
        if let Some(c) = &cluster {
            owner::stamp(&mut obj.metadata, CLUSTER_UID_ANNOTATION, &c.metadata);
        }
        obj.status.hash = secret.hash();
        match tokens.create(&obj).await {
            Ok(mut stored) => {
                stored.status.expires_at = rancher_auth::token::expires_at(&stored);
                return Ok((stored, secret));
            }
            Err(rancher_core::store::StoreError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Internal("could not find a free token name".into()))
}

/// The response to a token's creation: the object plus `"token": "token-xxxxx:<secret>"`. A browser
/// login (`cookie`) also gets the session cookie and, readable by the page, the `CSRF` cookie its
/// state-changing requests must echo in `X-API-CSRF`.
pub(crate) fn created_response(stored: Token, secret: &ApiToken, cookie: bool) -> ApiResult<Response> {
    let mut out = to_output(stored)?;
    out["token"] = secret.expose().into();
    let mut resp = (StatusCode::CREATED, Json(out)).into_response();
    if cookie {
        let csrf = rancher_auth::proxy::new_csrf_token();
        for value in [
            format!("{SESSION_COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Lax", secret.expose()),
            format!("{CSRF_COOKIE}={csrf}; Path=/; Secure; SameSite=Strict"),
        ] {
            let value = http::HeaderValue::from_str(&value).map_err(|e| ApiError::Internal(e.to_string()))?;
            resp.headers_mut().append(http::header::SET_COOKIE, value);
        }
    }
    Ok(resp)
}

fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// A token scoped to `cluster` is for those who may reach it: admins, and members through a cluster
/// or project role template binding. Everyone else — a cluster that does not exist included, so ids
/// cannot be probed — is refused.
async fn may_use_cluster(state: &AppState, caller: &Caller, cluster: &str) -> ApiResult<()> {
    if is_cluster_admin(&caller.rules) {
        return Ok(());
    }
    let identity = crate::server::kubeconfig::caller_identity(caller);
    let member = crate::server::proxy::has_binding(&state.store, &identity, cluster)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    if member {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "user {} has no role in cluster {cluster:?}: a token scoped to a cluster needs a cluster or project \
         membership there",
        caller.user_id()
    )))
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
            Api::<Token>::all(state.store.clone()).delete(&caller.token_name).await?;
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
                may_use_cluster(&state, &caller, &cluster_name).await?;
            }
            let req = TokenRequest { cluster_name, ..TokenRequest::local("api", ttl_ms, description, true) };
            let (stored, secret) = issue(&state, &caller.user, req).await?;
            created_response(stored, &secret, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_bounded_by_the_maximum_and_zero_asks_for_the_maximum() {
        let max = DEFAULT_TOKEN_MAX_TTL_MS;
        assert_eq!(bounded_ttl(0, max).unwrap(), max, "never expiring becomes the maximum");
        assert_eq!(bounded_ttl(i64::MAX, max).unwrap(), max);
        assert_eq!(bounded_ttl(1000, max).unwrap(), 1000);
        assert_eq!(bounded_ttl(max, max).unwrap(), max);
        // Without a maximum, what was asked, including never.
        assert_eq!(bounded_ttl(0, 0).unwrap(), 0);
        assert_eq!(bounded_ttl(i64::MAX, 0).unwrap(), i64::MAX);
        assert!(matches!(bounded_ttl(-1, max), Err(ApiError::Invalid { .. })));
        assert!(matches!(bounded_ttl(-1, 0), Err(ApiError::Invalid { .. })));
    }
}
