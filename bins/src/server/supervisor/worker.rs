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
        // The attempt runs in its turn among every cluster's syncs: the sync's memory (client,
        // buffers, its future) is held by a bounded number at once, even when a fleet connects together.
        let turn = tokio::select! {
            () = stop.cancelled() => break,
            turn = reg.supervisors().sync_turn() => turn,
        };
        // Boxed: the store's read is the deepest future here, and an unboxed one would be part of
        // the worker's size while it waits, which is nearly always.
        let wait = match Box::pin(current(&reg, &sync, &target)).await {
            Ok(Some(stored)) if !sync.sync.applies_to(&stored) => {
                tracing::debug!(sync = name, cluster, "nothing to sync in this cluster");
                sync.pokes.remove(cluster, &notify);
                break;
            }
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
        drop(turn);
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

    /// A sync that counts how many of its runs overlap, and holds every run until `open`.
    #[derive(Default)]
    struct Overlapping {
        now: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        runs: std::sync::atomic::AtomicUsize,
        open: watch::Sender<bool>,
    }

    impl super::super::ClusterSync for Overlapping {
        fn name(&self) -> &'static str {
            "overlapping"
        }

        fn sync<'a>(
            &'a self,
            _: &'a Cluster,
            _: kube::Client,
        ) -> super::super::BoxFut<'a, Result<(), SyncError>> {
            use std::sync::atomic::Ordering::SeqCst;
            Box::pin(async move {
                let now = self.now.fetch_add(1, SeqCst) + 1;
                self.most.fetch_max(now, SeqCst);
                let _ = self.open.subscribe().wait_for(|open| *open).await;
                self.now.fetch_sub(1, SeqCst);
                self.runs.fetch_add(1, SeqCst);
                Ok(())
            })
        }
    }

    fn registration(store: &Arc<dyn rancher_core::store::Store>) -> Arc<Registration> {
        let metrics = rancher_tunnel::Metrics::unregistered();
        Arc::new(
            Registration::new(store.clone(), "https://server".into(), "", "agent".into(), metrics).unwrap(),
        )
    }

    /// A stored imported cluster whose agent handed over access: what a supervisor serves.
    async fn connected(reg: &Registration, name: &str, ca_pem: &str) -> Arc<Target> {
        use rancher_core::model::ClusterSpec;
        let created = Api::<Cluster>::all(reg.store().clone())
            .create(&Cluster::new(name, ClusterSpec::default()))
            .await
            .unwrap();
        let uid = created.metadata.uid;
        let access = crate::server::registration::ClusterAccess {
            address: "10.0.0.1:6443".into(),
            token: "t".into(),
            ca_pem: ca_pem.to_owned(),
            cluster_uid: uid.clone(),
        };
        reg.set_access(name, access);
        Arc::new(Target {
            cluster: name.to_owned(),
            uid,
            access: reg.access(name).unwrap(),
            client: std::sync::Mutex::new((None, 0)),
        })
    }

    /// A sync for clusters built on hosts, which fails the test if it ever runs.
    struct HostsOnly;

    impl super::super::ClusterSync for HostsOnly {
        fn name(&self) -> &'static str {
            "hosts-only"
        }

        fn sync<'a>(
            &'a self,
            _: &'a Cluster,
            _: kube::Client,
        ) -> super::super::BoxFut<'a, Result<(), SyncError>> {
            panic!("a sync that does not apply to the cluster ran")
        }

        fn applies_to(&self, cluster: &Cluster) -> bool {
            cluster.spec.rke_config.is_some()
        }
    }

    /// A connected cluster keeps no worker for a sync with nothing to do in it (the role labels of
    /// hosts in an imported cluster): the worker ends after its first look, and nothing pokes it.
    #[tokio::test]
    async fn a_sync_that_does_not_apply_keeps_no_worker() {
        let store: Arc<dyn rancher_core::store::Store> = Arc::new(rancher_core::store::MemoryStore::new());
        let reg = registration(&store);
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap().cert.pem();
        let target = connected(&reg, "imported", &ca).await;
        let pokes = Arc::new(Pokes::default());
        let registered = Registered {
            sync: Arc::new(HostsOnly),
            store,
            resync: Duration::from_secs(3600),
            pokes: pokes.clone(),
        };
        let notify = Arc::new(Notify::new());
        pokes.insert("imported", notify.clone());
        let stop = CancellationToken::new();
        tokio::time::timeout(Duration::from_secs(10), worker(reg, registered, target, notify, stop.clone()))
            .await
            .expect("the worker ends");
        assert!(!stop.is_cancelled(), "the supervisor's other syncs go on");
        assert!(pokes.lock().is_empty(), "nothing is left to poke");
    }

    /// A fleet that connects at once does not run every cluster's first sync at once: each sync holds
    /// a client and its buffers while it runs, and the server would keep the memory of that peak.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fleet_connecting_at_once_takes_turns_to_sync() {
        use std::sync::atomic::Ordering::SeqCst;

        let store: Arc<dyn rancher_core::store::Store> = Arc::new(rancher_core::store::MemoryStore::new());
        let reg = registration(&store);
        let turns = crate::server::metrics::SyncTurns::default();
        reg.supervisors().count_turns_in(turns.clone());
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap().cert.pem();
        let sync = Arc::new(Overlapping::default());
        let registered = Registered {
            sync: sync.clone(),
            store: store.clone(),
            resync: Duration::from_secs(3600),
            pokes: Arc::new(Pokes::default()),
        };
        let stop = CancellationToken::new();
        let clusters = super::super::SYNCS_AT_ONCE * 2 + 8;
        let tasks = TaskTracker::new();
        for i in 0..clusters {
            let target = connected(&reg, &format!("c-{i}"), &ca).await;
            let notify = Arc::new(Notify::new());
            tasks.spawn(worker(reg.clone(), registered.clone(), target, notify, stop.clone()));
        }
        // Every worker asks for its turn; the syncs that got one are held.
        let turns_at_once = super::super::SYNCS_AT_ONCE;
        let held = (turns_at_once as i64, (clusters - turns_at_once) as i64);
        rancher_test_support::eventually(
            Duration::from_secs(20),
            "every worker holds or waits for a turn",
            || {
                let now = (turns.running.get(), turns.waiting.get());
                let syncing = sync.now.load(SeqCst);
                async move { (now == held && syncing == turns_at_once).then_some(()) }
            },
        )
        .await;
        sync.open.send_replace(true);
        rancher_test_support::eventually(Duration::from_secs(20), "every cluster synced once", || {
            let done = sync.runs.load(SeqCst) >= clusters;
            async move { done.then_some(()) }
        })
        .await;
        stop.cancel();
        tasks.close();
        tasks.wait().await;
        let most = sync.most.load(SeqCst);
        assert_eq!(most, turns_at_once, "no more syncs ran at once than there are turns");
        assert_eq!((turns.running.get(), turns.waiting.get()), (0, 0), "/metrics counts turns given back");
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
