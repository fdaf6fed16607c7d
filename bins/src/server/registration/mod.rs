//! Imported clusters: registration tokens and the import manifest, the `/v3/connect` authorizer for
//! agents, their reports, the connection lifecycle, and a `kube::Client` through the tunnel.
//!
//! [`Registration`] is the shared handle: it owns the [`TunnelServer`], the registration key and
//! the downstream credentials agents hand over (kept in memory only; an agent re-sends them on
//! every connect).
//!
//! A cluster's identity is its name *and* its uid: registration tokens are derived from the uid,
//! agent sessions and downstream access are recorded with the uid they were authorized for, and
//! [`Registration::forget_cluster`] drops everything of a deleted cluster, so a cluster created later
//! under the same name is never served by an agent, access or token of the old one.

mod admission;
mod authorizer;
mod kube_client;
mod lifecycle;
mod manifest;
mod pending;
pub(crate) mod routes;
mod server_url;
mod sessions;
mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rancher_core::model::{
    Cluster, ClusterRegistrationToken, ClusterRegistrationTokenSpec, ClusterRegistrationTokenStatus,
};
use rancher_core::store::{Api, Store, StoreError};
use rancher_tunnel::{SessionConfig, TunnelServer};
use tokio::sync::Notify;
use tracing::debug;

use crate::server::cleanup::owner::{self, CLUSTER_UID_ANNOTATION};
use crate::server::supervisor::Supervisors;

pub(crate) use admission::ConnectAdmission;
pub use admission::DEFAULT_AGENT_CONNECT_RATE;
pub use kube_client::ClusterAccess;
pub(crate) use lifecycle::{ConnectionMonitor, cluster_of_key};
pub use manifest::{ImageRefError, ImageRefProblem, check_image_ref};
pub use server_url::{ServerUrlError, check_server_url};
pub(crate) use server_url::{external_url, peer_url};
pub(crate) use token::TokenKey;

/// The name of the registration token every imported cluster gets.
pub const DEFAULT_TOKEN: &str = "default-token";
/// The driver of imported clusters.
pub const IMPORTED_DRIVER: &str = "imported";
/// The driver of clusters built on SSH hosts, RKE-style: their cluster and node agents join like an
/// imported cluster's.
pub const RKE_DRIVER: &str = "rke";
/// The agent image the import manifest deploys by default.
pub const DEFAULT_AGENT_IMAGE: &str = crate::protocol::IMAGE_REF;

/// Whether `cluster` is joined by its agents' tunnel sessions, so that an agent presenting its
/// registration token is let in and its sessions drive the `Connected` condition: imported clusters,
/// those built on SSH hosts (whose first control-plane host runs the cluster agent), and those whose
/// provisioner handed the cluster over for the server to deploy the agent (hosted clusters: the
/// provisioning controller's
/// [`AGENT_MANIFEST_APPLIED`](crate::server::provisioning::AGENT_MANIFEST_APPLIED) condition, set
/// before the first attempt, whatever came of it).
pub(crate) fn joins_by_agent(cluster: &Cluster) -> bool {
    use rancher_core::Conditions;
    matches!(cluster.status.driver.as_str(), IMPORTED_DRIVER | RKE_DRIVER)
        || cluster.spec.imported_config.is_some()
        || cluster
            .status
            .conditions
            .get_condition(crate::server::provisioning::AGENT_MANIFEST_APPLIED)
            .is_some()
}

/// The import manifest of a made-up server and token, for tests of what consumes it.
#[cfg(test)]
pub(crate) fn render_manifest_for_tests(cluster: &str) -> String {
    manifest::render(&manifest::ManifestParams {
        server_url: "https://rancher.example:8443",
        token: "t0k",
        cluster,
        ca_checksum: "ab",
        agent_image: DEFAULT_AGENT_IMAGE,
    })
}

/// What can go wrong in registration and in reaching a cluster.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The tunnel server could not be set up.
    #[error("tunnel: {0}")]
    Tunnel(#[source] rancher_tunnel::Error),
    /// No agent of this cluster has connected since the server started (no credentials in memory).
    #[error("cluster {cluster}: no agent has connected since the server started")]
    NotConnected {
        /// The cluster's id.
        cluster: String,
    },
    /// The downstream client could not be built.
    #[error("cluster {cluster}: building the client: {source}")]
    Client {
        /// The cluster's id.
        cluster: String,
        /// The step that failed.
        #[source]
        source: ClientBuildError,
    },
}

/// Why a client of a downstream cluster could not be built from what its agent reported.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The reported API server address is not a URI authority.
    #[error("API server address: {0}")]
    Address(#[source] http::uri::InvalidUri),
    /// The reported CA is not PEM or holds no certificate.
    #[error(transparent)]
    Ca(#[from] crate::server::cluster_ca::ClusterCaError),
    /// The TLS connector could not be made with that CA.
    #[error("{0}")]
    Tls(#[source] kube::Error),
    /// The credential could not be made into an authentication layer.
    #[error("{0}")]
    Auth(#[source] kube::Error),
}

/// The shared registration state of one server.
pub struct Registration {
    store: Arc<dyn Store>,
    key: TokenKey,
    server_url: String,
    ca_checksum: String,
    agent_image: String,
    tunnel: TunnelServer,
    /// Downstream access per cluster id, from the latest agent params. Never stored.
    access: Mutex<HashMap<String, Arc<ClusterAccess>>>,
    /// Client key → the uid of the cluster its session was authorized for.
    session_owners: Mutex<HashMap<String, String>>,
    /// (sync, cluster) → the access under which that sync last succeeded (see [`Self::mark_synced`]).
    synced: Mutex<HashMap<(&'static str, String), Arc<ClusterAccess>>>,
    /// Woken whenever a sync is marked.
    synced_changed: Notify,
    /// One supervisor per connected cluster, and the syncs they run (driven by
    /// [`supervisor::run`](crate::server::supervisor::run)).
    supervisors: Supervisors,
    /// token → (cluster, ClusterRegistrationToken uid), rebuilt from the store on a miss.
    token_index: Mutex<HashMap<String, (String, String)>>,
    /// When the index was last rebuilt: unknown tokens (anyone can send them) rebuild it at most
    /// once per [`INDEX_REBUILD_EVERY`]. Held across a rebuild: a lookup that misses while one runs
    /// waits for it and looks again, rather than taking the token for unknown (a restarted server's
    /// first rebuild, under ten thousand reconnecting agents, took seconds, and every agent that
    /// came meanwhile was refused and went into its backoff).
    index_built: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    /// The servers sharing the store, when there are several: a cluster's connection is judged by
    /// its owner only.
    replicas: std::sync::OnceLock<crate::server::replicas::Replicas>,
}

/// How long a request for a cluster whose agent is moving to this server ([`Registration::settling`])
/// waits for the agent's session before it is answered that the cluster is not connected. An agent
/// reconnects within a second of losing its session; the rest is room for a busy server.
pub(crate) const HANDOVER_WAIT: Duration = Duration::from_secs(10);

/// The least time between two rebuilds of the token index caused by unknown tokens.
const INDEX_REBUILD_EVERY: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("server_url", &self.server_url)
            .field("ca_checksum", &self.ca_checksum)
            .finish_non_exhaustive()
    }
}

/// The server's tunnel session settings unless
/// [`ServerBuilder::session_config`](crate::server::ServerBuilder::session_config) replaces them: a dead
/// agent is noticed within 25 s (keepalive every 10 s), so its cluster turns unavailable well within
/// 30 s even when no FIN ever arrives.
pub fn tunnel_session_config() -> SessionConfig {
    let mut cfg = SessionConfig::default();
    cfg.keepalive_interval = Duration::from_secs(10);
    cfg.dead_peer_timeout = Duration::from_secs(25);
    cfg
}

impl Registration {
    /// Sets up registration for a server whose external URL is `server_url` and whose published CA
    /// (the `cacerts` setting) is `ca_pem`, with a new registration key.
    ///
    /// # Errors
    /// [`RegistrationError::Tunnel`].
    #[cfg(test)]
    pub(crate) fn new(
        store: Arc<dyn Store>,
        server_url: String,
        ca_pem: &str,
        agent_image: String,
        tunnel_metrics: rancher_tunnel::Metrics,
    ) -> Result<Self, RegistrationError> {
        let tunnel =
            TunnelServer::new(tunnel_session_config(), tunnel_metrics).map_err(RegistrationError::Tunnel)?;
        Ok(Self::with_tunnel(store, TokenKey::generate(), server_url, ca_pem, agent_image, tunnel))
    }

    /// [`Registration::new`] with the servers' registration key (`shared_secrets`) and a tunnel
    /// server built by the caller (its session settings and transport).
    pub(crate) fn with_tunnel(
        store: Arc<dyn Store>,
        key: TokenKey,
        server_url: String,
        ca_pem: &str,
        agent_image: String,
        tunnel: TunnelServer,
    ) -> Self {
        let ca_checksum = if ca_pem.is_empty() {
            String::new()
        } else {
            rancher_tunnel::ca_checksum(crate::protocol::normalize_ca(ca_pem).as_bytes())
        };
        Registration {
            store,
            key,
            server_url: server_url.trim_end_matches('/').to_owned(),
            ca_checksum,
            agent_image,
            tunnel,
            access: Mutex::new(HashMap::new()),
            session_owners: Mutex::new(HashMap::new()),
            synced: Mutex::new(HashMap::new()),
            synced_changed: Notify::new(),
            supervisors: Supervisors::default(),
            token_index: Mutex::new(HashMap::new()),
            index_built: tokio::sync::Mutex::new(None),
            replicas: std::sync::OnceLock::new(),
        }
    }

    /// The tunnel server agents connect to.
    pub fn tunnel(&self) -> &TunnelServer {
        &self.tunnel
    }

    /// The cluster supervisors: the syncs they run, and the client of each connected cluster's.
    pub(crate) fn supervisors(&self) -> &Supervisors {
        &self.supervisors
    }

    /// The external URL agents and import commands use.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The image the agent manifest runs.
    pub fn agent_image(&self) -> &str {
        &self.agent_image
    }

    /// `CATTLE_CA_CHECKSUM`: SHA-256 hex of the `cacerts` setting (with a trailing newline).
    pub fn ca_checksum(&self) -> &str {
        &self.ca_checksum
    }

    /// Makes `replicas` the servers this one shares the store with (once, at build).
    pub(crate) fn set_replicas(&self, replicas: crate::server::replicas::Replicas) {
        let _ = self.replicas.set(replicas);
    }

    /// Whether this server owns `cluster` among the servers sharing the store (always, on its own).
    pub(crate) fn owns(&self, cluster: &str) -> bool {
        self.replicas.get().is_none_or(|r| r.owner(cluster) == crate::server::replicas::Owner::Me)
    }

    /// Whether clusters may be moving between replicas now ([`Replicas::settling`](
    /// crate::server::replicas::Replicas::settling)): a missing session may be an agent on its way.
    pub(crate) fn settling(&self) -> bool {
        self.replicas.get().is_some_and(|r| r.settling())
    }

    /// Waits, while clusters are [settling](Self::settling) and for at most [`HANDOVER_WAIT`], for a
    /// session of `cluster` (as it exists now, by `uid`) to be held here. Returns whether one is.
    pub(crate) async fn await_handed_over(&self, cluster: &str, uid: &str) -> bool {
        if !self.session_keys_for(cluster, uid).is_empty() {
            return true;
        }
        if !self.settling() || !self.owns(cluster) {
            return false;
        }
        let mut events = self.tunnel.subscribe();
        let deadline = tokio::time::Instant::now() + HANDOVER_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) | Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return false,
                // A session came or went, of any cluster, or events were missed: look again.
                Ok(_) => {
                    if !self.session_keys_for(cluster, uid).is_empty() {
                        return true;
                    }
                }
            }
        }
    }

    /// Whether an agent of `cluster` (its cluster agent, or a node agent) holds a session now.
    pub fn is_connected(&self, cluster: &str) -> bool {
        !self.session_keys(cluster).is_empty()
    }

    /// The client keys through which `cluster` can be reached, the cluster agent's first.
    pub fn session_keys(&self, cluster: &str) -> Vec<String> {
        let mut keys = Vec::new();
        if self.tunnel.has_session(cluster) {
            keys.push(cluster.to_owned());
        }
        let prefix = format!("{cluster}:");
        keys.extend(self.tunnel.client_keys_with_prefix(&prefix));
        keys
    }

    fn lock_access(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ClusterAccess>>> {
        self.access.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_index(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, String)>> {
        self.token_index.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The downstream access the agents of `cluster` handed over, if any since start.
    pub fn access(&self, cluster: &str) -> Option<Arc<ClusterAccess>> {
        self.lock_access().get(cluster).cloned()
    }

    /// Records the access an agent of `cluster` handed over.
    pub(crate) fn set_access(&self, cluster: &str, access: ClusterAccess) {
        self.lock_access().insert(cluster.to_owned(), Arc::new(access));
    }

    /// The token of a registration token: bound to the cluster's uid recorded on it.
    pub(crate) fn token_of(&self, crt: &ClusterRegistrationToken) -> String {
        let cluster = crt.metadata.namespace.as_deref().unwrap_or_default();
        let cluster_uid = crt.metadata.annotations.get(CLUSTER_UID_ANNOTATION).map_or("", String::as_str);
        self.key.token_for(cluster, cluster_uid, &crt.metadata.uid)
    }

    fn verify(&self, crt: &ClusterRegistrationToken, presented: &str) -> bool {
        let cluster = crt.metadata.namespace.as_deref().unwrap_or_default();
        let cluster_uid = crt.metadata.annotations.get(CLUSTER_UID_ANNOTATION).map_or("", String::as_str);
        crt.metadata.deletion_timestamp.is_none()
            && self.key.verify(cluster, cluster_uid, &crt.metadata.uid, presented)
    }

    /// The import manifest URL of a registration token.
    pub(crate) fn manifest_url(&self, crt: &ClusterRegistrationToken) -> String {
        let cluster = crt.metadata.namespace.as_deref().unwrap_or_default();
        format!("{}/v3/import/{}_{cluster}.yaml", self.server_url, self.token_of(crt))
    }

    /// The status a user sees for a registration token (computed, never stored).
    pub(crate) fn crt_status(&self, crt: &ClusterRegistrationToken) -> ClusterRegistrationTokenStatus {
        let url = self.manifest_url(crt);
        ClusterRegistrationTokenStatus {
            conditions: crt.status.conditions.clone(),
            token: self.token_of(crt),
            command: format!("kubectl apply -f {url}"),
            insecure_command: format!("curl --insecure -sfL {url} | kubectl apply -f -"),
            manifest_url: url,
        }
    }

    /// Creates the `default-token` of `cluster` (as it exists now) if it has none; returns it. A
    /// token left over from an earlier cluster of the same name is deleted and replaced.
    ///
    /// # Errors
    /// Store errors.
    pub(crate) async fn ensure_default_token(
        &self,
        cluster: &Cluster,
    ) -> Result<ClusterRegistrationToken, RegistrationError> {
        let name = cluster.metadata.name.as_str();
        let api: Api<ClusterRegistrationToken> = Api::namespaced(self.store.clone(), name);
        for _ in 0..4 {
            if let Some(crt) = api.get_opt(DEFAULT_TOKEN).await? {
                if owner::belongs(&crt.metadata, CLUSTER_UID_ANNOTATION, &cluster.metadata) {
                    return Ok(crt);
                }
                tracing::warn!(cluster = name, "deleting a registration token left by an earlier cluster");
                let pre = rancher_core::store::Preconditions {
                    uid: Some(crt.metadata.uid.clone()),
                    ..Default::default()
                };
                match self.store.delete("clusterregistrationtokens", Some(name), DEFAULT_TOKEN, pre).await {
                    Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            let mut crt = ClusterRegistrationToken::new(
                DEFAULT_TOKEN,
                ClusterRegistrationTokenSpec { cluster_name: name.to_owned() },
            );
            crt.metadata.namespace = Some(name.to_owned());
            owner::stamp(&mut crt.metadata, CLUSTER_UID_ANNOTATION, &cluster.metadata);
            match api.create(&crt).await {
                Ok(c) => {
                    // Known at once, without waiting for an index rebuild.
                    self.lock_index().insert(self.token_of(&c), (name.to_owned(), c.metadata.uid.clone()));
                    return Ok(c);
                }
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RegistrationError::Store(StoreError::Conflict {
            resource: "clusterregistrationtokens".into(),
            name: DEFAULT_TOKEN.into(),
        }))
    }

    /// The registration token `token` is, checked against the store (so a deleted
    /// ClusterRegistrationToken stops working at once). Whether it belongs to the cluster of its
    /// namespace as that exists now is for the caller to check.
    ///
    /// # Errors
    /// Store errors; an unknown token is `Ok(None)`.
    pub(crate) async fn registration_token(
        &self,
        token: &str,
    ) -> Result<Option<ClusterRegistrationToken>, RegistrationError> {
        if !token::looks_like_token(token) {
            return Ok(None);
        }
        if let Some(crt) = self.indexed_token(token).await? {
            return Ok(Some(crt));
        }
        // A miss: recompute every token (one HMAC each) and remember them — at most once a second,
        // so a flood of wrong tokens cannot turn into a flood of store lists. Misses meanwhile wait
        // for the rebuild under way and look in what it found.
        let mut built = self.index_built.lock().await;
        if let Some(crt) = self.indexed_token(token).await? {
            return Ok(Some(crt));
        }
        let now = tokio::time::Instant::now();
        if built.is_some_and(|t| now.duration_since(t) < INDEX_REBUILD_EVERY) {
            return Ok(None);
        }
        *built = Some(now);
        let all = Api::<ClusterRegistrationToken>::all(self.store.clone()).list().await?;
        let mut found = None;
        let mut index = HashMap::with_capacity(all.len());
        for crt in all {
            let Some(cluster) = crt.metadata.namespace.clone() else { continue };
            if crt.metadata.deletion_timestamp.is_some() {
                continue;
            }
            index.insert(self.token_of(&crt), (cluster, crt.metadata.uid.clone()));
            if self.verify(&crt, token) {
                found = Some(crt);
            }
        }
        *self.lock_index() = index;
        drop(built);
        debug!(found = found.is_some(), "registration token lookup");
        Ok(found)
    }

    /// The registration token `token` is, if the index knows it and the store still has it (an
    /// entry that is no longer valid is dropped).
    async fn indexed_token(
        &self,
        token: &str,
    ) -> Result<Option<ClusterRegistrationToken>, RegistrationError> {
        let cached = self.lock_index().get(token).cloned();
        let Some((cluster, uid)) = cached else { return Ok(None) };
        if let Some(crt) = self.token_still_valid(&cluster, &uid, token).await? {
            return Ok(Some(crt));
        }
        self.lock_index().remove(token);
        Ok(None)
    }

    async fn token_still_valid(
        &self,
        cluster: &str,
        uid: &str,
        token: &str,
    ) -> Result<Option<ClusterRegistrationToken>, RegistrationError> {
        let api: Api<ClusterRegistrationToken> = Api::namespaced(self.store.clone(), cluster);
        Ok(api.list().await?.into_iter().find(|crt| crt.metadata.uid == uid && self.verify(crt, token)))
    }

    /// Whether `presented` is a registration token of `cluster` as it exists now (for the import
    /// URL, which names the cluster). A token of an earlier cluster of that name is not.
    pub(crate) async fn check_token(
        &self,
        cluster: &str,
        presented: &str,
    ) -> Result<bool, RegistrationError> {
        if !token::looks_like_token(presented) {
            return Ok(false);
        }
        let Some(current) = Api::<Cluster>::all(self.store.clone()).get_opt(cluster).await? else {
            return Ok(false);
        };
        if current.metadata.deletion_timestamp.is_some() {
            return Ok(false);
        }
        let api: Api<ClusterRegistrationToken> = Api::namespaced(self.store.clone(), cluster);
        Ok(api.list().await?.iter().any(|crt| {
            self.verify(crt, presented)
                && owner::belongs(&crt.metadata, CLUSTER_UID_ANNOTATION, &current.metadata)
        }))
    }

    /// Applies `change` to the cluster's stored state, compare-and-swap, re-reading and retrying
    /// on Conflict. `change` returns false when nothing needs writing. `Ok(None)` when the cluster
    /// is gone.
    ///
    /// # Errors
    /// Store errors other than Conflict, or Conflict after many attempts.
    pub(crate) async fn update_cluster(
        &self,
        cluster: &str,
        mut change: impl FnMut(&mut Cluster) -> bool,
    ) -> Result<Option<Cluster>, RegistrationError> {
        let api: Api<Cluster> = Api::all(self.store.clone());
        let mut attempt = 0u32;
        loop {
            let Some(mut current) = api.get_opt(cluster).await? else { return Ok(None) };
            if !change(&mut current) {
                return Ok(Some(current));
            }
            match api.update(&current).await {
                Ok(updated) => return Ok(Some(updated)),
                Err(StoreError::Conflict { .. }) if attempt < 16 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn manifest(&self, token: &str, cluster: &str) -> String {
        manifest::render(&manifest::ManifestParams {
            server_url: &self.server_url,
            token,
            cluster,
            ca_checksum: &self.ca_checksum,
            agent_image: &self.agent_image,
        })
    }
}

#[cfg(test)]
mod tests;
