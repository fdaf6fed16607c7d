//! Authorization-code login through OIDC and GitHub:
//!
//! - `GET /v3-public/<kind>Providers/<name>?action=authorize&redirectUri=URI` (OIDC, GitHub, or a
//!   plugged-in provider whose `authorize_url` is implemented) answers
//!   `{"redirectUrl": "<provider authorize URL>", "state": "…"}`. The state, nonce and PKCE verifier stay
//!   here ([`PendingLogins`]: at most [`MAX_PENDING`], each for [`PENDING_TTL`], used once).
//! - `POST` the same path with `?action=login` and `{"code","state"}` exchanges the code and answers with
//!   a session token, exactly as local login does.
//!
//! Redirect URIs are limited to loopback (`http://127.0.0.1:<port>/…`, for `rancherctl login --oidc`) and
//! the server's own URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use rancher_auth::providers::{
    AuthProvider, AuthorizeRequest, Credentials, Error as ProviderError, OAuthCallback, Pkce,
};
use serde::Deserialize;
use serde_json::json;

use super::login::{local_user, provider_error, session_token};
use crate::server::error::{ApiError, ApiResult};
use crate::server::state::AppState;

/// The most logins waiting for their redirect at once; older ones are dropped first.
pub(crate) const MAX_PENDING: usize = 1024;
/// How long a login may wait for its redirect.
pub(crate) const PENDING_TTL: Duration = Duration::from_secs(10 * 60);

/// What the server keeps between the authorize and the login call of one login.
struct Pending {
    provider: &'static str,
    request: AuthorizeRequest,
    pkce: Pkce,
    created: Instant,
}

/// Logins waiting for their code, by state.
#[derive(Default)]
pub(crate) struct PendingLogins {
    map: Mutex<HashMap<String, Pending>>,
}

impl PendingLogins {
    fn insert(&self, provider: &'static str, request: AuthorizeRequest, pkce: Pkce) {
        let mut map = self.map.lock().expect("pending logins");
        map.retain(|_, p| p.created.elapsed() < PENDING_TTL);
        while map.len() >= MAX_PENDING {
            let oldest = map.iter().min_by_key(|(_, p)| p.created).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(request.state.clone(), Pending { provider, request, pkce, created: Instant::now() });
    }

    /// Removes and returns the login of `state` if it is this provider's and still fresh.
    fn take(&self, provider: &str, state: &str) -> Option<Pending> {
        let mut map = self.map.lock().expect("pending logins");
        let p = map.remove(state)?;
        (p.provider == provider && p.created.elapsed() < PENDING_TTL).then_some(p)
    }
}

/// Accepts `http://127.0.0.1:<port>/…` and URIs under the server's own URL; nothing else.
fn check_redirect(uri: &str, server_url: &str) -> ApiResult<()> {
    let bad = |why: &str| ApiError::BadRequest(format!("redirectUri {uri:?}: {why}"));
    let url = url::Url::parse(uri).map_err(|e| bad(&e.to_string()))?;
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry a fragment or credentials"));
    }
    let loopback = url.scheme() == "http"
        && url.host() == Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
        && url.port().is_some();
    let server = url::Url::parse(server_url).ok().is_some_and(|s| {
        s.scheme() == url.scheme()
            && s.host() == url.host()
            && s.port_or_known_default() == url.port_or_known_default()
            && url.path().starts_with(s.path().trim_end_matches('/'))
    });
    if loopback || server {
        Ok(())
    } else {
        Err(bad("only http://127.0.0.1:<port>/… or this server's URL is accepted"))
    }
}

/// `GET ?action=authorize`: the provider's authorization URL for `redirectUri`.
pub(super) async fn authorize(
    state: &AppState,
    provider: Arc<dyn AuthProvider>,
    params: &HashMap<String, String>,
) -> ApiResult<Response> {
    let redirect = params
        .get("redirectUri")
        .ok_or_else(|| ApiError::BadRequest("authorize needs ?redirectUri=".into()))?;
    check_redirect(redirect, state.registration.server_url())?;
    let pkce = Pkce::new_s256();
    let request = AuthorizeRequest::new(redirect.clone(), &pkce);
    let url = match provider.authorize_url(&request).await {
        Ok(url) => url,
        Err(ProviderError::Unsupported { .. }) => {
            return Err(ApiError::MethodNotAllowed(format!(
                "the {} provider takes a user name and password: POST ?action=login",
                provider.name()
            )));
        }
        Err(e) => return Err(provider_error(e)),
    };
    let body = json!({"redirectUrl": url.as_str(), "state": request.state});
    state.providers.pending.insert(provider.name(), request, pkce);
    let resp = Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(Body::from(body.to_string()))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CodeInput {
    code: String,
    state: String,
    #[serde(default)]
    ttl: Option<i64>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    response_type: String,
}

/// `POST ?action=login` with `{"code","state"}`: exchanges the code of a login begun by [`authorize`].
pub(super) async fn code_login(
    state: &AppState,
    provider: Arc<dyn AuthProvider>,
    body: serde_json::Map<String, serde_json::Value>,
) -> ApiResult<Response> {
    let input: CodeInput = serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|e| ApiError::BadRequest(format!("login needs \"code\" and \"state\": {e}")))?;
    if input.code.is_empty() {
        return Err(ApiError::BadRequest("\"code\" is empty".into()));
    }
    let Some(pending) = state.providers.pending.take(provider.name(), &input.state) else {
        return Err(ApiError::Unauthenticated(
            "unknown, used or expired login state: start the login again".into(),
        ));
    };
    let callback = OAuthCallback::new(input.code, &pending.request, &pending.pkce);
    let identity = provider.authenticate(&Credentials::OAuthCode(callback)).await.map_err(provider_error)?;
    let user = local_user(&state.store, &identity).await?;
    session_token(
        state,
        provider.name(),
        &identity,
        &user,
        input.ttl,
        input.description,
        &input.response_type,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_the_server_itself_are_redirect_targets() {
        let server = "https://rancher.example.org:8443";
        assert!(check_redirect("http://127.0.0.1:40123/callback", server).is_ok());
        assert!(check_redirect("https://rancher.example.org:8443/verify-auth", server).is_ok());
        for bad in [
            "http://127.0.0.1/callback",
            "https://evil.example.org/cb",
            "http://localhost.evil.org:80/cb",
            "http://127.0.0.1:1@evil.org/cb",
            "https://rancher.example.org:9443/x",
            "http://rancher.example.org:8443/x",
            "http://127.0.0.1:5/cb#frag",
            "not a url",
        ] {
            assert!(check_redirect(bad, server).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn pending_logins_are_single_use_per_provider_and_bounded() {
        let pending = PendingLogins::default();
        let pkce = Pkce::new_s256();
        let req = AuthorizeRequest::new("http://127.0.0.1:1/cb", &pkce);
        let state = req.state.clone();
        pending.insert("oidc", req, pkce);
        assert!(pending.take("github", &state).is_none(), "another provider's state");
        let pkce = Pkce::new_s256();
        let req = AuthorizeRequest::new("http://127.0.0.1:1/cb", &pkce);
        let state = req.state.clone();
        pending.insert("oidc", req, pkce);
        assert!(pending.take("oidc", &state).is_some());
        assert!(pending.take("oidc", &state).is_none(), "a state is used once");
        for _ in 0..MAX_PENDING + 10 {
            let pkce = Pkce::new_s256();
            pending.insert("oidc", AuthorizeRequest::new("http://127.0.0.1:1/cb", &pkce), pkce);
        }
        assert_eq!(pending.map.lock().unwrap().len(), MAX_PENDING);
    }
}
