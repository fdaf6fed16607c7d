//! The proxy, composed: browser session rules → authenticate → cluster route and access → audit →
//! impersonate → forward.
//! This is also the one place where a [`ProxyError`] becomes a Kubernetes `Status` response.

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt as _};

use super::audit::AuditLayer;
use super::authenticate::{AuthenticateLayer, Authenticator};
use super::browser::{BrowserPolicy, BrowserSessionLayer};
use super::cluster::{ClusterAccess, ClusterRouteLayer};
use super::error::{BoxError, ProxyBody, ProxyError, boxed};
use super::forward::{ClusterClients, Forward, ForwardConfig};
use super::impersonate::ImpersonateLayer;
use super::upstream::UpstreamResolver;

/// Builds the proxy for `/k8s/clusters/<id>/…`.
///
/// * `authenticator` says who the caller is ([`Authenticator`]);
/// * `access` whether they may reach the cluster ([`ClusterAccess`]);
/// * `upstreams` how to reach the cluster's API server ([`UpstreamResolver`]);
/// * `audit` where to record requests ([`AuditLayer::disabled`] for nowhere).
///
/// Browser sessions (the `R_SESS` cookie) must come from the request's own host over https
/// ([`BrowserPolicy::default`]); see [`proxy_service_for_browsers`] to trust other origins.
pub fn proxy_service<A, P, R>(
    authenticator: A,
    access: P,
    upstreams: R,
    audit: AuditLayer,
    forward: ForwardConfig,
) -> ProxyService
where
    A: Authenticator + 'static,
    P: ClusterAccess + 'static,
    R: UpstreamResolver + 'static,
{
    proxy_service_for_browsers(authenticator, access, upstreams, audit, forward, BrowserPolicy::default())
}

/// [`proxy_service`] with the origins browser sessions may come from (`browsers`), e.g. a server's
/// external URL: [`BrowserPolicy::for_server_url`].
pub fn proxy_service_for_browsers<A, P, R>(
    authenticator: A,
    access: P,
    upstreams: R,
    audit: AuditLayer,
    forward: ForwardConfig,
    browsers: BrowserPolicy,
) -> ProxyService
where
    A: Authenticator + 'static,
    P: ClusterAccess + 'static,
    R: UpstreamResolver + 'static,
{
    let forward = Forward::new(upstreams, forward);
    let clients = forward.clients();
    let stack = ServiceBuilder::new()
        .layer(StatusResponseLayer)
        .layer(BrowserSessionLayer::new(browsers))
        .layer(AuthenticateLayer::new(authenticator))
        .layer(ClusterRouteLayer::new(access))
        .layer(audit)
        .layer(ImpersonateLayer::new())
        .service(forward);
    ProxyService { inner: BoxCloneSyncService::new(stack), clients }
}

/// The composed proxy: a cloneable service that never fails (errors are `Status` responses). Serve it
/// with hyper (see [`serve()`](crate::proxy::serve())) or mount it in axum with
/// `Router::route_service("/k8s/clusters/{*rest}", proxy)` (not `nest_service`, which strips the prefix).
#[derive(Clone)]
pub struct ProxyService {
    inner: BoxCloneSyncService<Request<ProxyBody>, Response<ProxyBody>, Infallible>,
    clients: ClusterClients,
}

impl ProxyService {
    /// The cached per-cluster clients, e.g. to [`ClusterClients::invalidate`] one after its agent reconnected.
    pub fn clients(&self) -> &ClusterClients {
        &self.clients
    }
}

impl std::fmt::Debug for ProxyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyService").field("cached_clusters", &self.clients.len()).finish()
    }
}

impl<B> Service<Request<B>> for ProxyService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<ProxyBody>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.inner.call(req.map(boxed))
    }
}

/// Turns the stack's [`ProxyError`]s into `Status` responses.
#[derive(Clone, Copy, Debug)]
struct StatusResponseLayer;

impl<S> Layer<S> for StatusResponseLayer {
    type Service = StatusResponse<S>;
    fn layer(&self, inner: S) -> Self::Service {
        StatusResponse { inner }
    }
}

#[derive(Clone, Debug)]
struct StatusResponse<S> {
    inner: S,
}

impl<S> Service<Request<ProxyBody>> for StatusResponse<S>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<ProxyBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness is checked (and its error reported) per call below.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ProxyBody>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            match inner.oneshot(req).await {
                Ok(resp) => Ok(resp),
                Err(e) => {
                    match &e {
                        ProxyError::Unauthenticated(_)
                        | ProxyError::BrowserRefused(_)
                        | ProxyError::NotRouted(_)
                        | ProxyError::AccessDenied { .. } => {
                            tracing::debug!(error = %e, "request refused")
                        }
                        _ => tracing::warn!(error = %e, "proxy error"),
                    }
                    Ok(e.into_response())
                }
            }
        })
    }
}
