//! Inside one cluster's supervisor: a worker per registered sync, all sharing the supervisor's
//! client. A worker syncs when poked (a management object or a downstream object it depends on
//! changed), after a failure (with backoff), and every resync period to repair drift; it keeps the
//! sync's downstream watch running. When the cluster or the access the supervisor serves is no
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
            let work = worker(reg.clone(), sync, target.clone(), notify, tasks.clone(), cancel.clone());
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

/// The cluster as stored now, when it is still the incarnation and access `target` serves.
async fn current(
    reg: &Registration,
    sync: &Registered,
    target: &Target,
) -> Result<Option<Cluster>, SyncError> {
    let Some(cluster) = Api::<Cluster>::all(sync.store.clone()).get_opt(&target.cluster).await? else {
        return Ok(None);
    };
    let access_current = reg.access(&target.cluster).is_some_and(|a| Arc::ptr_eq(&a, &target.access));
    let same = cluster.metadata.uid == target.uid && cluster.metadata.deletion_timestamp.is_none();
    Ok((same && access_current).then_some(cluster))
}

async fn worker(
    reg: Arc<Registration>,
    sync: Registered,
    target: Arc<Target>,
    notify: Arc<Notify>,
    tasks: TaskTracker,
    stop: CancellationToken,
) {
    let (name, cluster) = (sync.sync.name(), target.cluster.as_str());
    let mut watch: Option<tokio::task::JoinHandle<()>> = None;
    let mut retry = RETRY_FIRST;
    loop {
        let wait = match current(&reg, &sync, &target).await {
            Ok(Some(stored)) => {
                // (Re)start the downstream watch when it has ended.
                if watch.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) {
                    let client = target.client.clone();
                    watch =
                        Some(tasks.spawn(sync.sync.watch_downstream(client, notify.clone(), stop.clone())));
                }
                tracing::debug!(sync = name, cluster, "downstream sync attempt");
                let result = tokio::select! {
                    () = stop.cancelled() => break,
                    r = sync.sync.sync(&stored, target.client.clone()) => r,
                };
                match result {
                    Ok(()) => {
                        reg.mark_synced(name, cluster, &target.access);
                        retry = RETRY_FIRST;
                        sync.resync
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
