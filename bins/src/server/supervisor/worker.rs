//! Inside one cluster's supervisor: a worker per registered sync, all sharing the supervisor's
//! client. A worker syncs when poked (a management object it depends on changed, or a digest the
//! cluster's agent reports), after a failure (with backoff), and every resync period to repair
//! drift. When the cluster or the access the supervisor serves is no
//! longer current, the whole supervisor stops and [`run`](super::run) decides what comes next.

use std::sync::Arc;
use std::time::Duration;

use rancher_core::model::Cluster;
use rancher_core::store::Api;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Pokes, Registered, Target};
use crate::server::registration::Registration;
use crate::server::tenancy::SyncError;

/// Changes that arrive together are synced together.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// First and longest waits after a failed sync.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Drift repairs a server starts per second at most, over all its clusters: at ten thousand
/// clusters a ten-minute resync of three syncs would be 50 syncs a second, each a few requests through a tunnel.
const RESYNCS_PER_SECOND: f64 = 10.0;

/// The wait before the next drift repair of one cluster, when `clusters` are supervised here: the
/// sync's `resync`, longer when the fleet would otherwise exceed [`RESYNCS_PER_SECOND`], spread over
/// ±25 % (`jitter` in 0..1) so that clusters connected together do not repair together.
fn resync_wait(resync: Duration, clusters: usize, jitter: f64) -> Duration {
    let floor = Duration::from_secs_f64(clusters as f64 / RESYNCS_PER_SECOND);
    resync.max(floor).mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// Runs every registered sync (and those registered later) against `target` until `cancel`.
pub(super) async fn supervise(
    reg: Arc<Registration>,
    target: Arc<Target>,
    mut syncs: watch::Receiver<Vec<Registered>>,
    cancel: CancellationToken,
) {
    let cluster = target.cluster.as_str();
    tracing::info!(cluster, uid = %target.uid, "cluster supervisor started");
    let tasks = TaskTracker::new();
    let mut started: Vec<(Arc<Pokes>, Arc<Notify>)> = Vec::new();
    loop {
        let new: Vec<Registered> = syncs.borrow_and_update().iter().skip(started.len()).cloned().collect();
        for sync in new {
            let notify = Arc::new(Notify::new());
            sync.pokes.insert(cluster, notify.clone());
            started.push((sync.pokes.clone(), notify.clone()));
            let work = worker(reg.clone(), sync, target.clone(), notify, cancel.clone());
            tasks.spawn(work);
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            changed = syncs.changed() => if changed.is_err() {
                cancel.cancelled().await;
                break;
            },
        }
    }
    tasks.close();
    tasks.wait().await;
    for (pokes, notify) in started {
        pokes.remove(cluster, &notify);
    }
    tracing::info!(cluster, uid = %target.uid, "cluster supervisor stopped");
}

/// The cluster as stored now, when it is still the incarnation and access `target` serves (boxed:
/// the worker holds it while its sync runs).
async fn current(
    reg: &Registration,
    sync: &Registered,
    target: &Target,
) -> Result<Option<Box<Cluster>>, SyncError> {
    let Some(cluster) = Api::<Cluster>::all(sync.store.clone()).get_opt(&target.cluster).await? else {
        return Ok(None);
    };
    let access_current = reg.access(&target.cluster).is_some_and(|a| Arc::ptr_eq(&a, &target.access));
    let same = cluster.metadata.uid == target.uid && cluster.metadata.deletion_timestamp.is_none();
    Ok((same && access_current).then(|| Box::new(cluster)))
}

async fn worker(
    reg: Arc<Registration>,
    sync: Registered,
    target: Arc<Target>,
    notify: Arc<Notify>,
    stop: CancellationToken,
) {
    let (name, cluster) = (sync.sync.name(), target.cluster.as_str());
    let mut retry = RETRY_FIRST;
    loop {
        // Boxed: the store's read is the deepest future here, and an unboxed one would be part of
        // the worker's size while it waits, which is nearly always.
        let wait = match Box::pin(current(&reg, &sync, &target)).await {
            Ok(Some(stored)) => {
                tracing::debug!(sync = name, cluster, "downstream sync attempt");
                let result = match target.lease(&reg) {
                    Ok(lease) => tokio::select! {
                        () = stop.cancelled() => break,
                        r = sync.sync.sync(&stored, lease.client.clone()) => r,
                    },
                    Err(e) => Err(SyncError::Client(e.to_string())),
                };
                match result {
                    Ok(()) => {
                        reg.mark_synced(name, cluster, &target.access);
                        retry = RETRY_FIRST;
                        resync_wait(sync.resync, reg.supervisors().running(), rand::random())
                    }
                    Err(e) => {
                        tracing::warn!(sync = name, cluster, error = %e, retry_in = ?retry, "sync failed");
                        let w = retry;
                        retry = (retry * 2).min(RETRY_MAX);
                        w
                    }
                }
            }
            Ok(None) => {
                // Deleted, made again, or another hand-over: this supervisor is done.
                tracing::debug!(sync = name, cluster, "the cluster or its access changed; stopping");
                stop.cancel();
                reg.supervisors().mark_dirty(cluster);
                break;
            }
            Err(e) => {
                tracing::debug!(sync = name, cluster, error = %e, "reading the cluster");
                let w = retry;
                retry = (retry * 2).min(RETRY_MAX);
                w
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            () = notify.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(DEBOUNCE) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resyncs_slow_down_with_the_fleet_and_spread_out() {
        let minute = Duration::from_secs(60);
        assert_eq!(resync_wait(minute, 10, 0.5), minute, "a small fleet keeps the sync's period");
        // 10,000 clusters at 10 a second: each every 1,000 s.
        assert_eq!(resync_wait(minute, 10_000, 0.5), Duration::from_secs(1000));
        assert_eq!(resync_wait(minute, 10, 0.0), Duration::from_secs(45));
        assert_eq!(resync_wait(minute, 10, 1.0), Duration::from_secs(75));
    }

    fn future_size<A, B, C, D, E, F: Future>(_: fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every connected cluster holds one worker per sync for as long as it is connected: the
    /// futures of the work they only sometimes do (a store read, a sync) are boxed while they run,
    /// so that an idle worker is a few hundred bytes, not the tens of kilobytes of the deepest
    /// call it might make.
    #[test]
    fn an_idle_worker_is_small() {
        let size = future_size(worker);
        assert!(size <= 1024, "a worker's future is {size} bytes");
    }
}
