//! [`ServerBuilder`]: every setting of a server, and [`build`](ServerBuilder::build), which opens the
//! store, prepares TLS and the secrets every server sharing the store holds, binds the listener and
//! bootstraps the builtin roles and the admin.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rancher_core::store::Store;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::metrics::{MeteredStore, Metrics};
use super::registration::{self, Registration};
use super::state::{AppState, AppStateParts};
use super::tls::{self, TlsSource};
use super::{
    AuditConfig, CloudEndpoints, DEFAULT_BODY_LIMIT, DEFAULT_KUBECONFIG_TOKEN_TTL_MS,
    DEFAULT_TOKEN_MAX_TTL_MS, HashingLimits, ListenerLimits, Server, ServerError, StoreKind, auth, bootstrap,
    cloud_credentials, data_dir, hashing, identity, leadership, peers, plugins, provisioning, proxy,
    replicas, secrets, services, shared_secrets,
};

/// Configures a [`Server`]. Every setting has a default; see [`ServerArgs`] for their meaning.
#[derive(Clone)]
pub struct ServerBuilder {
    data_dir: PathBuf,
    /// `--secrets-key-file`; `None`: `secrets.key` in the data directory, made on first start.
    secrets_key_file: Option<PathBuf>,
    store: Option<Arc<dyn Store>>,
    store_kind: StoreKind,
    /// `None`: on with `--store etcd`.
    leader_election: Option<bool>,
    /// `--peer-url`.
    peer_url: Option<String>,
    agent_connect_rate: u32,
    etcd_endpoints: Vec<String>,
    https_listen: SocketAddr,
    tls: TlsSource,
    tls_sans: Vec<String>,
    insecure_http: bool,
    bootstrap_password: Option<String>,
    body_limit: usize,
    server_url: Option<String>,
    agent_image: String,
    audit: AuditConfig,
    kubeconfig_token_ttl_ms: i64,
    max_token_ttl_ms: i64,
    auth_config: Option<PathBuf>,
    listener_limits: ListenerLimits,
    hashing_limits: HashingLimits,
    /// Directories of bundle manifests (`--bundle-dir`).
    pub(super) bundle_dirs: Vec<PathBuf>,
    /// Where the clouds' APIs are, for hosted clusters.
    pub(super) cloud_endpoints: CloudEndpoints,
    /// A PEM file of CAs to trust for the clouds' APIs (`--cloud-ca-file`), read by `build`.
    pub(super) cloud_ca_file: Option<PathBuf>,
    /// Identity providers, audit sinks, metrics registry, tunnel transport ([`plugins`]).
    pub(super) plugins: plugins::Plugins,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("data_dir", &self.data_dir)
            .field("store", &self.store.as_ref().map(|_| "<given>"))
            .field("store_kind", &self.store_kind)
            .field("https_listen", &self.https_listen)
            .field("tls", &self.tls)
            .field("insecure_http", &self.insecure_http)
            .field("listener_limits", &self.listener_limits)
            .field("hashing_limits", &self.hashing_limits)
            .field("plugins", &self.plugins)
            .finish_non_exhaustive()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            data_dir: PathBuf::from("./rancher-data"),
            secrets_key_file: None,
            store: None,
            store_kind: StoreKind::Embedded,
            leader_election: None,
            peer_url: None,
            agent_connect_rate: registration::DEFAULT_AGENT_CONNECT_RATE,
            etcd_endpoints: Vec::new(),
            https_listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            tls: TlsSource::Generated,
            tls_sans: Vec::new(),
            insecure_http: false,
            bootstrap_password: None,
            body_limit: DEFAULT_BODY_LIMIT,
            server_url: None,
            agent_image: registration::DEFAULT_AGENT_IMAGE.to_owned(),
            audit: AuditConfig::default(),
            kubeconfig_token_ttl_ms: DEFAULT_KUBECONFIG_TOKEN_TTL_MS,
            max_token_ttl_ms: DEFAULT_TOKEN_MAX_TTL_MS,
            auth_config: None,
            listener_limits: ListenerLimits::default(),
            hashing_limits: HashingLimits::default(),
            bundle_dirs: Vec::new(),
            cloud_endpoints: CloudEndpoints::default(),
            cloud_ca_file: None,
            plugins: plugins::Plugins::default(),
        }
    }
}

impl ServerBuilder {
    /// Where the embedded store and generated TLS material live.
    pub fn data_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.data_dir = dir.as_ref().to_owned();
        self
    }

    /// Use this store instead of opening one from [`ServerBuilder::store_kind`].
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Which store to open when none is given.
    pub fn store_kind(mut self, kind: StoreKind) -> Self {
        self.store_kind = kind;
        self
    }

    /// etcd endpoints for [`StoreKind::Etcd`].
    pub fn etcd_endpoints(mut self, endpoints: Vec<String>) -> Self {
        self.etcd_endpoints = endpoints;
        self
    }

    /// The listen address (port 0 picks a free port; see [`Server::local_addr`]).
    pub fn https_listen(mut self, addr: SocketAddr) -> Self {
        self.https_listen = addr;
        self
    }

    /// Where the serving certificate comes from.
    pub fn tls(mut self, tls: TlsSource) -> Self {
        self.tls = tls;
        self
    }

    /// Extra names for the generated serving certificate.
    pub fn tls_sans(mut self, sans: Vec<String>) -> Self {
        self.tls_sans = sans;
        self
    }

    /// The secrets key (32 bytes) that seals secrets at rest, and the servers' CA and registration key
    /// in the store: every server sharing one store (`--store etcd`) needs the same file. Default:
    /// `secrets.key` in the data directory, made on first start.
    pub fn secrets_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.secrets_key_file = Some(path.into());
        self
    }

    /// Whether the controllers that must run once (cluster, provisioning, certificate expiry, snapshot
    /// schedule) run only on the leader elected among the servers sharing the store. Default: on with
    /// [`StoreKind::Etcd`], off otherwise (one server per embedded store).
    pub fn leader_election(mut self, on: bool) -> Self {
        self.leader_election = Some(on);
        self
    }

    /// The URL the other servers sharing the store reach this one at, `https://host:port` (with
    /// leader election on). Default: `https://<listen address>`, an unspecified address replaced by
    /// the host's first non-loopback address.
    pub fn peer_url(mut self, url: impl Into<String>) -> Self {
        self.peer_url = Some(url.into());
        self
    }

    /// How many agents' sessions a second the server admits, with a burst of as many; agents over
    /// the rate are answered `503` with `Retry-After` and come back after their backoff, so that a
    /// restart does not bring the whole fleet in at once. `0`: unbounded. Default:
    /// [`DEFAULT_AGENT_CONNECT_RATE`](registration::DEFAULT_AGENT_CONNECT_RATE).
    pub fn agent_connect_rate(mut self, per_second: u32) -> Self {
        self.agent_connect_rate = per_second;
        self
    }

    /// Serve plain HTTP.
    pub fn insecure_http(mut self, on: bool) -> Self {
        self.insecure_http = on;
        self
    }

    /// The admin's password when the admin is created (first start only).
    pub fn bootstrap_password(mut self, password: impl Into<String>) -> Self {
        self.bootstrap_password = Some(password.into());
        self
    }

    /// The largest request body accepted.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The URL agents and import commands use to reach this server (for example a load balancer's),
    /// `https://host[:port]`. Default: `https://<listen address>`, with an unspecified address
    /// replaced by the host's first non-loopback address.
    pub fn server_url(mut self, url: impl Into<String>) -> Self {
        self.server_url = Some(url.into());
        self
    }

    /// The container image the import manifest deploys as the cluster agent.
    pub fn agent_image(mut self, image: impl Into<String>) -> Self {
        self.agent_image = image.into();
        self
    }

    /// The proxy's audit log (off by default).
    pub fn audit(mut self, audit: AuditConfig) -> Self {
        self.audit = audit;
        self
    }

    /// How long kubeconfig tokens live (default 30 days; zero: as long as
    /// [`ServerBuilder::auth_token_max_ttl`] allows).
    pub fn kubeconfig_token_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.kubeconfig_token_ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// The longest any token lives — login sessions, API tokens, kubeconfig tokens — whatever its
    /// request asked (default 90 days; zero: no maximum, and tokens asking for `ttl: 0` never expire).
    pub fn auth_token_max_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.max_token_ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Identity providers for login from this YAML file (see the `identity` module docs).
    pub fn auth_config(mut self, path: impl AsRef<Path>) -> Self {
        self.auth_config = Some(path.as_ref().to_owned());
        self
    }

    /// Connection caps and timeouts of the listener.
    pub fn listener_limits(mut self, limits: ListenerLimits) -> Self {
        self.listener_limits = limits;
        self
    }

    /// How many password hashes and checks run at once and wait (process-wide: it applies to every
    /// server in this process from [`build`](Self::build) on).
    pub fn hashing_limits(mut self, limits: HashingLimits) -> Self {
        self.hashing_limits = limits;
        self
    }

    async fn open_store(&self) -> Result<Arc<dyn Store>, ServerError> {
        if let Some(store) = &self.store {
            return Ok(store.clone());
        }
        match self.store_kind {
            StoreKind::Embedded => {
                let path = self.data_dir.join("rancher.redb");
                let store = tokio::task::spawn_blocking(move || rancher_core::store::RedbStore::open(path))
                    .await
                    .map_err(ServerError::StoreOpenTask)?
                    .map_err(ServerError::Store)?;
                Ok(Arc::new(store))
            }
            StoreKind::Etcd => self.open_etcd().await,
        }
    }

    #[cfg(feature = "etcd")]
    async fn open_etcd(&self) -> Result<Arc<dyn Store>, ServerError> {
        if self.etcd_endpoints.is_empty() {
            return Err(ServerError::EtcdEndpointsMissing);
        }
        let store = rancher_core::store::EtcdStore::connect(&self.etcd_endpoints)
            .await
            .map_err(ServerError::Store)?;
        Ok(Arc::new(store))
    }

    #[cfg(not(feature = "etcd"))]
    async fn open_etcd(&self) -> Result<Arc<dyn Store>, ServerError> {
        Err(ServerError::EtcdNotBuilt)
    }

    /// The cloud endpoints, with the CAs of `--cloud-ca-file` added.
    fn resolved_cloud_endpoints(&self) -> Result<CloudEndpoints, ServerError> {
        let mut endpoints = self.cloud_endpoints.clone();
        if let Some(path) = &self.cloud_ca_file {
            let problem = |problem: String| ServerError::CloudCa { path: path.clone(), problem };
            let pem = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(problem("no PEM certificate in it".into()));
            }
            let pem = match endpoints.extra_ca_pem.take() {
                Some(given) => format!("{given}\n{pem}"),
                None => pem,
            };
            endpoints.extra_ca_pem = Some(pem);
        }
        Ok(endpoints)
    }

    /// The bundles of the `--bundle-dir` manifests and of [`ServerBuilder::bundle`].
    fn bundles(&self) -> Result<rancher_provision::bundle::BundleRegistry, ServerError> {
        let mut reg = rancher_provision::bundle::BundleRegistry::new();
        for dir in &self.bundle_dirs {
            reg.load_dir(dir).map_err(ServerError::Bundles)?;
        }
        for bundle in &self.plugins.bundles {
            reg.insert(bundle.clone()).map_err(ServerError::Bundles)?;
        }
        Ok(reg)
    }

    /// Opens the store, prepares TLS, binds the listener and bootstraps the builtin roles and admin.
    ///
    /// # Errors
    /// [`ServerError`] naming the step that failed.
    pub async fn build(self) -> Result<Server, ServerError> {
        // Identity providers first: a bad one fails the build before anything is created or bound.
        let mut providers = match &self.auth_config {
            Some(path) => identity::load(path).map_err(ServerError::AuthConfig)?,
            None => identity::Providers::default(),
        };
        for provider in &self.plugins.auth_providers {
            providers.register(provider.clone()).map_err(ServerError::AuthProvider)?;
        }
        let data_dir_error =
            |source: std::io::Error| ServerError::DataDir { path: self.data_dir.clone(), source };
        data_dir::create_private(&self.data_dir).map_err(data_dir_error)?;
        data_dir::tighten_contents(&self.data_dir, true).map_err(data_dir_error)?;
        let sealer = match &self.secrets_key_file {
            Some(path) => secrets::Sealer::load(path),
            None => secrets::Sealer::load_or_create(&self.data_dir),
        };
        let sealer = Arc::new(sealer.map_err(ServerError::Secrets)?);
        let bundles = Arc::new(self.bundles()?);
        hashing::configure(self.hashing_limits);
        let listener_limits = self.listener_limits.resolve();
        let metrics = self.plugins.metrics.clone().unwrap_or_else(|| Arc::new(Metrics::new()));
        let store: Arc<dyn Store> = Arc::new(MeteredStore::new(self.open_store().await?, metrics.clone()));
        let hosted = Arc::new(provisioning::hosted::Hosted {
            store: store.clone(),
            credentials: Arc::new(cloud_credentials::StoreCredentials::new(store.clone(), sealer.clone())),
            endpoints: self.resolved_cloud_endpoints()?,
        });
        let (provisioners, rke) =
            provisioning::registry(&self.plugins.provisioners, bundles, sealer.clone(), hosted)
                .map_err(ServerError::Provisioner)?;

        let listener = TcpListener::bind(self.https_listen)
            .await
            .map_err(|source| ServerError::Bind { addr: self.https_listen, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| ServerError::Bind { addr: self.https_listen, source })?;

        let server_url =
            registration::external_url(self.server_url.as_deref(), local_addr, self.insecure_http)
                .map_err(ServerError::ServerUrl)?;
        let elect = self.leader_election.unwrap_or(self.store_kind == StoreKind::Etcd);
        let peer_url = if elect {
            Some(
                registration::peer_url(self.peer_url.as_deref(), local_addr, self.insecure_http)
                    .map_err(ServerError::PeerUrl)?,
            )
        } else {
            None
        };
        let agent_image =
            registration::check_image_ref(&self.agent_image).map_err(ServerError::AgentImage)?;
        let (acceptor, ca_pem) = if self.insecure_http {
            (None, String::new())
        } else {
            let material = match &self.tls {
                TlsSource::Files { cert, key, ca } => tls::load_files(cert, key, ca.as_deref())?,
                TlsSource::Generated => {
                    let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
                    if !self.https_listen.ip().is_unspecified() {
                        sans.push(self.https_listen.ip().to_string());
                    }
                    sans.extend(self.tls_sans.iter().cloned());
                    for url in std::iter::once(&server_url).chain(&peer_url) {
                        if let Some(host) =
                            url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned))
                        {
                            sans.push(host.trim_start_matches('[').trim_end_matches(']').to_owned());
                        }
                    }
                    let tls_dir = self.data_dir.join("tls");
                    let ca = shared_secrets::serving_ca(&store, &sealer, &tls_dir)
                        .await
                        .map_err(ServerError::SharedSecrets)?;
                    tls::serving(&tls_dir, &ca, &sans)?
                }
            };
            (Some(TlsAcceptor::from(material.config)), material.ca_pem)
        };

        let boot = bootstrap::bootstrap(&store, self.bootstrap_password.clone())
            .await
            .map_err(ServerError::Bootstrap)?;
        let session_config =
            self.plugins.session_config.clone().unwrap_or_else(registration::tunnel_session_config);
        let tunnel_metrics = metrics.tunnel().clone();
        let tunnel = match &self.plugins.tunnel_transport {
            Some(t) => {
                rancher_tunnel::TunnelServer::with_transport(session_config, tunnel_metrics, t.clone())
            }
            None => rancher_tunnel::TunnelServer::new(session_config, tunnel_metrics),
        }
        .map_err(ServerError::Tunnel)?;
        let registration_key = shared_secrets::registration_key(&store, &sealer, &self.data_dir)
            .await
            .map_err(ServerError::SharedSecrets)?;
        let registration = Arc::new(Registration::with_tunnel(
            store.clone(),
            registration_key,
            server_url,
            &ca_pem,
            agent_image,
            tunnel,
        ));
        registration.supervisors().count_turns_in(metrics.sync_turns());
        rke.attach(registration.clone());
        // The store, the TLS material and the registration key may have been created just now.
        data_dir::tighten_contents(&self.data_dir, false).map_err(data_dir_error)?;
        let replica = match peer_url {
            Some(url) => Some(replicas::Replica {
                name: leadership::identity(&self.data_dir).map_err(data_dir_error)?,
                url,
            }),
            None => None,
        };
        let peers = match &replica {
            Some(me) => {
                let (view, heartbeat) = replicas::Replicas::new(store.clone(), me.clone(), metrics.clone());
                registration.set_replicas(view.clone());
                let tls = peers::client_tls(&ca_pem, self.insecure_http).map_err(ServerError::PeerTls)?;
                Some(Arc::new(peers::Peers::new(view, Some(heartbeat), tls)))
            }
            None => None,
        };
        let authn = Arc::new(auth::TokenAuthenticator::new(store.clone()));
        let audit = self.audit.layer(&self.plugins.audit_sinks).map_err(ServerError::AuditLog)?;
        let audit_file = match &self.audit.target {
            Some(super::AuditTarget::File(path)) => Some(path.clone()),
            _ => None,
        };
        let proxy = proxy::build(store.clone(), authn.clone(), registration.clone(), audit.clone());
        let project_names = super::tenancy::project_names::ProjectNames::start(store.clone());
        let state = AppState::new(AppStateParts {
            project_names,
            store,
            metrics,
            ca_pem: ca_pem.into(),
            body_limit: self.body_limit,
            registration,
            authn,
            login_throttle: Arc::new(services::login::LoginThrottle::new(Default::default())),
            kubeconfig_token_ttl_ms: self.kubeconfig_token_ttl_ms,
            max_token_ttl_ms: self.max_token_ttl_ms,
            providers,
            proxy,
            provisioners,
            sealer,
            audit,
            replica: replica.map(|r| r.name),
            peers,
            connect_admission: registration::ConnectAdmission::new(self.agent_connect_rate).map(Arc::new),
            audit_file,
        });
        Ok(Server {
            state,
            listener,
            listener_limits,
            acceptor,
            local_addr,
            generated_admin_password: boot.generated_admin_password,
        })
    }
}
