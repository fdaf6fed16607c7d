//! Who is calling: [`AuthenticateLayer`] asks an [`Authenticator`] about the request's credentials and
//! puts the resulting [`UserInfo`] in the request's extensions; no credentials, no further.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response, header};
use serde::Serialize;
use tower::{Layer, Service};

use super::cluster::split_cluster_path;
use super::error::{BoxError, ProxyError};

/// The identity a request runs as downstream, sent there as `Impersonate-*` headers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// The user id, e.g. `u-abcde` (downstream RBAC binds to this).
    pub username: String,
    /// A stable unique id for the user; empty if unknown.
    pub uid: String,
    /// Group principals, e.g. `local://g-xyz`, `github_org://123`.
    pub groups: Vec<String>,
    /// Extra attributes (`principalid`, `username`, `requesttokenid`, …).
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Why credentials were not accepted. Messages never contain the credential itself.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The request carried no token (no `Authorization`, no `R_SESS` cookie, no WebSocket bearer protocol).
    #[error("no credentials in the request")]
    MissingCredentials,
    /// The token is malformed, unknown, or its secret does not match.
    #[error("invalid token")]
    InvalidToken,
    /// The token's TTL or idle TTL has passed.
    #[error("token expired")]
    Expired,
    /// A cluster-scoped token was used for another cluster.
    #[error("token is not valid for this cluster")]
    WrongCluster,
    /// The token or its user is disabled.
    #[error("user or token disabled")]
    Disabled,
    /// The token store could not be asked (answered as 500, not 401).
    #[error("authentication backend failed: {0}")]
    Backend(#[source] BoxError),
}

/// Authenticates a request from its headers. Object-safe, so the server can plug in its token store as
/// `Arc<dyn Authenticator>`.
///
/// The identity is shared: an authenticator that hands out the same `Arc<UserInfo>` for a caller's
/// requests (until the caller changes) spares the proxy the work of stating it again for each — the
/// `Impersonate-*` headers are built once per identity handed out.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// The user the request's credentials belong to. `cluster_id` is the cluster the request is for
    /// (from `/k8s/clusters/<id>/…`), so cluster-scoped tokens can be refused elsewhere.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        cluster_id: Option<&str>,
    ) -> Result<Arc<UserInfo>, AuthError>;
}

#[async_trait]
impl<T: Authenticator + ?Sized> Authenticator for Arc<T> {
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        cluster_id: Option<&str>,
    ) -> Result<Arc<UserInfo>, AuthError> {
        (**self).authenticate(headers, cluster_id).await
    }
}

/// The WebSocket subprotocol prefix browsers use to send a bearer token (`base64url.bearer.authorization.k8s.io.<b64url token>`).
pub const WEBSOCKET_BEARER_PROTOCOL_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

/// The bearer token of a request: `Authorization: Bearer <t>`, or the WebSocket bearer subprotocol.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = auth.split_once(' ')?;
        return (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
            .then(|| token.trim().to_owned());
    }
    use base64::Engine as _;
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(WEBSOCKET_BEARER_PROTOCOL_PREFIX).map(str::to_owned))
        .and_then(|b64| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')).ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
}

// === impl StaticAuthenticator ===

/// A fixed map of bearer token → user, for tests, examples and single-user setups.
#[derive(Clone, Default)]
pub struct StaticAuthenticator {
    users: HashMap<String, Arc<UserInfo>>,
}

impl StaticAuthenticator {
    /// No tokens known yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `token` as `user`.
    pub fn with_token(mut self, token: impl Into<String>, user: UserInfo) -> Self {
        self.users.insert(token.into(), Arc::new(user));
        self
    }
}

impl std::fmt::Debug for StaticAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are secrets: show only the users.
        f.debug_struct("StaticAuthenticator")
            .field("users", &self.users.values().collect::<Vec<_>>())
            .finish()
    }
}

#[async_trait]
impl Authenticator for StaticAuthenticator {
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        _cluster_id: Option<&str>,
    ) -> Result<Arc<UserInfo>, AuthError> {
        let token = bearer_token(headers).ok_or(AuthError::MissingCredentials)?;
        // Compare in constant time so response timing does not reveal how much of a token matched.
        use subtle::ConstantTimeEq as _;
        self.users
            .iter()
            .find(|(known, _)| bool::from(known.as_bytes().ct_eq(token.as_bytes())))
            .map(|(_, user)| user.clone())
            .ok_or(AuthError::InvalidToken)
    }
}

// === impl AuthenticateLayer ===

/// Authenticates every request; on success the inner service sees an `Arc<UserInfo>` extension.
#[derive(Debug)]
pub struct AuthenticateLayer<A> {
    authenticator: Arc<A>,
}

impl<A> AuthenticateLayer<A> {
    /// Uses `authenticator` for every request.
    pub fn new(authenticator: A) -> Self {
        AuthenticateLayer { authenticator: Arc::new(authenticator) }
    }
}

impl<A> Clone for AuthenticateLayer<A> {
    fn clone(&self) -> Self {
        AuthenticateLayer { authenticator: self.authenticator.clone() }
    }
}

impl<A, S> Layer<S> for AuthenticateLayer<A> {
    type Service = Authenticate<A, S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authenticate { authenticator: self.authenticator.clone(), inner }
    }
}

/// The service made by [`AuthenticateLayer`].
#[derive(Debug)]
pub struct Authenticate<A, S> {
    authenticator: Arc<A>,
    inner: S,
}

impl<A, S: Clone> Clone for Authenticate<A, S> {
    fn clone(&self) -> Self {
        Authenticate { authenticator: self.authenticator.clone(), inner: self.inner.clone() }
    }
}

impl<A, S, B, RB> Service<Request<B>> for Authenticate<A, S>
where
    A: Authenticator + 'static,
    S: Service<Request<B>, Response = Response<RB>, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<RB>;
    type Error = ProxyError;
    type Future = BoxFuture<'static, Result<Response<RB>, ProxyError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let authenticator = self.authenticator.clone();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let cluster = split_cluster_path(req.uri().path()).map(|(id, _)| id.to_owned());
            let user = authenticator
                .authenticate(req.headers(), cluster.as_deref())
                .await
                .map_err(ProxyError::Unauthenticated)?;
            req.extensions_mut().insert(user);
            inner.call(req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::test_support::{Seen, recorder, status_of};
    use tower::ServiceExt as _;

    fn alice() -> UserInfo {
        UserInfo { username: "u-alice".into(), groups: vec!["local://g-dev".into()], ..Default::default() }
    }

    fn layer() -> AuthenticateLayer<StaticAuthenticator> {
        AuthenticateLayer::new(StaticAuthenticator::new().with_token("token-a:secret", alice()))
    }

    #[tokio::test]
    async fn a_known_bearer_token_becomes_user_info() {
        let (svc, seen) = recorder();
        let req = Request::get("/k8s/clusters/c1/api/v1/pods")
            .header("authorization", "Bearer token-a:secret")
            .body(())
            .unwrap();
        let resp = layer().layer(svc).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let Seen { user, .. } = seen.take();
        assert_eq!(user, Some(alice()));
    }

    #[tokio::test]
    async fn missing_or_unknown_tokens_are_401_status_and_never_reach_inner() {
        for auth in [None, Some("Bearer token-a:wrong"), Some("Basic dG9rZW4tYTpzZWNyZXQ="), Some("Bearer ")]
        {
            let (svc, seen) = recorder();
            let mut req = Request::get("/k8s/clusters/c1/api/v1/pods");
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let err = layer().layer(svc).oneshot(req.body(()).unwrap()).await.unwrap_err();
            let status = status_of(err.into_response()).await;
            assert_eq!(
                (status.code, status.reason.as_str(), status.kind.as_str()),
                (401, "Unauthorized", "Status")
            );
            assert!(!status.message.contains("secret"), "{}", status.message);
            assert!(seen.take().calls == 0, "inner service was called for {auth:?}");
        }
    }

    #[tokio::test]
    async fn websocket_bearer_subprotocol_is_accepted() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("token-a:secret");
        let (svc, seen) = recorder();
        let req = Request::get("/k8s/clusters/c1/api/v1/namespaces/a/pods/p/exec")
            .header(
                "sec-websocket-protocol",
                format!("v5.channel.k8s.io, {WEBSOCKET_BEARER_PROTOCOL_PREFIX}{b64}"),
            )
            .body(())
            .unwrap();
        layer().layer(svc).oneshot(req).await.unwrap();
        assert_eq!(seen.take().user, Some(alice()));
    }

    #[tokio::test]
    async fn the_cluster_id_reaches_the_authenticator() {
        struct OnlyC1;
        #[async_trait]
        impl Authenticator for OnlyC1 {
            async fn authenticate(
                &self,
                _: &HeaderMap,
                cluster: Option<&str>,
            ) -> Result<Arc<UserInfo>, AuthError> {
                match cluster {
                    Some("c1") => Ok(Arc::new(alice())),
                    _ => Err(AuthError::WrongCluster),
                }
            }
        }
        let layer = AuthenticateLayer::new(OnlyC1);
        let (svc, _) = recorder();
        let ok =
            layer.clone().layer(svc.clone()).oneshot(Request::get("/k8s/clusters/c1/api").body(()).unwrap());
        assert_eq!(ok.await.unwrap().status(), 200);
        let err = layer.layer(svc).oneshot(Request::get("/k8s/clusters/c2/api").body(()).unwrap()).await;
        assert_eq!(err.unwrap_err().status().code, 401);
    }

    #[test]
    fn debug_output_hides_tokens() {
        let auth = StaticAuthenticator::new().with_token("token-a:secret", alice());
        assert!(!format!("{auth:?}").contains("secret"));
    }
}
