//! The authentication proxy at `/k8s/clusters/<id>/…`, as a stack of small tower layers:
//!
//! 0. [`browser`] — a cookie session must come from the server's own origin, with its CSRF token;
//! 1. [`authenticate`] — who is calling ([`Authenticator`] → [`UserInfo`]); 401 otherwise;
//! 2. [`cluster`] — which cluster, may they reach it ([`ClusterAccess`]); 404 / 403 otherwise;
//! 3. [`audit`] — one JSON line per request, never a secret ([`redact`]);
//! 4. [`impersonate`] — rebuild the headers from an allow-list and state the user's identity last
//!    ([`headers`] holds the rules: nothing the client sends adds or removes an identity header);
//! 5. [`forward`] — to the cluster's API server ([`UpstreamResolver`]), streaming, upgrade-aware.
//!
//! [`stack::proxy_service`] composes them; [`serve::serve`] serves the result. What the user may do inside
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
//!     tls: Some(sim_ca),
//!     bearer_token: Some("impersonator-token".into()),
//! });
//! let service = proxy::proxy_service(users, access, upstreams, proxy::AuditLayer::disabled(), Default::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! proxy::serve(listener, Some(server_tls), service).await
//! # }
//! ```

pub mod audit;
pub mod authenticate;
pub mod browser;
pub mod cluster;
pub mod error;
pub mod forward;
pub mod headers;
mod idle_cache;
pub mod impersonate;
pub mod redact;
pub mod request_info;
pub mod serve;
pub mod stack;
#[cfg(test)]
mod test_support;
pub mod upstream;

pub use audit::{AuditEvent, AuditLayer, AuditLevel, AuditSink, FileSink, StdoutSink};
pub use authenticate::{AuthError, AuthenticateLayer, Authenticator, StaticAuthenticator, UserInfo};
pub use browser::{BrowserPolicy, BrowserRefusal, BrowserSessionLayer};
pub use cluster::{ClusterAccess, ClusterRouteLayer, ClusterTarget, Denied, StaticClusterAccess};
pub use error::{BoxError, ProxyBody, ProxyError};
pub use forward::{ClusterClients, Forward, ForwardConfig};
pub use headers::{downstream_request_headers, strip_hop_by_hop, wants_upgrade};
pub use impersonate::ImpersonateLayer;
pub use request_info::{NormalizedPath, RequestInfo, normalize_path};
pub use serve::serve;
pub use stack::{ProxyService, proxy_service, proxy_service_for_browsers};
pub use upstream::{Connector, ResolveError, StaticUpstreams, Upstream, UpstreamResolver, tcp_connector};
