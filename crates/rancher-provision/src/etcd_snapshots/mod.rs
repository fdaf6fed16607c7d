//! etcd snapshots of a cluster built on hosts, kept on its etcd hosts: [`take`] streams one
//! healthy member's snapshot through the server (checksummed on the way) and stores it on every
//! etcd host under `<prefix>/opt/rke/etcd-snapshots/<name>.db` with a `.sha256` beside it;
//! [`restore`] brings every member back from the same snapshot with `etcdctl snapshot restore`,
//! once the caller has stopped etcd and the control plane on every host.
//!
//! Names are Rancher's: `<cluster>-<manual|recurring>-<UTC timestamp>`; a [`SnapshotRecord`] is
//! what the server keeps of one.

mod restore;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::cluster_pki::{self, ClusterPki};
pub use crate::etcd_api::EtcdHost;
use crate::etcd_api::{EtcdError, EtcdTls};
use crate::ssh::{SshError, SshSession, UploadSource, sh_quote};

pub use restore::{RestoreReport, RestoreSpec, cleanup_restore, restore};

/// The largest snapshot copied between hosts (64 GiB: etcd's own quota is 8 GiB at most).
const MAX_SNAPSHOT: u64 = 64 << 30;

/// Why a snapshot was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SnapshotKind {
    /// Asked for by a user.
    Manual,
    /// Taken on the cluster's schedule.
    Recurring,
}

impl SnapshotKind {
    fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Manual => "manual",
            SnapshotKind::Recurring => "recurring",
        }
    }
}

/// What the server keeps of one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRecord {
    /// `<cluster>-<kind>-<UTC timestamp>`; the file is `<name>.db`.
    pub name: String,
    /// Why it was taken.
    pub kind: SnapshotKind,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
    /// When it was taken.
    pub created: jiff::Timestamp,
    /// The member it was taken from (node name).
    pub source: String,
    /// The etcd hosts (node names) that hold it.
    pub hosts: Vec<String>,
    /// Its copy in S3-compatible storage, or why there is none; `None` when the cluster uploads
    /// nowhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Copy>,
}

/// A snapshot's copy in S3-compatible storage: the object's key, or why the upload failed (the
/// snapshot is kept on the hosts either way).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Copy {
    /// The bucket.
    pub bucket: String,
    /// The object's full key in the bucket; empty when the upload failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Why the upload failed; empty when it succeeded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl S3Copy {
    /// Whether the object is in the bucket.
    pub fn is_uploaded(&self) -> bool {
        !self.key.is_empty() && self.error.is_empty()
    }
}

/// A snapshot just taken: its record, the local copy, and the hosts that could not store it.
#[derive(Debug)]
pub struct TakenSnapshot {
    /// The record to keep.
    pub record: SnapshotRecord,
    /// The snapshot file on the server, in the caller's scratch directory: upload it to object
    /// storage from here, then remove it.
    pub local_file: PathBuf,
    /// Hosts that could not store it (node name, why); they are not in `record.hosts`.
    pub failed_hosts: Vec<(String, String)>,
}

/// Why a snapshot or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The arguments are not valid (no etcd host, a bad snapshot name).
    #[error("{0}")]
    InvalidInput(String),
    /// The cluster's PKI lacks the etcd CA or the client certificate.
    #[error("the cluster's PKI has no {0}: provision the cluster first")]
    NoCredentials(&'static str),
    /// No member answered as healthy; each host's reason is listed.
    #[error("no healthy etcd member to take the snapshot from: {0}")]
    NoHealthyMember(String),
    /// etcd failed.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// SSH to a host failed.
    #[error("{node}: {source}")]
    Ssh {
        /// The node.
        node: String,
        /// Why.
        #[source]
        source: Box<SshError>,
    },
    /// No etcd host could store the snapshot.
    #[error("no etcd host could store the snapshot {name}: {reasons}")]
    NotStored {
        /// The snapshot.
        name: String,
        /// Each host's reason.
        reasons: String,
    },
    /// The server's scratch file could not be written or read.
    #[error("{}: {source}", path.display())]
    Local {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No etcd host has the snapshot with its checksum.
    #[error("no etcd host has the snapshot {name} with sha256 {sha256}")]
    Missing {
        /// The snapshot.
        name: String,
        /// The checksum it must have.
        sha256: String,
    },
    /// A host has no `etcdctl` (a bundle made before it was part of the bundles).
    #[error(
        "{node}: {path} is missing: restoring needs etcdctl on every etcd host; use a bundle with an \
         etcdctl component and let the cluster provision"
    )]
    NoEtcdctl {
        /// The node.
        node: String,
        /// Where it was looked for.
        path: String,
    },
    /// etcd still answers on a host: the caller must stop it (and the control plane) first.
    #[error("{node}: etcd still runs: stop etcd and the control plane on every host before restoring")]
    StillRunning {
        /// The node.
        node: String,
    },
}

impl SnapshotError {
    /// Whether retrying may help (a host or etcd unreachable for now).
    pub fn is_transient(&self) -> bool {
        match self {
            SnapshotError::Etcd(e) => e.is_transient(),
            SnapshotError::Ssh { source, .. } => source.is_transient(),
            SnapshotError::NoHealthyMember(_) | SnapshotError::NotStored { .. } => true,
            _ => false,
        }
    }
}

pub(crate) fn ssh_err(node: &str) -> impl Fn(SshError) -> SnapshotError + '_ {
    move |source| SnapshotError::Ssh { node: node.to_owned(), source: Box::new(source) }
}

/// The client credentials towards etcd from the cluster's PKI: the etcd CA and the API server's
/// etcd client certificate (the server speaks to etcd as the API server does).
///
/// # Errors
/// [`SnapshotError::NoCredentials`] when the PKI lacks one of them.
pub fn etcd_tls(pki: &ClusterPki) -> Result<EtcdTls, SnapshotError> {
    let ca = pki.get(cluster_pki::ETCD_CA).ok_or(SnapshotError::NoCredentials("etcd CA"))?;
    let client = pki
        .get(cluster_pki::APISERVER_ETCD_CLIENT)
        .ok_or(SnapshotError::NoCredentials("etcd client certificate"))?;
    Ok(EtcdTls {
        ca_pem: ca.cert_pem.clone(),
        cert_pem: client.cert_pem.clone(),
        key_pem: client.key_pem.expose().to_owned().into(),
        server_name: "127.0.0.1".into(),
    })
}

/// Rancher's snapshot name: `<cluster>-<kind>-<UTC time as YYYYMMDDhhmmss>`.
pub fn snapshot_name(cluster: &str, kind: SnapshotKind, at: jiff::Timestamp) -> String {
    format!("{cluster}-{}-{}", kind.as_str(), at.strftime("%Y%m%d%H%M%S"))
}

/// Whether `name` is safe as a file name on the hosts (letters, digits, `-`, `_`, `.`; no `..`).
pub fn check_name(name: &str) -> Result<(), SnapshotError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok { Ok(()) } else { Err(SnapshotError::InvalidInput(format!("{name:?} is not a snapshot name"))) }
}

/// The directory of snapshots on a host: `<prefix>/opt/rke/etcd-snapshots`.
pub fn snapshot_dir(prefix: &str) -> String {
    format!("{}/opt/rke/etcd-snapshots", prefix.trim_end_matches('/'))
}

/// A snapshot's file on a host.
pub fn snapshot_file(prefix: &str, name: &str) -> String {
    format!("{}/{name}.db", snapshot_dir(prefix))
}

/// Takes a snapshot named `name` from the first healthy voting member of `hosts`, writes it to
/// `<scratch_dir>/<name>.db` on the server, then stores it (and a `.sha256` file) on every host
/// under `prefix`. A host that cannot store it is listed in
/// [`failed_hosts`](TakenSnapshot::failed_hosts); the call fails only when none can.
///
/// # Errors
/// [`SnapshotError::NoHealthyMember`], [`SnapshotError::NotStored`], [`SnapshotError::Etcd`] when the
/// snapshot stream fails, [`SnapshotError::Local`] for the scratch file.
pub async fn take(
    hosts: &[EtcdHost],
    tls: &EtcdTls,
    prefix: &str,
    name: &str,
    kind: SnapshotKind,
    scratch_dir: &Path,
) -> Result<TakenSnapshot, SnapshotError> {
    check_name(name)?;
    if hosts.is_empty() {
        return Err(SnapshotError::InvalidInput("no etcd host".into()));
    }
    let mut reasons = Vec::new();
    let mut source = None;
    for h in hosts {
        let etcd = h.etcd(tls)?;
        match etcd.status().await {
            Ok(s) if s.is_serving() && !s.is_learner => {
                source = Some((h, etcd));
                break;
            }
            Ok(s) => reasons
                .push(format!("{}: not serving (leader {:x}, errors {:?})", h.name, s.leader, s.errors)),
            Err(e) => reasons.push(format!("{}: {e}", h.name)),
        }
    }
    let Some((source, etcd)) = source else {
        return Err(SnapshotError::NoHealthyMember(reasons.join("; ")));
    };
    let local = |source| SnapshotError::Local { path: scratch_dir.to_owned(), source };
    tokio::fs::create_dir_all(scratch_dir).await.map_err(local)?;
    let local_file = scratch_dir.join(format!("{name}.db"));
    let local = |source| SnapshotError::Local { path: local_file.clone(), source };
    let created = jiff::Timestamp::now();
    let mut file = tokio::fs::File::create(&local_file).await.map_err(local)?;
    let info = match etcd.snapshot(&mut file).await {
        Ok(info) => info,
        Err(e) => {
            drop(file);
            let _ = tokio::fs::remove_file(&local_file).await;
            return Err(e.into());
        }
    };
    file.sync_all().await.map_err(local)?;
    file.shutdown().await.map_err(local)?;
    drop(file);
    tracing::info!(snapshot = name, from = %source.name, size = info.size, sha256 = %info.sha256, "etcd snapshot taken");

    let (mut stored, mut failed_hosts) = (Vec::new(), Vec::new());
    for h in hosts {
        match store_on(h, prefix, name, &local_file, &info.sha256).await {
            Ok(()) => stored.push(h.name.clone()),
            Err(e) => failed_hosts.push((h.name.clone(), e.to_string())),
        }
    }
    if stored.is_empty() {
        let reasons =
            failed_hosts.iter().map(|(n, why)| format!("{n}: {why}")).collect::<Vec<_>>().join("; ");
        return Err(SnapshotError::NotStored { name: name.to_owned(), reasons });
    }
    let record = SnapshotRecord {
        name: name.to_owned(),
        kind,
        size: info.size,
        sha256: info.sha256,
        created,
        source: source.name.clone(),
        hosts: stored,
        s3: None,
    };
    Ok(TakenSnapshot { record, local_file, failed_hosts })
}

/// Puts the snapshot file and its `.sha256` on `h` (the SHA-256 checked on the host).
async fn store_on(
    h: &EtcdHost,
    prefix: &str,
    name: &str,
    local: &Path,
    sha256: &str,
) -> Result<(), SshError> {
    let remote = snapshot_file(prefix, name);
    h.session.upload_verified(local, &remote, 0o600, sha256).await?;
    let line = format!("{sha256}  {name}.db\n");
    h.session.upload(UploadSource::Bytes(line.as_bytes()), &format!("{remote}.sha256"), 0o600).await?;
    Ok(())
}

/// The SHA-256 of `path` on the host, if the file exists.
async fn sha256_on(session: &SshSession, path: &str) -> Result<Option<String>, SshError> {
    let out = session.exec(&format!("sha256sum {} 2>/dev/null", sh_quote(path))).await?;
    Ok(out.stdout_text().split_whitespace().next().filter(|s| s.len() == 64).map(str::to_owned))
}

/// Removes a snapshot (and its `.sha256`) from `hosts`, for retention; returns the hosts it could
/// not be removed from with why.
pub async fn remove(
    hosts: &[EtcdHost],
    prefix: &str,
    name: &str,
) -> Result<Vec<(String, String)>, SnapshotError> {
    check_name(name)?;
    let file = snapshot_file(prefix, name);
    let mut failed = Vec::new();
    for h in hosts {
        let cmd = format!("rm -f -- {} {}", sh_quote(&file), sh_quote(&format!("{file}.sha256")));
        if let Err(e) = h.session.run(&cmd).await {
            failed.push((h.name.clone(), e.to_string()));
        }
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_ranchers_and_only_safe_ones_pass() {
        let at: jiff::Timestamp = "2026-12-03T15:04:05Z".parse().unwrap();
        let name = snapshot_name("c-abc12", SnapshotKind::Recurring, at);
        assert_eq!(name, "c-abc12-recurring-20261203150405");
        check_name(&name).unwrap();
        for bad in ["", "../x", ".hidden", "a/b", "a b", "x;rm"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(snapshot_file("/srv/node/", "s1"), "/srv/node/opt/rke/etcd-snapshots/s1.db");
        assert_eq!(snapshot_file("/", "s1"), "/opt/rke/etcd-snapshots/s1.db");
    }

    #[test]
    fn a_record_round_trips_through_json() {
        let r = SnapshotRecord {
            name: "c-manual-20261203150405".into(),
            kind: SnapshotKind::Manual,
            size: 20512,
            sha256: "a".repeat(64),
            created: "2026-12-03T15:04:05Z".parse().unwrap(),
            source: "node1".into(),
            hosts: vec!["node1".into(), "node2".into()],
            s3: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["kind"], "manual");
        assert!(v.get("s3").is_none(), "{v}");
        assert_eq!(serde_json::from_value::<SnapshotRecord>(v).unwrap(), r);
        let failed = S3Copy { bucket: "b".into(), key: String::new(), error: "connection refused".into() };
        let r = SnapshotRecord { s3: Some(failed), ..r };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["s3"], serde_json::json!({"bucket": "b", "error": "connection refused"}));
        assert!(!r.s3.as_ref().unwrap().is_uploaded());
        assert_eq!(serde_json::from_value::<SnapshotRecord>(v).unwrap(), r);
    }
}
