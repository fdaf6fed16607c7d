//! `POST /v3-public/localProviders/local?action=login`: username and password in, a session token out.
//! Attempts are counted per (username, client address) and per address ([`LoginThrottle`]) before the
//! password is checked, and the check itself runs within the server's limit on password hashing.

use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::response::Response;
use http::HeaderMap;
use jiff::Timestamp;
use rancher_core::model::User;
use rancher_core::store::Api;
use serde::Deserialize;

use super::body::json_object;
pub(crate) use super::login_throttle::{LoginThrottle, ThrottlePolicy};
use super::tokens::{self, DEFAULT_SESSION_TTL_MS, TokenRequest};
use crate::server::error::{ApiError, ApiResult};
use crate::server::identity::local::VerifyError;
use crate::server::state::AppState;

/// The same answer for an unknown user and a wrong password, so logins do not reveal who exists.
pub(crate) const LOGIN_FAILED: &str = "authentication failed: wrong username or password";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginInput {
    username: String,
    password: String,
    #[serde(default)]
    ttl: Option<i64>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    response_type: String,
}

/// The login action.
pub(crate) async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let action = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "action")
        .map(|(_, v)| v.into_owned());
    if action.as_deref() != Some("login") {
        return Err(ApiError::NotFound("the local provider supports ?action=login".into()));
    }
    let map = json_object(&headers, body, state.body_limit).await?;
    let input: LoginInput = serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| ApiError::BadRequest(format!("login needs \"username\" and \"password\": {e}")))?;
    let ip = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    let attempt = state.login_throttle.begin(&input.username, ip).await?;
    let local = crate::server::identity::local::LocalProvider::new(state.store.clone());
    let verified = match local.verify(&input.username, &input.password).await {
        Ok(verified) => verified,
        Err(e) => {
            attempt.not_checked();
            return Err(match e {
                VerifyError::Hashing(e) => e.into(),
                VerifyError::Store(e) => ApiError::Unavailable(format!("checking the password: {e}")),
            });
        }
    };
    let Some(user) = verified else {
        attempt.failed();
        return Err(ApiError::Unauthenticated(LOGIN_FAILED.into()));
    };
    attempt.succeeded();
    let req =
        TokenRequest::local("session", input.ttl.unwrap_or(DEFAULT_SESSION_TTL_MS), input.description, false);
    let (stored, secret) = tokens::issue(&state, &user, req).await?;
    record_login(&state, user).await;
    tokens::created_response(stored, &secret, input.response_type == "cookie")
}

/// Notes the login time; a failure here (e.g. a concurrent update) does not fail the login.
async fn record_login(state: &AppState, mut user: User) {
    user.status.last_login = Some(Timestamp::now());
    if let Err(e) = Api::<User>::all(state.store.clone()).update(&user).await {
        tracing::debug!(user = %user.metadata.name, "recording the login time: {e}");
    }
}
