//! A built cluster's state, `.rkestate`-style: what was provisioned (the desired config as last
//! applied), the PKI, and the hosts' pinned SSH keys. It holds
//! private keys, so it is kept sealed (encrypted) in the store, one object per cluster in the
//! resource [`RESOURCE`], which no `/v3` path exposes; the owners download it through the cluster's
//! `exportState` action.

use std::collections::BTreeMap;

use rancher_core::ObjectMeta;
use rancher_core::model::{Cluster, RkeConfig};
use rancher_core::store::{Preconditions, Store, StoreError};
use rancher_provision::cluster_pki::ClusterPki;
use rancher_provision::rke_plans::EtcdJoin;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::server::cleanup::owner::{self, CLUSTER_UID_ANNOTATION};
use crate::server::secrets::Sealer;

/// The store resource of the sealed states (cluster-scoped, named after the cluster).
pub(super) const RESOURCE: &str = "rkeclusterstates";

/// What the server keeps of a cluster it built.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RkeState {
    /// The config as last provisioned (current state); the cluster's spec is the desired one. During
    /// a day-two rollout its hosts are every host that may run something of the cluster's: a host
    /// is in it before its plan is first sent, and leaves it once it is clean.
    #[serde(default)]
    pub(crate) current_config: Option<RkeConfig>,
    /// The cluster's certificates and keys.
    #[serde(default)]
    pub(crate) pki: ClusterPki,
    /// Each host's SSH public key, pinned at first contact (node name → `ssh-ed25519 AAAA…`).
    #[serde(default)]
    pub(crate) host_keys: BTreeMap<String, String>,
    /// The plan revision each host runs (node name → revision).
    #[serde(default)]
    pub(crate) applied: BTreeMap<String, String>,
    /// How each etcd host joined the cluster (node name → its `--initial-cluster` flags).
    #[serde(default)]
    pub(crate) etcd_joins: BTreeMap<String, EtcdJoin>,
    /// The `requested_at` of the last certificate rotation started (`rkeConfig.rotate_certificates`),
    /// so that each request is carried out once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rotation_started: Option<String>,
    /// The etcd snapshots taken, oldest first (see [`super::snapshots`]).
    #[serde(default)]
    pub(crate) snapshots: Vec<super::snapshots::SnapshotRecord>,
    /// The last restore from a snapshot (`rkeConfig.restore`) and how far it got, so that each
    /// request is carried out once and one cut short resumes (see [`super::restore`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) restore: Option<super::restore::RestoreProgress>,
}

impl std::fmt::Debug for RkeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RkeState")
            .field("hosts", &self.host_keys.keys().collect::<Vec<_>>())
            .field("applied", &self.applied)
            .field("rotation_started", &self.rotation_started)
            .field("restore", &self.restore)
            .field("rotation_phase", &self.pki.rotation_phase())
            .finish_non_exhaustive()
    }
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    /// The store failed.
    #[error("cluster state: {0}")]
    Store(#[from] StoreError),
    /// The sealed blob could not be opened (wrong key, corrupted) or parsed.
    #[error("cluster state of {cluster} cannot be read: {reason}")]
    Corrupt {
        /// The cluster.
        cluster: String,
        /// Why.
        reason: String,
    },
}

/// The stored state of `cluster` and its resource version, if there is one for this cluster (a state
/// left by an earlier cluster of the same name is ignored and replaced on save).
pub(crate) async fn load(
    store: &dyn Store,
    sealer: &Sealer,
    cluster: &Cluster,
) -> Result<Option<(RkeState, String)>, StateError> {
    let name = cluster.metadata.name.as_str();
    let object = match store.get(RESOURCE, None, name).await {
        Ok(o) => o,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let meta: ObjectMeta = serde_json::from_value(object["metadata"].clone())
        .map_err(|e| StateError::Corrupt { cluster: name.to_owned(), reason: e.to_string() })?;
    if !owner::belongs(&meta, CLUSTER_UID_ANNOTATION, &cluster.metadata) {
        return Ok(None);
    }
    let corrupt = |reason: String| StateError::Corrupt { cluster: name.to_owned(), reason };
    let sealed = object["sealed"].as_str().ok_or_else(|| corrupt("no sealed data".into()))?;
    let plain = sealer.open(sealed).map_err(|e| corrupt(e.to_string()))?;
    let state = serde_json::from_str(secrecy::ExposeSecret::expose_secret(&plain))
        .map_err(|e| corrupt(e.to_string()))?;
    Ok(Some((state, meta.resource_version)))
}

/// Writes `state` for `cluster`: creates it, or replaces the version `resource_version` (a
/// Conflict when someone else wrote in between). Returns the new resource version.
pub(crate) async fn save(
    store: &dyn Store,
    sealer: &Sealer,
    cluster: &Cluster,
    state: &RkeState,
    resource_version: Option<&str>,
) -> Result<String, StateError> {
    let name = cluster.metadata.name.as_str();
    let plain = serde_json::to_string(state)
        .map_err(|e| StateError::Corrupt { cluster: name.to_owned(), reason: e.to_string() })?;
    let mut meta = ObjectMeta { name: name.to_owned(), ..Default::default() };
    owner::stamp(&mut meta, CLUSTER_UID_ANNOTATION, &cluster.metadata);
    let written = match resource_version {
        Some(rv) => {
            meta.resource_version = rv.to_owned();
            let object = json!({ "metadata": meta, "sealed": sealer.seal(&plain) });
            store.update(RESOURCE, object).await?
        }
        None => {
            // A state of an earlier cluster of this name goes first.
            match store.delete(RESOURCE, None, name, Preconditions::default()).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let object = json!({ "metadata": meta, "sealed": sealer.seal(&plain) });
            store.create(RESOURCE, object).await?
        }
    };
    Ok(resource_version_of(&written))
}

/// A cluster's state as loaded, saved again after each change with the version it was read at (a
/// writer in between is a Conflict, not a lost update).
pub(crate) struct Tracked {
    /// The state.
    pub(crate) st: RkeState,
    rv: Option<String>,
}

impl Tracked {
    /// The stored state of `cluster`, or a new one (not stored until [`save`](Self::save)).
    pub(crate) async fn load(
        store: &dyn Store,
        sealer: &Sealer,
        cluster: &Cluster,
    ) -> Result<Self, StateError> {
        Ok(match load(store, sealer, cluster).await? {
            Some((st, rv)) => Tracked { st, rv: Some(rv) },
            None => Tracked { st: RkeState::default(), rv: None },
        })
    }

    /// Whether it was ever stored.
    pub(crate) fn is_stored(&self) -> bool {
        self.rv.is_some()
    }

    /// Stores the state as it is now.
    pub(crate) async fn save(
        &mut self,
        store: &dyn Store,
        sealer: &Sealer,
        cluster: &Cluster,
    ) -> Result<(), StateError> {
        self.rv = Some(save(store, sealer, cluster, &self.st, self.rv.as_deref()).await?);
        Ok(())
    }
}

/// Deletes the state of `cluster` (after the cluster is removed).
pub(crate) async fn delete(store: &dyn Store, cluster: &str) -> Result<(), StateError> {
    match store.delete(RESOURCE, None, cluster, Preconditions::default()).await {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn resource_version_of(object: &Value) -> String {
    object["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_owned()
}
