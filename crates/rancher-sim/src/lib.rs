//! # rancher-sim
//!
//! A simulated Kubernetes cluster: an HTTPS API server that real `kubectl` (1.27 – 1.33) and kube-rs
//! drive, with objects held in memory and controllers that make it look alive (nodes, a scheduler,
//! pods that run, deployments, replicasets, daemonsets, statefulsets, jobs, namespace deletion,
//! garbage collection). It authenticates bearer tokens and client certificates, honours
//! `Impersonate-*` headers, enforces RBAC from the stored roles and bindings, and serves
//! `exec`/`attach`/`port-forward` (WebSocket and SPDY) against a tiny built-in shell and echo server.
//!
//! Many sims fit in one process: each is a listener task and a controller task on the caller's
//! runtime, with no threads of its own.
//!
//! ```no_run
//! # async fn run() -> Result<(), rancher_sim::Error> {
//! let sim = rancher_sim::Sim::builder().nodes(3).listen("127.0.0.1:0").start().await?;
//! std::fs::write("/tmp/kubeconfig", sim.kubeconfig_yaml())?;
//! sim.add_token("alice-token", "alice", &["developers"]);
//! println!("kubectl --kubeconfig /tmp/kubeconfig get nodes   # against {}", sim.url());
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod admission;
mod api;
mod authn;
mod bootstrap;
mod controllers;
mod discovery;
mod error;
mod events;
mod exec;
mod field_validation;
mod http_util;
pub mod kubelet;
mod logs;
mod meta;
mod openapi;
mod patch;
mod pki;
mod portforward;
mod protobuf;
mod rbac;
mod resources;
mod reviews;
mod selectors;
mod server;
mod spdy;
mod state;
mod status;
mod store;
mod table;
mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use tokio::task::JoinHandle;

pub use authn::UserInfo;
pub use error::{Error, Result};
pub use status::ApiError;

use state::{SimConfig, SimState};

/// The Kubernetes version a sim reports by default.
pub const DEFAULT_VERSION: &str = "v1.33.1";

/// Entry point: `Sim::builder()`.
#[derive(Debug)]
pub struct Sim;

impl Sim {
    /// A builder with defaults: one node, `127.0.0.1:0`, a random admin token.
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }
}

/// Configures and starts a sim.
#[derive(Debug, Clone)]
pub struct SimBuilder {
    name: String,
    nodes: usize,
    listen: String,
    admin_token: Option<String>,
    auth_webhook: Option<(String, Option<String>)>,
    version: String,
    extra_hosts: Vec<String>,
    watch_history: usize,
    lease_renew_interval: std::time::Duration,
    event_ttl: std::time::Duration,
    events_per_namespace: usize,
}

impl Default for SimBuilder {
    fn default() -> Self {
        SimBuilder {
            name: "rancher-sim".into(),
            nodes: 1,
            listen: "127.0.0.1:0".into(),
            admin_token: None,
            auth_webhook: None,
            version: DEFAULT_VERSION.into(),
            extra_hosts: vec![],
            watch_history: store::EVENT_LOG_CAPACITY,
            lease_renew_interval: std::time::Duration::from_secs(10),
            event_ttl: std::time::Duration::from_secs(3600),
            events_per_namespace: 1000,
        }
    }
}

impl SimBuilder {
    /// The cluster name (kubeconfig names, node names `<name>-control-plane`, `<name>-worker`...).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// Number of simulated nodes (the first is the control plane).
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }
    /// Address to listen on; port 0 picks a free one.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }
    /// A fixed admin bearer token instead of a random one.
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }
    /// Unknown bearer tokens are checked by POSTing a `TokenReview` to `url` (`https://` verified with
    /// `ca_pem`, or `http://`).
    pub fn auth_webhook(mut self, url: impl Into<String>, ca_pem: Option<String>) -> Self {
        self.auth_webhook = Some((url.into(), ca_pem));
        self
    }
    /// The version `/version` and the nodes report (`v1.33.1`).
    pub fn kubernetes_version(mut self, v: impl Into<String>) -> Self {
        self.version = v.into();
        self
    }
    /// How many past changes a watch can resume from (default 2048); older resourceVersions get
    /// `410 Gone`, as after etcd compaction.
    pub fn watch_history(mut self, events: usize) -> Self {
        self.watch_history = events;
        self
    }
    /// How often each node's kubelet renews its `kube-node-lease` Lease (default 10 s; the Lease
    /// says 40 s, as a kubelet's does).
    pub fn lease_renew_interval(mut self, every: std::time::Duration) -> Self {
        self.lease_renew_interval = every.max(std::time::Duration::from_millis(10));
        self
    }
    /// How long an Event is kept after it was last seen (default one hour, the API server's
    /// `--event-ttl`).
    pub fn event_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.event_ttl = ttl;
        self
    }
    /// The most Events kept per namespace (default 1000); beyond it the least recently seen go.
    pub fn events_per_namespace(mut self, n: usize) -> Self {
        self.events_per_namespace = n.max(1);
        self
    }
    /// An extra host name or IP for the serving certificate.
    pub fn san(mut self, host: impl Into<String>) -> Self {
        self.extra_hosts.push(host.into());
        self
    }

    /// Binds, creates the CA and initial objects, and starts serving.
    ///
    /// # Errors
    /// [`Error::Bind`] when the address is taken, [`Error::Certificate`]/[`Error::Tls`] if the PKI
    /// cannot be built.
    pub async fn start(self) -> Result<SimHandle> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let addr: SocketAddr = tokio::net::lookup_host(&self.listen)
            .await
            .map_err(|_| Error::InvalidListen(self.listen.clone()))?
            .next()
            .ok_or_else(|| Error::InvalidListen(self.listen.clone()))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr: self.listen.clone(), source })?;
        let local = listener.local_addr()?;
        let pki = pki::Pki::new(&self.name)?;
        let mut hosts: Vec<String> = vec![
            "127.0.0.1".into(),
            "::1".into(),
            "localhost".into(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            "kubernetes.default.svc.cluster.local".into(),
        ];
        if !local.ip().is_unspecified() && !hosts.contains(&local.ip().to_string()) {
            hosts.push(local.ip().to_string());
        }
        hosts.extend(self.extra_hosts.iter().cloned());
        let tls = pki.server_config(&hosts)?;
        let (auth_webhook, auth_webhook_ca) = match self.auth_webhook {
            Some((u, c)) => (Some(u), c),
            None => (None, None),
        };
        let config = SimConfig {
            name: self.name.clone(),
            nodes: self.nodes,
            git_version: self.version.clone(),
            auth_webhook,
            auth_webhook_ca,
            watch_history: self.watch_history,
            lease_renew_interval: self.lease_renew_interval,
            event_ttl: self.event_ttl,
            events_per_namespace: self.events_per_namespace,
        };
        let state = Arc::new(SimState::new(config, pki));
        let admin_token = self.admin_token.unwrap_or_else(random_token);
        state.tokens.add(&admin_token, UserInfo::new("admin", &["system:masters"]));
        bootstrap::populate(&state, local);
        controllers::spawn(state.clone());
        let server = tokio::spawn(server::serve(listener, tls, state.clone()));
        Ok(SimHandle { state, addr: local, admin_token, server: Some(server) })
    }
}

fn random_token() -> String {
    let mut b = [0u8; 24];
    rand::Rng::fill(&mut rand::rng(), &mut b[..]);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A running sim. Dropping it stops it; [`SimHandle::shutdown`] waits for the listener to close.
#[derive(Debug)]
pub struct SimHandle {
    state: Arc<SimState>,
    addr: SocketAddr,
    admin_token: String,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimState").field("name", &self.config.name).finish_non_exhaustive()
    }
}

impl SimHandle {
    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        let host = if self.addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            self.addr.ip().to_string()
        };
        if self.addr.is_ipv6() && !self.addr.ip().is_unspecified() {
            format!("https://[{host}]:{}", self.addr.port())
        } else {
            format!("https://{host}:{}", self.addr.port())
        }
    }
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The cluster name.
    pub fn name(&self) -> &str {
        &self.state.config.name
    }
    /// PEM of the sim's CA (it signed the serving certificate and client certificates).
    pub fn ca_pem(&self) -> &str {
        &self.state.pki.ca_pem
    }
    /// The admin bearer token (user `admin`, group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }
    /// A kubeconfig for the admin, CA embedded.
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_for_token(&self.admin_token)
    }
    /// A kubeconfig that authenticates with `token`, CA embedded.
    pub fn kubeconfig_for_token(&self, token: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem());
        let name = self.name();
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: {name}-user\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}-user\ncurrent-context: {name}\n",
            url = self.url()
        )
    }
    /// A kubeconfig that authenticates with a client certificate for `user` in `groups` (CN and O).
    ///
    /// # Errors
    /// [`Error::Certificate`] if signing fails.
    pub fn kubeconfig_for_client_cert(&self, user: &str, groups: &[&str]) -> Result<String> {
        let (cert, key) = self.client_certificate(user, groups)?;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let ca = b64(self.ca_pem());
        let name = self.name();
        Ok(format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {user}\ncurrent-context: {name}\n",
            url = self.url(),
            cert = b64(&cert),
            key = b64(&key),
        ))
    }
    /// Accepts `token` as `user` in `groups` (plus `system:authenticated`).
    pub fn add_token(&self, token: &str, user: &str, groups: &[&str]) {
        self.state.tokens.add(token, UserInfo::new(user, groups));
    }
    /// A client certificate and key (PEM) for `user` in `groups`, signed by the sim's CA.
    ///
    /// # Errors
    /// [`Error::Certificate`] if signing fails.
    pub fn client_certificate(&self, user: &str, groups: &[&str]) -> Result<(String, String)> {
        self.state.pki.client_cert(user, groups)
    }
    /// Stops serving and the controllers; open connections are closed.
    pub async fn shutdown(mut self) {
        self.state.cancel.cancel();
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.state.cancel.cancel();
    }
}
