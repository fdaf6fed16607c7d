//! The authentication proxy at `/k8s/clusters/<id>/…`, as a stack of small tower layers:
//!
//! 0. [`BrowserSessionLayer`] — a cookie session must come from the server's own origin, with its
//!    CSRF token ([`BrowserPolicy`]);
//! 1. [`AuthenticateLayer`] — who is calling ([`Authenticator`] → [`UserInfo`]); 401 otherwise;
//! 2. [`ClusterRouteLayer`] — which cluster, may they reach it ([`ClusterAccess`]); 404 / 403 otherwise;
//! 3. [`AuditLayer`] — one JSON line per request, never a secret ([`may_record_body`]);
//! 4. [`ImpersonateLayer`] — rebuild the headers from an allow-list and state the user's identity last
//!    ([`downstream_request_headers`] holds the rules: nothing the client sends adds or removes an
//!    identity header);
//! 5. [`Forward`] — to the cluster's API server ([`UpstreamResolver`]), streaming, upgrade-aware. A
//!    read whose connection broke goes once more on a new one; a write that broke off before an
//!    answer is `502` (it may or may not have been carried out), an API server out of reach `503`.
//!
//! [`proxy_service`] composes them; [`serve()`] serves the result. What the user may do inside
//! the cluster is decided by the downstream API server's RBAC for the impersonated identity.
//!
//! ```no_run
//! use std::sync::Arc;
//! use rancher_auth::proxy::{self, UserInfo};
//! # async fn run(sim_url: http::Uri, sim_ca: Arc<rustls::ClientConfig>, server_tls: Arc<rustls::ServerConfig>) -> std::io::Result<()> {
//! let alice = UserInfo { username: "u-alice".into(), ..Default::default() };
//! let users = proxy::StaticAuthenticator::new().with_token("token-a:secret", alice);
//! let access = proxy::StaticClusterAccess::new().allow("c1", "u-alice");
//! let upstreams = proxy::StaticUpstreams::new().with("c1", proxy::Upstream {
//!     base_url: sim_url,
//!     connector: proxy::tcp_connector(),
//!     long_running_connector: None,
//!     tls: Some(sim_ca),
//!     bearer_token: Some("impersonator-token".into()),
//! });
//! let service = proxy::proxy_service(users, access, upstreams, proxy::AuditLayer::disabled(), Default::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! proxy::serve(listener, Some(server_tls), service).await
//! # }
//! ```

mod audit;
mod authenticate;
mod browser;
mod cluster;
mod conn_pool;
mod error;
mod forward;
mod headers;
mod idle_cache;
mod impersonate;
mod redact;
mod request_info;
mod serve;
mod stack;
#[cfg(test)]
mod test_support;
mod upstream;

// One public path per item: the layers' modules are private and everything public is here.
#[cfg(any(test, feature = "mock"))]
pub use audit::MockAuditSink;
pub use audit::{
    Audit, AuditEvent, AuditLayer, AuditLevel, AuditSink, FileSink, MAX_AUDITED_BODY, StdoutSink,
};
pub use authenticate::{
    AuthError, Authenticate, AuthenticateLayer, Authenticator, StaticAuthenticator, UserInfo,
    WEBSOCKET_BEARER_PROTOCOL_PREFIX, bearer_token,
};
pub use browser::{
    BrowserPolicy, BrowserRefusal, BrowserSession, BrowserSessionLayer, InvalidOrigin, new_csrf_token,
};
pub use cluster::{
    CLUSTER_PATH_PREFIX, ClusterAccess, ClusterRoute, ClusterRouteLayer, ClusterTarget, Denied,
    StaticClusterAccess, split_cluster_path,
};
pub use error::{BoxError, ProxyBody, ProxyError, boxed, status_response};
pub use forward::{ClusterClients, Forward, ForwardConfig};
pub use headers::{
    FORWARDED_REQUEST_HEADERS, IMPERSONATE_EXTRA_PREFIX, IMPERSONATE_GROUP, IMPERSONATE_UID,
    IMPERSONATE_USER, SYSTEM_AUTHENTICATED, downstream_request_headers, escape_extra_key, strip_hop_by_hop,
    wants_upgrade,
};
pub use impersonate::{HeadersRebuilt, Impersonate, ImpersonateLayer};
pub use redact::{BodyOmitted, check_body, may_record_body};
pub use request_info::{NormalizedPath, RequestInfo, normalize_path};
pub use serve::serve;
pub use stack::{ProxyService, proxy_service, proxy_service_for_browsers};
pub use upstream::{
    BoxStream, Connector, ResolveError, StaticUpstreams, Upstream, UpstreamResolver, UpstreamStream,
    tcp_connector,
};
