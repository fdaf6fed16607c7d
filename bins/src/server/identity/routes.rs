//! `/v3-public/<kind>Providers/<name>`: one route for every identity provider, found by name in the
//! registry ([`Providers`](super::Providers)). `POST ?action=login` logs in — with
//! `{"username","password"}` at a password provider, with `{"code","state"}` after an authorization-code
//! redirect — and `GET ?action=authorize` starts an authorization-code login. `local` keeps its own
//! handler (its throttle and last-login bookkeeping).

use std::collections::HashMap;

use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::response::Response;
use http::{HeaderMap, Method};

use super::login::{password_login, provider_error};
use super::{PASSWORD_ONLY, Providers, local, oauth, route_kind};
use crate::server::api::{local_login, read_json_object};
use crate::server::error::{ApiError, ApiResult};
use crate::server::state::AppState;

/// `GET /v3-public/authProviders`: the providers a login page offers — each one's id, its kind (the
/// `<kind>Providers` of its login path), and whether it logs in with a password here (`local`, LDAP,
/// Active Directory) or by a redirect to the provider (GitHub, OIDC).
pub(crate) async fn list(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    let names = std::iter::once(local::LOCAL).chain(state.providers.names());
    let data: Vec<serde_json::Value> = names
        .map(|name| {
            serde_json::json!({
                "id": name,
                "type": format!("{}Provider", route_kind(name)),
                "kind": route_kind(name),
                "password": PASSWORD_ONLY.contains(&name),
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "type": "collection", "data": data }))
}

/// The methods of `/v3-public/{kind}/{name}`.
pub(crate) fn methods() -> axum::routing::MethodRouter<AppState> {
    axum::routing::get(provider_action).post(provider_action)
}

/// Dispatches a provider action to the provider named in the path.
async fn provider_action(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    method: Method,
    peer: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let not_found = || {
        ApiError::NotFound(format!(
            "no identity provider at /v3-public/{kind}/{name}: providers are served at \
             /v3-public/<kind>Providers/<name>"
        ))
    };
    if kind.strip_suffix("Providers") != Some(route_kind(&name)) {
        return Err(not_found());
    }
    if method == Method::GET && PASSWORD_ONLY.contains(&name.as_str()) {
        return Err(ApiError::MethodNotAllowed(format!(
            "GET is not supported on /v3-public/{kind}/{name}: POST ?action=login"
        )));
    }
    if name == local::LOCAL {
        return local_login(State(state), peer, RawQuery(query), headers, body).await;
    }
    let provider = match state.providers.get(&name).await {
        None => return Err(ApiError::NotFound(Providers::missing(&name))),
        Some(Err(e)) => return Err(provider_error(e)),
        Some(Ok(p)) => p,
    };
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    match (method, params.get("action").map(String::as_str)) {
        (Method::GET, Some("authorize")) => oauth::authorize(&state, provider, &params).await,
        (Method::POST, Some("login")) => {
            let map = read_json_object(&headers, body, state.body_limit).await?;
            if map.contains_key("code") {
                oauth::code_login(&state, provider, map).await
            } else {
                let ip = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
                password_login(&state, provider, ip, map).await
            }
        }
        _ => Err(ApiError::NotFound(format!(
            "the {name} provider supports POST ?action=login and GET ?action=authorize"
        ))),
    }
}
