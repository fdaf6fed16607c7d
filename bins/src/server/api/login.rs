//! `POST /v3-public/localProviders/local?action=login`: the request and response of a local login;
//! the throttle, the password check and the session token are [`services::login`].

use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::response::Response;
use http::HeaderMap;
use serde::Deserialize;

use super::body::json_object;
use super::tokens;
use crate::server::error::{ApiError, ApiResult};
use crate::server::services::login::{self as service, LoginRequest};
use crate::server::state::AppState;

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
    let action = crate::server::api::query_value(query.as_deref(), "action");
    if action.as_deref() != Some("login") {
        return Err(ApiError::NotFound("the local provider supports ?action=login".into()));
    }
    let map = json_object(&headers, body, state.body_limit).await?;
    let input: LoginInput = serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| ApiError::BadRequest(format!("login needs \"username\" and \"password\": {e}")))?;
    let req = LoginRequest {
        username: input.username,
        password: input.password,
        client: peer.map(|Extension(ConnectInfo(addr))| addr.ip()),
        ttl_ms: input.ttl,
        description: input.description,
    };
    let (stored, secret) =
        service::login_local(&state.store, &state.login_throttle, state.max_token_ttl_ms, req).await?;
    tokens::created_response(stored, &secret, input.response_type == "cookie")
}
