//! etcd snapshots of a built cluster, from its sealed state: which hosts are its etcd members, how
//! to reach them (pinned host keys) and speak to etcd (the PKI's etcd client certificate). The
//! mechanism is [`rancher_provision::etcd_snapshots`]; this module feeds it the cluster.
//!
//! [`super::backups`] calls [`take_snapshot`] (then keeps the record in [`RkeState::snapshots`]);
//! for a restore, [`super::restore`] stops etcd and the control plane everywhere, calls [`restore`],
//! starts them again and, once every host is healthy, [`cleanup_restore`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rancher_core::model::RkeConfig;
use rancher_provision::bundle::Bundle;
use rancher_provision::etcd_api::{MembersHealth, member_health};
use rancher_provision::etcd_snapshots::{self, EtcdHost, RestoreReport, RestoreSpec, SnapshotError};
pub(crate) use rancher_provision::etcd_snapshots::{SnapshotKind, SnapshotRecord, TakenSnapshot};
use rancher_provision::rke;
use rancher_provision::ssh::SshSession;

use super::hosts::{self, HostError};
use super::layout::HostLayout;
use super::state::RkeState;
use crate::server::secrets::Sealer;

/// How long one SSH connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a snapshot operation on a cluster failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotsError {
    /// The cluster has not been provisioned: no config, no certificates.
    #[error("cluster {0} has not been provisioned yet: there is no etcd to snapshot or restore")]
    NotProvisioned(String),
    /// No snapshot of this name is recorded.
    #[error("cluster {cluster} has no snapshot {name}")]
    UnknownSnapshot {
        /// The cluster.
        cluster: String,
        /// The name asked for.
        name: String,
    },
    /// An etcd host could not be reached.
    #[error("{node}: {source}")]
    Host {
        /// The node.
        node: String,
        /// Why.
        #[source]
        source: Box<HostError>,
    },
    /// The bundle has no `etcdctl`, which a restore runs on every etcd host.
    #[error(
        "the bundle {version} has no etcdctl: restoring a snapshot needs it on every etcd host; add an \
         etcdctl component to the bundle and let the cluster provision"
    )]
    NoEtcdctl {
        /// The bundle.
        version: String,
    },
    /// The snapshot or restore failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

impl SnapshotsError {
    /// Whether retrying may help.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            SnapshotsError::Host { source, .. } => source.is_transient(),
            SnapshotsError::Snapshot(e) => e.is_transient(),
            SnapshotsError::NotProvisioned(_)
            | SnapshotsError::UnknownSnapshot { .. }
            | SnapshotsError::NoEtcdctl { .. } => false,
        }
    }
}

/// The provisioned config (what the hosts run), or why there is none.
fn provisioned<'a>(cluster: &str, state: &'a RkeState) -> Result<&'a RkeConfig, SnapshotsError> {
    state.current_config.as_ref().ok_or_else(|| SnapshotsError::NotProvisioned(cluster.to_owned()))
}

/// SSH sessions to every etcd host of `cfg` (through the bastion, if any), their host keys pinned
/// as `state` has them: for snapshots, and for membership changes
/// ([`rancher_provision::etcd_api::member_health`], `EtcdHost::etcd(..).member_add(..)`).
///
/// # Errors
/// [`SnapshotsError::Host`] naming the host that cannot be reached.
pub(super) async fn connect_etcd_hosts(
    sealer: &Sealer,
    cfg: &RkeConfig,
    state: &RkeState,
) -> Result<Vec<EtcdHost>, SnapshotsError> {
    let bastion = hosts::bastion_of(sealer, cfg)
        .await
        .map_err(|source| SnapshotsError::Host { node: "bastion".into(), source: Box::new(source) })?;
    let mut out = Vec::new();
    for node in cfg.nodes.iter().filter(|n| n.role.iter().any(|r| r == "etcd")) {
        let name = rke::node_name(node);
        let failed =
            |source: HostError| SnapshotsError::Host { node: name.clone(), source: Box::new(source) };
        let target = hosts::target_of(sealer, cfg, node, state.host_keys.get(&name)).await.map_err(failed)?;
        let session = SshSession::connect(&target, bastion.as_ref(), CONNECT_TIMEOUT)
            .await
            .map_err(|e| failed(HostError::Ssh(e)))?;
        out.push(EtcdHost {
            name,
            internal_address: rke::internal_address(node).to_owned(),
            session: Arc::new(session),
        });
    }
    Ok(out)
}

/// The members of `cluster`'s etcd with their health, for the quorum check
/// ([`rancher_provision::etcd_api::may_remove`], [`may_stop`](rancher_provision::etcd_api::may_stop)).
///
/// # Errors
/// [`SnapshotsError::NotProvisioned`], [`SnapshotsError::Host`], and [`SnapshotsError::Snapshot`]
/// wrapping the etcd error when no member answers.
#[allow(dead_code, reason = "for membership changes; the rollout reads the members' health itself")]
pub(super) async fn members_health(
    sealer: &Sealer,
    cluster: &str,
    state: &RkeState,
) -> Result<MembersHealth, SnapshotsError> {
    let cfg = provisioned(cluster, state)?;
    let tls = etcd_snapshots::etcd_tls(&state.pki)?;
    let hosts = connect_etcd_hosts(sealer, cfg, state).await?;
    member_health(&hosts, &tls).await.map_err(|e| SnapshotsError::Snapshot(e.into()))
}

/// Takes a snapshot of `cluster`'s etcd now (named `<cluster>-<kind>-<UTC timestamp>`) and
/// stores it on every etcd host under `<prefix_path>/opt/rke/etcd-snapshots/`. The snapshot file
/// also stays in `scratch_dir` on the server ([`TakenSnapshot::local_file`]): that is where an
/// upload to object storage starts from; remove it afterwards. Keep
/// [`TakenSnapshot::record`] in [`RkeState::snapshots`].
///
/// # Errors
/// [`SnapshotsError::NotProvisioned`]; [`SnapshotsError::Host`] when an etcd host cannot be
/// reached; [`SnapshotsError::Snapshot`] when no member is healthy or no host can store it.
pub(super) async fn take_snapshot(
    sealer: &Sealer,
    cluster: &str,
    state: &RkeState,
    kind: SnapshotKind,
    scratch_dir: &Path,
) -> Result<TakenSnapshot, SnapshotsError> {
    let cfg = provisioned(cluster, state)?;
    let tls = etcd_snapshots::etcd_tls(&state.pki)?;
    let hosts = connect_etcd_hosts(sealer, cfg, state).await?;
    let name = etcd_snapshots::snapshot_name(cluster, kind, jiff::Timestamp::now());
    let taken = etcd_snapshots::take(&hosts, &tls, rke::prefix_path(cfg), &name, kind, scratch_dir).await?;
    for (node, why) in &taken.failed_hosts {
        tracing::warn!(cluster, snapshot = %name, node = %node, why = %why, "etcd snapshot not stored on a host");
    }
    // Where the upload of `taken.local_file` to S3-compatible storage goes (rancher_provision::s3),
    // when the cluster has a backup target: a failed upload keeps the local snapshot and is reported.
    Ok(taken)
}

/// Restores every etcd member of `cluster` from its snapshot `name`, with the `etcdctl` of
/// `bundle` (the bundle the hosts run: its build is on every etcd host). The caller has stopped
/// etcd and the control plane on every host (plans without those processes) and starts them again
/// after; once etcd is healthy, it calls [`cleanup_restore`].
///
/// # Errors
/// [`SnapshotsError::UnknownSnapshot`] for a name not in the state;
/// [`SnapshotsError::NoEtcdctl`] for a bundle without `etcdctl`; [`SnapshotsError::Snapshot`]
/// when etcd still runs somewhere, a host lacks the bundle's `etcdctl`, no host has the file with
/// its checksum, or `etcdctl` fails.
pub(super) async fn restore(
    sealer: &Sealer,
    cluster: &str,
    state: &RkeState,
    bundle: &Bundle,
    name: &str,
    scratch_dir: &Path,
) -> Result<RestoreReport, SnapshotsError> {
    let cfg = provisioned(cluster, state)?;
    let record = find(cluster, state, name)?;
    let etcdctl = bundle
        .components
        .get("etcdctl")
        .ok_or_else(|| SnapshotsError::NoEtcdctl { version: bundle.version.clone() })?;
    let tls = etcd_snapshots::etcd_tls(&state.pki)?;
    let hosts = connect_etcd_hosts(sealer, cfg, state).await?;
    let prefix = rke::prefix_path(cfg);
    let etcdctl = HostLayout::new(prefix).component_binary("etcdctl", &etcdctl.sha256);
    let spec = RestoreSpec {
        name: &record.name,
        sha256: &record.sha256,
        token: state.pki.etcd_cluster_token(),
        prefix,
        etcdctl: &etcdctl,
    };
    Ok(etcd_snapshots::restore(&hosts, &tls, &spec, scratch_dir).await?)
}

/// Removes the data directories a restore kept aside, once the restored etcd is healthy. Returns
/// the hosts that failed, with why (worth a warning, not a failure).
///
/// # Errors
/// [`SnapshotsError::NotProvisioned`], [`SnapshotsError::Host`].
pub(super) async fn cleanup_restore(
    sealer: &Sealer,
    cluster: &str,
    state: &RkeState,
) -> Result<Vec<(String, String)>, SnapshotsError> {
    let cfg = provisioned(cluster, state)?;
    let hosts = connect_etcd_hosts(sealer, cfg, state).await?;
    Ok(etcd_snapshots::cleanup_restore(&hosts, rke::prefix_path(cfg)).await)
}

/// Removes the snapshot `name` from the etcd hosts (for retention, or a user's delete); the caller
/// drops its record. Returns the hosts it could not be removed from, with why.
///
/// # Errors
/// As [`cleanup_restore`], and [`SnapshotsError::UnknownSnapshot`].
pub(super) async fn remove_snapshot(
    sealer: &Sealer,
    cluster: &str,
    state: &RkeState,
    name: &str,
) -> Result<Vec<(String, String)>, SnapshotsError> {
    let cfg = provisioned(cluster, state)?;
    find(cluster, state, name)?;
    let hosts = connect_etcd_hosts(sealer, cfg, state).await?;
    Ok(etcd_snapshots::remove(&hosts, rke::prefix_path(cfg), name).await?)
}

fn find<'a>(cluster: &str, state: &'a RkeState, name: &str) -> Result<&'a SnapshotRecord, SnapshotsError> {
    state
        .snapshots
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| SnapshotsError::UnknownSnapshot { cluster: cluster.to_owned(), name: name.to_owned() })
}

/// The recurring snapshots beyond the newest `retention` ones, oldest first: what retention
/// removes. Manual snapshots are never pruned.
pub(super) fn beyond_retention(records: &[SnapshotRecord], retention: usize) -> Vec<&SnapshotRecord> {
    let mut recurring: Vec<&SnapshotRecord> =
        records.iter().filter(|r| r.kind == SnapshotKind::Recurring).collect();
    recurring.sort_by_key(|r| std::cmp::Reverse(r.created));
    let mut old: Vec<&SnapshotRecord> = recurring.into_iter().skip(retention).collect();
    old.reverse();
    old
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, kind: SnapshotKind, at: &str) -> SnapshotRecord {
        SnapshotRecord {
            name: name.into(),
            kind,
            size: 1,
            sha256: "a".repeat(64),
            created: at.parse().unwrap(),
            source: "node1".into(),
            hosts: vec!["node1".into()],
            s3: None,
        }
    }

    #[test]
    fn retention_keeps_the_newest_recurring_and_every_manual() {
        let records = vec![
            record("r1", SnapshotKind::Recurring, "2026-12-01T00:00:00Z"),
            record("m1", SnapshotKind::Manual, "2026-11-01T00:00:00Z"),
            record("r3", SnapshotKind::Recurring, "2026-12-03T00:00:00Z"),
            record("r2", SnapshotKind::Recurring, "2026-12-02T00:00:00Z"),
        ];
        let names = |v: Vec<&SnapshotRecord>| v.into_iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(beyond_retention(&records, 1)), ["r1", "r2"]);
        assert_eq!(names(beyond_retention(&records, 3)), Vec::<String>::new());
        assert_eq!(names(beyond_retention(&records, 0)), ["r1", "r2", "r3"]);
    }

    #[test]
    fn an_unprovisioned_cluster_and_an_unknown_snapshot_are_named() {
        let state = RkeState::default();
        let err = provisioned("c1", &state).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cluster c1 has not been provisioned yet: there is no etcd to snapshot or restore"
        );
        let err = find("c1", &state, "c1-manual-1").unwrap_err();
        assert_eq!(err.to_string(), "cluster c1 has no snapshot c1-manual-1");
        assert!(!err.is_transient());
    }
}
