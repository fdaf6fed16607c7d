//! What every handler shares: the store, the metrics, the published CA and cluster registration.

use std::sync::Arc;

use rancher_core::store::Store;

use super::auth::TokenAuthenticator;
use super::metrics::Metrics;
use super::registration::Registration;
use super::services::login::LoginThrottle;

/// Shared state of the management API: one allocation, shared. Every request clones it (axum hands
/// a handler and a middleware their state by value), so a clone is one reference count; the fields
/// are read through it ([`AppStateParts`]).
#[derive(Clone)]
pub(crate) struct AppState(Arc<AppStateParts>);

impl AppState {
    pub(crate) fn new(parts: AppStateParts) -> Self {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateParts;

    fn deref(&self) -> &AppStateParts {
        &self.0
    }
}

/// What [`AppState`] holds.
pub(crate) struct AppStateParts {
    /// The store (already wrapped in [`MeteredStore`](super::metrics::MeteredStore)).
    pub(crate) store: Arc<dyn Store>,
    /// Metrics registry and families.
    pub(crate) metrics: Arc<Metrics>,
    /// The CA (PEM) published as the `cacerts` setting; empty for a publicly trusted certificate.
    pub(crate) ca_pem: Arc<str>,
    /// The largest request body accepted, in bytes.
    pub(crate) body_limit: usize,
    /// Registration tokens, the tunnel and downstream access of imported clusters.
    pub(crate) registration: Arc<Registration>,
    /// Checks tokens for `/v3` and the proxy.
    pub(crate) authn: Arc<TokenAuthenticator>,
    /// Failed-login counting per username and client address.
    pub(crate) login_throttle: Arc<LoginThrottle>,
    /// Lifetime of kubeconfig tokens, in milliseconds (0: as long as allowed).
    pub(crate) kubeconfig_token_ttl_ms: i64,
    /// The longest any token lives, in milliseconds (0: no maximum).
    pub(crate) max_token_ttl_ms: i64,
    /// Identity providers besides `local`: from `--auth-config` and plugged in by an embedder.
    pub(crate) providers: super::identity::Providers,
    /// The authentication proxy mounted at `/k8s/clusters/{*rest}`.
    pub(crate) proxy: rancher_auth::proxy::ProxyService,
    /// Provisioners by driver name (`validate` runs when a cluster is created).
    pub(crate) provisioners: super::provisioning::Provisioners,
    /// Seals secrets at rest (the SSH keys of `rkeConfig`).
    pub(crate) sealer: Arc<super::secrets::Sealer>,
    /// The audit log the proxy writes to; `/v3` records downloads of a cluster's keys there too.
    pub(crate) audit: rancher_auth::proxy::AuditLayer,
    /// This server's name among the servers sharing the store, when they elect a leader for the
    /// controllers that run once ([`leadership`](super::leadership)); `None`: it runs them itself.
    pub(crate) replica: Option<String>,
    /// The other servers sharing the store, and the way to them; `None` for a server on its own.
    pub(crate) peers: Option<Arc<super::peers::Peers>>,
    /// The project names in use, for new ones.
    pub(crate) project_names: Arc<super::tenancy::project_names::ProjectNames>,
    /// The audit log's file, when it is written to one (`GET /v3/auditlog` reads its end).
    pub(crate) audit_file: Option<std::path::PathBuf>,
    /// How fast agents' sessions are admitted (`None`: unbounded).
    pub(crate) connect_admission: Option<Arc<super::registration::ConnectAdmission>>,
}
