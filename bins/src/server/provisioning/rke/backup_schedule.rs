//! Recurring etcd snapshots: every minute, each cluster built on hosts whose
//! `services.etcd.backup_config` is enabled and whose newest recurring snapshot is
//! `interval_hours` old (or that has none) gets one ([`backups::take`]), then the recurring ones
//! beyond `retention` are removed ([`backups::prune`]). The same sweep keeps each cluster's
//! `status.etcdSnapshots` in line with its state.

use std::sync::Arc;
use std::time::Duration;

use rancher_core::model::{Cluster, RkeBackupConfig};
use rancher_core::store::{Api, Store, StoreError};
use tokio_util::sync::CancellationToken;

use super::backups;
use super::snapshots::{SnapshotKind, SnapshotRecord};
use super::state;
use crate::server::secrets::Sealer;

/// How often the schedule is looked at.
const TICK: Duration = Duration::from_secs(60);

/// The cluster's schedule, when it has one that is on.
pub(crate) fn schedule_of(cluster: &Cluster) -> Option<&RkeBackupConfig> {
    cluster.spec.rke_config.as_ref()?.services.etcd.backup_config.as_ref().filter(|b| b.enabled)
}

/// Whether a recurring snapshot is due at `now`: none was taken yet, or the newest is at least
/// `interval_hours` old. Manual snapshots do not move the schedule (as in Rancher).
pub(crate) fn due(records: &[SnapshotRecord], interval_hours: u32, now: jiff::Timestamp) -> bool {
    let newest = records.iter().filter(|r| r.kind == SnapshotKind::Recurring).map(|r| r.created).max();
    match newest {
        None => true,
        Some(at) => now >= at + jiff::SignedDuration::from_hours(i64::from(interval_hours.max(1))),
    }
}

/// Once now and then every [`TICK`] until `stop`: [`sweep`].
pub(crate) async fn run(store: Arc<dyn Store>, sealer: Arc<Sealer>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while stop.run_until_cancelled(tick.tick()).await.is_some() {
        if let Some(Err(e)) = stop.run_until_cancelled(sweep(&store, &sealer, jiff::Timestamp::now())).await {
            tracing::warn!("etcd snapshot schedule: {e}");
        }
    }
}

/// Takes the recurring snapshots due at `now` and applies retention, cluster by cluster; a cluster
/// that fails is logged and the others go on.
///
/// # Errors
/// The store's, listing the clusters.
pub(crate) async fn sweep(
    store: &Arc<dyn Store>,
    sealer: &Sealer,
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    for cluster in Api::<Cluster>::all(store.clone()).list().await? {
        if cluster.spec.rke_config.is_none() || cluster.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = cluster.metadata.name.clone();
        let st = match state::load(store.as_ref(), sealer, &cluster).await {
            Ok(Some((st, _))) if st.current_config.is_some() => st,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(cluster = %name, "etcd snapshot schedule: {e}");
                continue;
            }
        };
        if let Err(e) = backups::write_status(store, &cluster, &st.snapshots).await {
            tracing::warn!(cluster = %name, "etcd snapshot schedule: {e}");
        }
        let Some(schedule) = schedule_of(&cluster) else { continue };
        if super::restore::under_way(&st) || !due(&st.snapshots, schedule.interval_hours, now) {
            continue;
        }
        match backups::take(store, sealer, &cluster, SnapshotKind::Recurring).await {
            Ok(r) => tracing::info!(cluster = %name, snapshot = %r.name, "recurring etcd snapshot taken"),
            Err(e) if e.is_not_ready() => continue,
            Err(e) => {
                tracing::warn!(cluster = %name, "recurring etcd snapshot: {e}");
                continue;
            }
        }
        let retention = usize::try_from(schedule.retention.max(1)).unwrap_or(usize::MAX);
        if let Err(e) = backups::prune(store, sealer, &cluster, retention).await {
            tracing::warn!(cluster = %name, "etcd snapshot retention: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::snapshots::beyond_retention;
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

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_snapshot_is_due_interval_hours_after_the_newest_recurring_one() {
        assert!(due(&[], 12, at("2026-12-03T00:00:00Z")), "none yet: due at once");
        let records = vec![
            record("r1", SnapshotKind::Recurring, "2026-12-02T00:00:00Z"),
            record("r2", SnapshotKind::Recurring, "2026-12-03T00:00:00Z"),
            // A manual one does not move the schedule.
            record("m1", SnapshotKind::Manual, "2026-12-03T11:00:00Z"),
        ];
        assert!(!due(&records, 12, at("2026-12-03T11:59:59Z")));
        assert!(due(&records, 12, at("2026-12-03T12:00:00Z")));
        assert!(!due(&records, 24, at("2026-12-03T12:00:00Z")));
        assert!(due(&records, 1, at("2026-12-03T01:00:00Z")));
        // Only manual ones: the first recurring is due.
        assert!(due(&records[2..], 12, at("2026-12-03T11:30:00Z")));
    }

    #[test]
    fn a_day_of_hourly_snapshots_keeps_the_newest_retention_ones() {
        // A fake clock: the sweep every minute for 24 hours, taking when due, pruning after.
        let mut records: Vec<SnapshotRecord> =
            vec![record("m", SnapshotKind::Manual, "2026-12-01T00:00:00Z")];
        let start = at("2026-12-03T00:00:30Z");
        let (interval, retention) = (3, 4);
        let mut taken = 0;
        for minute in 0..24 * 60 {
            let now = start + jiff::SignedDuration::from_mins(minute);
            if due(&records, interval, now) {
                records.push(record(&format!("r{minute}"), SnapshotKind::Recurring, &now.to_string()));
                taken += 1;
                let old: Vec<String> =
                    beyond_retention(&records, retention).into_iter().map(|r| r.name.clone()).collect();
                records.retain(|r| !old.contains(&r.name));
            }
        }
        assert_eq!(taken, 8, "every 3 hours over a day");
        let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["m", "r720", "r900", "r1080", "r1260"], "the manual one and the newest 4");
    }

    #[test]
    fn only_an_enabled_backup_config_schedules() {
        let mut c = Cluster::default();
        assert!(schedule_of(&c).is_none());
        c.spec.rke_config = Some(Box::default());
        assert!(schedule_of(&c).is_none(), "no backup_config");
        let cfg = c.spec.rke_config.as_mut().unwrap();
        cfg.services.etcd.backup_config = Some(RkeBackupConfig::default());
        assert_eq!(schedule_of(&c).map(|b| (b.interval_hours, b.retention)), Some((12, 6)));
        c.spec.rke_config.as_mut().unwrap().services.etcd.backup_config.as_mut().unwrap().enabled = false;
        assert!(schedule_of(&c).is_none());
    }
}
