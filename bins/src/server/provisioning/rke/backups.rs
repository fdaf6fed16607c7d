//! etcd snapshots of a built cluster as the server offers them: taken now (the `backupEtcd`
//! action, or the schedule in [`super::backup_schedule`]), copied to S3-compatible storage when the
//! cluster has `backup_config.s3backupconfig`, kept in the sealed state, listed in the cluster's
//! `status.etcdSnapshots`, and pruned by retention.
//!
//! A failed upload keeps the snapshot on the hosts and records why in the snapshot's record: the
//! snapshot itself is what matters for a restore, the copy is for when the hosts are lost.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use rancher_core::model::{Cluster, EtcdSnapshot, EtcdSnapshotS3, RkeConfig};
use rancher_core::store::{Store, StoreError};
use rancher_provision::etcd_snapshots::S3Copy;
use rancher_provision::rke;
use rancher_provision::s3::S3Client;

use super::keys;
use super::snapshots::{self, SnapshotKind, SnapshotRecord, SnapshotsError};
use super::state::{RkeState, StateError, Tracked};
use crate::server::secrets::Sealer;

/// How often recording a snapshot in the state is tried again after a concurrent write.
const STATE_ATTEMPTS: usize = 8;

/// Why a snapshot could not be taken, recorded or pruned.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackupError {
    /// The cluster is not built on hosts.
    #[error(
        "cluster {0} is not built on hosts (it has no rkeConfig): only such clusters have etcd snapshots \
         taken by the server"
    )]
    NotOnHosts(String),
    /// Taking, restoring or removing the snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotsError),
    /// The state could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The cluster's status could not be written.
    #[error("writing the snapshots into the status of cluster {cluster}: {source}")]
    Status {
        /// The cluster.
        cluster: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The server's scratch directory could not be made.
    #[error("the server's scratch directory {}: {source}", path.display())]
    Scratch {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl BackupError {
    /// Whether retrying later may help (a host or etcd unreachable, a store conflict).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            BackupError::Snapshot(e) => e.is_transient(),
            BackupError::State(StateError::Store(_)) | BackupError::Status { .. } => true,
            _ => false,
        }
    }

    /// Whether the cluster has no etcd to snapshot yet (not built on hosts, not provisioned).
    pub(crate) fn is_not_ready(&self) -> bool {
        matches!(self, BackupError::NotOnHosts(_) | BackupError::Snapshot(SnapshotsError::NotProvisioned(_)))
    }
}

/// One snapshot at a time per cluster in this server (two in the same second would share a name).
static TAKING: LazyLock<std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

fn cluster_lock(cluster: &str) -> Arc<tokio::sync::Mutex<()>> {
    let mut map = TAKING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry(cluster.to_owned()).or_default().clone()
}

/// The server's scratch directory for `cluster`'s snapshots, mode 0700 (a snapshot holds the
/// cluster's Secrets): `<tmp>/rancher-rs-<pid>-etcd-snapshots/<cluster>`.
pub(super) fn scratch_dir(cluster: &str) -> Result<PathBuf, BackupError> {
    use std::os::unix::fs::DirBuilderExt;
    let top = std::env::temp_dir().join(format!("rancher-rs-{}-etcd-snapshots", std::process::id()));
    let dir = top.join(cluster);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| BackupError::Scratch { path: dir.clone(), source })?;
    Ok(dir)
}

/// Takes a snapshot of `cluster`'s etcd now, uploads it when the cluster has an S3 target, records
/// it in the state and lists it in the status; returns its record (whose `s3` says whether the
/// upload worked).
///
/// # Errors
/// [`BackupError::NotOnHosts`]; [`BackupError::Snapshot`] when the cluster is not provisioned, an
/// etcd host cannot be reached, no member is healthy or no host could store it;
/// [`BackupError::State`] / [`BackupError::Status`] when the store fails.
pub(crate) async fn take(
    store: &Arc<dyn Store>,
    sealer: &Sealer,
    cluster: &Cluster,
    kind: SnapshotKind,
) -> Result<SnapshotRecord, BackupError> {
    let name = cluster.metadata.name.as_str();
    let cfg = cluster.spec.rke_config.as_ref().ok_or_else(|| BackupError::NotOnHosts(name.to_owned()))?;
    let lock = cluster_lock(name);
    let _one_at_a_time = lock.lock().await;
    let t = Tracked::load(store.as_ref(), sealer, cluster).await?;
    let scratch = scratch_dir(name)?;
    let taken = snapshots::take_snapshot(sealer, name, &t.st, kind, &scratch).await?;
    let mut record = taken.record.clone();
    record.s3 = upload(cfg, sealer, &record, &taken.local_file).await;
    if let Err(e) = tokio::fs::remove_file(&taken.local_file).await {
        tracing::warn!(cluster = name, file = %taken.local_file.display(), error = %e, "the snapshot's scratch copy stays on the server");
    }
    let kept = record.clone();
    let st = modify_state(store, sealer, cluster, move |st| {
        st.snapshots.retain(|r| r.name != kept.name);
        st.snapshots.push(kept.clone());
    })
    .await?;
    write_status(store, cluster, &st.snapshots).await?;
    tracing::info!(
        cluster = name,
        snapshot = %record.name,
        size = record.size,
        hosts = ?record.hosts,
        s3 = ?record.s3,
        "etcd snapshot recorded"
    );
    Ok(record)
}

/// Uploads the snapshot at `file` when `cfg` has an S3 target: the object's key, or why it failed.
async fn upload(cfg: &RkeConfig, sealer: &Sealer, record: &SnapshotRecord, file: &Path) -> Option<S3Copy> {
    let s3 = cfg.services.etcd.backup_config.as_ref()?.s3_backup_config.as_ref()?;
    let sent = async {
        let secret = keys::s3_secret_key(cfg, sealer)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no S3 secret key".to_owned())?;
        let client = S3Client::new(&rke::s3_config(s3, secret)).map_err(|e| e.to_string())?;
        let put = client.put_object(&object_name(&record.name), file).await.map_err(|e| e.to_string())?;
        if put.sha256 != record.sha256 {
            return Err(format!(
                "the uploaded file's SHA-256 {} is not the snapshot's {}",
                put.sha256, record.sha256
            ));
        }
        Ok(put.key)
    };
    let bucket = s3.bucket_name.clone();
    Some(match sent.await {
        Ok(key) => S3Copy { bucket, key, error: String::new() },
        Err(error) => {
            tracing::warn!(snapshot = %record.name, bucket = %bucket, error = %error, "etcd snapshot not uploaded; it is kept on the hosts");
            S3Copy { bucket, key: String::new(), error }
        }
    })
}

/// The object name of a snapshot under the bucket's folder.
fn object_name(snapshot: &str) -> String {
    format!("{snapshot}.db")
}

/// Removes the recurring snapshots beyond `retention` from the hosts and from S3 and drops their
/// records; returns their names. A host or bucket that cannot be cleaned is logged (the record goes
/// anyway: what is left only takes room).
///
/// # Errors
/// [`BackupError::Snapshot`] when the cluster is not provisioned or an etcd host cannot be reached;
/// the store's.
pub(crate) async fn prune(
    store: &Arc<dyn Store>,
    sealer: &Sealer,
    cluster: &Cluster,
    retention: usize,
) -> Result<Vec<String>, BackupError> {
    let name = cluster.metadata.name.as_str();
    let cfg = cluster.spec.rke_config.as_ref().ok_or_else(|| BackupError::NotOnHosts(name.to_owned()))?;
    let lock = cluster_lock(name);
    let _one_at_a_time = lock.lock().await;
    let t = Tracked::load(store.as_ref(), sealer, cluster).await?;
    let old: Vec<SnapshotRecord> =
        snapshots::beyond_retention(&t.st.snapshots, retention).into_iter().cloned().collect();
    if old.is_empty() {
        return Ok(vec![]);
    }
    for record in &old {
        for (node, why) in snapshots::remove_snapshot(sealer, name, &t.st, &record.name).await? {
            tracing::warn!(cluster = name, snapshot = %record.name, node = %node, why = %why, "an old etcd snapshot stays on a host");
        }
        if record.s3.as_ref().is_some_and(S3Copy::is_uploaded)
            && let Err(why) = delete_object(cfg, sealer, &record.name).await
        {
            tracing::warn!(cluster = name, snapshot = %record.name, why = %why, "an old etcd snapshot stays in S3");
        }
    }
    let names: Vec<String> = old.iter().map(|r| r.name.clone()).collect();
    let gone = names.clone();
    let st = modify_state(store, sealer, cluster, move |st| st.snapshots.retain(|r| !gone.contains(&r.name)))
        .await?;
    write_status(store, cluster, &st.snapshots).await?;
    tracing::info!(cluster = name, removed = ?names, "etcd snapshots beyond retention removed");
    Ok(names)
}

async fn delete_object(cfg: &RkeConfig, sealer: &Sealer, snapshot: &str) -> Result<(), String> {
    let Some(s3) = cfg.services.etcd.backup_config.as_ref().and_then(|b| b.s3_backup_config.as_ref()) else {
        return Err("the cluster no longer has an S3 target".into());
    };
    let secret = keys::s3_secret_key(cfg, sealer)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no S3 secret key".to_owned())?;
    let client = S3Client::new(&rke::s3_config(s3, secret)).map_err(|e| e.to_string())?;
    client.delete_object(&object_name(snapshot)).await.map_err(|e| e.to_string())
}

/// Loads the state, applies `change`, saves it; a concurrent writer (the run) makes it start
/// again from the stored state. Returns the state as saved.
async fn modify_state(
    store: &Arc<dyn Store>,
    sealer: &Sealer,
    cluster: &Cluster,
    change: impl Fn(&mut RkeState),
) -> Result<RkeState, BackupError> {
    let mut attempt = 0;
    loop {
        let mut t = Tracked::load(store.as_ref(), sealer, cluster).await?;
        if !t.is_stored() {
            return Err(SnapshotsError::NotProvisioned(cluster.metadata.name.clone()).into());
        }
        change(&mut t.st);
        match t.save(store.as_ref(), sealer, cluster).await {
            Ok(()) => return Ok(t.st),
            Err(StateError::Store(StoreError::Conflict { .. })) if attempt + 1 < STATE_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt as u64)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The status's view of the records.
pub(crate) fn status_of(records: &[SnapshotRecord]) -> Vec<EtcdSnapshot> {
    records
        .iter()
        .map(|r| EtcdSnapshot {
            name: r.name.clone(),
            kind: match r.kind {
                SnapshotKind::Manual => "manual",
                SnapshotKind::Recurring => "recurring",
            }
            .to_owned(),
            created_at: r.created.to_string(),
            size: r.size,
            sha256: r.sha256.clone(),
            hosts: r.hosts.clone(),
            s3: r.s3.as_ref().map(|s| EtcdSnapshotS3 {
                bucket: s.bucket.clone(),
                key: s.key.clone(),
                error: s.error.clone(),
            }),
        })
        .collect()
}

/// Writes `records` into `cluster`'s `status.etcdSnapshots` (retried on a conflict).
///
/// # Errors
/// [`BackupError::Status`].
pub(crate) async fn write_status(
    store: &Arc<dyn Store>,
    cluster: &Cluster,
    records: &[SnapshotRecord],
) -> Result<(), BackupError> {
    let wanted = status_of(records);
    crate::server::provisioning::cluster_status::update(store, cluster, |c| {
        if c.status.etcd_snapshots == wanted {
            return false;
        }
        c.status.etcd_snapshots = wanted.clone();
        true
    })
    .await
    .map_err(|source| BackupError::Status { cluster: cluster.metadata.name.clone(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_lists_each_record_with_its_s3_copy_or_why_not() {
        let record = |name: &str, kind, s3| SnapshotRecord {
            name: name.into(),
            kind,
            size: 20512,
            sha256: "ab".repeat(32),
            created: "2026-12-03T15:04:05Z".parse().unwrap(),
            source: "node1".into(),
            hosts: vec!["node1".into(), "node2".into()],
            s3,
        };
        let up = S3Copy { bucket: "snaps".into(), key: "prod/c1-manual-1.db".into(), error: String::new() };
        let down = S3Copy { bucket: "snaps".into(), key: String::new(), error: "connection refused".into() };
        let shown = status_of(&[
            record("c1-manual-1", SnapshotKind::Manual, Some(up)),
            record("c1-recurring-2", SnapshotKind::Recurring, Some(down)),
            record("c1-recurring-3", SnapshotKind::Recurring, None),
        ]);
        let json = serde_json::to_value(&shown).unwrap();
        assert_eq!(
            json[0],
            serde_json::json!({
                "name": "c1-manual-1", "kind": "manual", "createdAt": "2026-12-03T15:04:05Z",
                "size": 20512, "sha256": "ab".repeat(32), "hosts": ["node1", "node2"],
                "s3": {"bucket": "snaps", "key": "prod/c1-manual-1.db"},
            })
        );
        assert_eq!(json[1]["kind"], "recurring");
        assert_eq!(json[1]["s3"], serde_json::json!({"bucket": "snaps", "error": "connection refused"}));
        assert!(json[2].get("s3").is_none());
        assert_eq!(object_name("c1-manual-1"), "c1-manual-1.db");
    }

    #[test]
    fn the_scratch_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch_dir("scratch-test-cluster").unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::remove_dir(&dir).unwrap();
    }
}
