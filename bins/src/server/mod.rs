//! The management server: the [`Server`] builder, its HTTP(S) listener and the `/v3` API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use rancher::server::Server;
//! use rancher_core::store::MemoryStore;
//!
//! let server = Server::builder()
//!     .data_dir("/tmp/rancher-demo")
//!     .store(Arc::new(MemoryStore::new()))
//!     .https_listen("127.0.0.1:0".parse()?)
//!     .bootstrap_password("a-long-admin-password")
//!     .build()
//!     .await?;
//! println!("serving on {}", server.url());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod ace_sync;
mod api;
mod auth;
mod bootstrap;
mod builder;
mod cleanup;
mod cloud_credentials;
mod cluster_ca;
mod cluster_downloads;
mod config;
mod console;
mod data_dir;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod hashing;
mod identity;
mod kubeconfig;
mod leadership;
mod listener;
pub mod metrics;
mod peers;
mod plugins;
mod provisioning;
mod proxy;
pub mod registration;
mod replicas;
mod secrets;
mod services;
mod shared_secrets;
mod state;
mod supervisor;
mod tasks;
mod tenancy;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rancher_core::store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use bootstrap::{ADMIN_USERNAME, BootstrapError};
pub use builder::ServerBuilder;
pub use config::{AuditLevelArg, ServerArgs, StoreKind};
pub use error::{ApiError, ApiResult};
pub use hashing::{HashError, HashingLimits};
pub use identity::{AuthConfigError, AuthConfigFileError, AuthProviderError, IntervalProblem};
pub use kubeconfig::DEFAULT_KUBECONFIG_TOKEN_TTL_MS;
pub use listener::ListenerLimits;
pub use provisioning::RegistryError as ProvisionerRegistryError;
pub use provisioning::hosted::{CloudEndpoints, POLL as HOSTED_POLL};
pub use provisioning::node_plans;
pub use proxy::{AuditConfig, AuditTarget};
pub use secrets::SealError;
pub use services::tokens::DEFAULT_TOKEN_MAX_TTL_MS;
pub use shared_secrets::SharedSecretError;
pub use tasks::ServerTasks;
pub use tls::{TlsError, TlsSource};

use registration::{ImageRefError, Registration, ServerUrlError};
use state::AppState;

/// The largest request body the API accepts by default (1 MiB).
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("opening the store: {0}")]
    Store(#[source] StoreError),
    /// The task opening the embedded store panicked or was cancelled.
    #[error("opening the store: {0}")]
    StoreOpenTask(#[source] tokio::task::JoinError),
    /// `--store etcd` without `--etcd-endpoints`.
    #[error("--store etcd needs --etcd-endpoints")]
    EtcdEndpointsMissing,
    /// `--store etcd` in a build without the `etcd` feature.
    #[error(
        "this rancher-server was built without etcd support: rebuild with `--features etcd`, or use \
         --store embedded"
    )]
    EtcdNotBuilt,
    /// TLS material could not be loaded or generated.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The builtin roles or the admin user could not be set up.
    #[error("bootstrap: {0}")]
    Bootstrap(#[source] BootstrapError),
    /// `--server-url` is unusable.
    #[error("registration: --server-url {0}")]
    ServerUrl(#[source] ServerUrlError),
    /// `--agent-image` is not an image reference.
    #[error("registration: agent image: {0}")]
    AgentImage(#[source] ImageRefError),
    /// `--peer-url` is unusable.
    #[error("--peer-url {0}")]
    PeerUrl(#[source] ServerUrlError),
    /// The servers sharing the store cannot verify each other's certificates.
    #[error("peers: {0}")]
    PeerTls(String),
    /// The CA or the registration key every server sharing the store holds could not be read, made or
    /// kept in the store.
    #[error("shared secrets: {0}")]
    SharedSecrets(#[source] shared_secrets::SharedSecretError),
    /// The `--auth-config` file is unreadable or invalid.
    #[error("auth config: {0}")]
    AuthConfig(#[source] AuthConfigError),
    /// The audit log could not be opened.
    #[error("audit log: {0}")]
    AuditLog(#[source] std::io::Error),
    /// The provisioners given to [`ServerBuilder::provisioner`] cannot be registered (two for one
    /// driver name, including the built-in `imported`, or one with an empty name).
    #[error("provisioners: {0}")]
    Provisioner(#[source] ProvisionerRegistryError),
    /// The `--cloud-ca-file` is unreadable or holds no PEM certificate.
    #[error("--cloud-ca-file {path}: {problem}")]
    CloudCa {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The secrets key of the data directory could not be made or read.
    #[error("secrets: {0}")]
    Secrets(#[source] SealError),
    /// A bundle of `--bundle-dir` or [`ServerBuilder::bundle`] is unusable, or two share a version.
    #[error("bundles: {0}")]
    Bundles(#[source] rancher_provision::bundle::BundleError),
    /// An identity provider given to [`ServerBuilder::auth_provider`] cannot be served.
    #[error("identity provider: {0}")]
    AuthProvider(#[source] AuthProviderError),
    /// The tunnel's session settings are invalid.
    #[error("tunnel: {0}")]
    Tunnel(#[source] rancher_tunnel::Error),
}

/// A built server, bound and bootstrapped; [`Server::run`] serves until shutdown.
pub struct Server {
    state: AppState,
    listener: TcpListener,
    listener_limits: listener::Resolved,
    acceptor: Option<TlsAcceptor>,
    local_addr: SocketAddr,
    generated_admin_password: Option<String>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl Server {
    /// A builder with defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `https://<addr>` (or `http://` with --insecure-http).
    pub fn url(&self) -> String {
        let scheme = if self.acceptor.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// The CA (PEM) clients should trust, as published in `/v3/settings/cacerts`.
    pub fn ca_pem(&self) -> &str {
        &self.state.ca_pem
    }

    /// The TLS configuration of the built-in listener (its certificate from the published CA), for an
    /// embedder that serves [`into_router`](Self::into_router) over TLS itself; `None` with
    /// [`insecure_http`](ServerBuilder::insecure_http).
    pub fn tls_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.acceptor.as_ref().map(|a| a.config().clone())
    }

    /// The store the server uses.
    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store.clone()
    }

    /// Imported clusters: the tunnel server, registration tokens, and
    /// [`cluster_client`](Registration::cluster_client) to reach a connected cluster.
    pub fn registration(&self) -> Arc<Registration> {
        self.state.registration.clone()
    }

    /// The cloud credentials (`/v3/cloudcredentials`) as hosted provisioners open them: a credential
    /// is opened for its owner, or for an admin, with this server's secrets key.
    pub fn cloud_credentials(&self) -> Arc<dyn rancher_provision::hosted::credentials::CredentialSource> {
        Arc::new(cloud_credentials::StoreCredentials::new(
            self.state.store.clone(),
            self.state.sealer.clone(),
        ))
    }

    /// The admin password generated on this (first) start, to show once. `None` when it was given or
    /// the admin existed already.
    pub fn generated_admin_password(&self) -> Option<&str> {
        self.generated_admin_password.as_deref()
    }

    /// Serves until `shutdown` completes, then drains in-flight requests (up to 30 s).
    ///
    /// Runs the server's background work alongside ([`ServerTasks`]: the controllers and the tunnel's
    /// sessions), stopped after the listener has drained. A server sharing its store with other
    /// replicas serves once it has read theirs, and hands its clusters over as it drains: it leaves
    /// the live set at once, so that the others own and serve its clusters, takes connections for
    /// one more second (forwarding them), and a second after its listener closed sends its cluster
    /// agents on to the others.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for background tasks that can fail.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let Server { state, listener, listener_limits, acceptor, local_addr, .. } = self;
        let metrics = state.metrics.clone();
        let tasks = ServerTasks::start(&state);
        let draining = tokio_util::sync::CancellationToken::new();
        let peers = state.peers.clone();
        let hand_over = peers
            .clone()
            .map(|peers| tokio::spawn(peers::drain(peers, state.registration.clone(), draining.clone())));
        let app = api::router(state);
        if let Some(peers) = &peers {
            peers::ready(peers).await;
        }
        tracing::info!(addr = %local_addr, tls = acceptor.is_some(), "serving the management API");
        let shutdown = async {
            shutdown.await;
            if let Some(peers) = &peers {
                peers::leave(peers).await;
            }
            draining.cancel();
        };
        listener::serve(listener, acceptor, app, listener_limits, metrics, shutdown).await;
        if let Some(hand_over) = hand_over
            && let Err(e) = hand_over.await
        {
            tracing::warn!("handing the clusters over at stop: {e}");
        }
        tasks.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    }

    /// The management API as an axum [`Router`](axum::Router) to mount in the embedder's own app, and
    /// the background work it needs ([`ServerTasks`]), already started. The embedder serves the router
    /// (plain HTTP or its own TLS) and, when its server has drained, calls
    /// [`ServerTasks::shutdown`]; dropping the tasks stops them without waiting.
    ///
    /// The listener [`build`](ServerBuilder::build) bound is closed (so give
    /// [`https_listen`](ServerBuilder::https_listen) a free loopback port such as `127.0.0.1:0` rather
    /// than the default `0.0.0.0:8443`): set [`server_url`](ServerBuilder::server_url) to where the
    /// embedder serves, because import manifests and agents use it. Agents need `https://` and pin the
    /// published CA: serve TLS with [`tls_config`](Self::tls_config) (taken before this call), or
    /// terminate TLS in front with the certificate given to [`tls`](ServerBuilder::tls). The router carries its own middleware (metrics, tracing, panics
    /// as `500` Status); the listener's connection caps and timeouts are the embedder's to choose.
    /// Paths are absolute (`/v3/…`, `/k8s/clusters/…`, `/v3-public/…`): merge the router, do not nest
    /// it under a prefix.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = rancher::server::Server::builder()
    ///     .https_listen("127.0.0.1:0".parse()?)
    ///     .insecure_http(true)
    ///     .server_url("http://127.0.0.1:8080")
    ///     .build()
    ///     .await?;
    /// # fn my_app() -> axum::Router { axum::Router::new() }
    /// let (rancher, tasks) = server.into_router();
    /// let app = my_app().merge(rancher); // the embedder's routes beside /v3, /k8s/clusters, …
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
    ///     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
    ///     .await?;
    /// tasks.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn into_router(self) -> (axum::Router, ServerTasks) {
        let tasks = ServerTasks::start(&self.state);
        (api::router(self.state), tasks)
    }
}
