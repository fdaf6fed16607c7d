//! One worker per connected cluster that makes the cluster match the management store: it syncs
//! when poked (a management object or a downstream object it depends on changed), after a failure
//! (with backoff), and every resync period to repair drift. Shared by the RBAC and the authorized
//! cluster endpoint syncs.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use rancher_core::Resource;
use rancher_core::model::Cluster;
use rancher_core::store::{Api, Store, TypedEvent, WatchOptions};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::SyncError;
use crate::server::registration::Registration;

/// How often the set of connected clusters is checked.
const DISCOVER_EVERY: Duration = Duration::from_secs(1);
/// Changes that arrive together are synced together.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// First and longest waits after a failed sync.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A future that is `Send`, boxed.
pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Makes one downstream cluster match the store.
pub(crate) trait ClusterSync: Send + Sync + 'static {
    /// For logs: `rbac`, `ace`.
    fn name(&self) -> &'static str;

    /// One sync of `cluster` through `client`.
    fn sync<'a>(&'a self, cluster: &'a str, client: kube::Client) -> BoxFut<'a, Result<(), SyncError>>;

    /// Watches the downstream objects a sync reads, calling `poke` when they change; runs until
    /// `stop`. The default watches nothing.
    fn watch_downstream(
        &self,
        _client: kube::Client,
        _poke: Arc<Notify>,
        stop: CancellationToken,
    ) -> BoxFut<'static, ()> {
        Box::pin(async move { stop.cancelled().await })
    }
}

/// The per-cluster workers of one [`ClusterSync`].
pub(crate) struct ClusterWorkers {
    store: Arc<dyn Store>,
    registration: Arc<Registration>,
    resync: Duration,
    pokes: Mutex<HashMap<String, (Arc<Notify>, CancellationToken)>>,
}

impl ClusterWorkers {
    pub(crate) fn new(store: Arc<dyn Store>, registration: Arc<Registration>, resync: Duration) -> Arc<Self> {
        Arc::new(ClusterWorkers { store, registration, resync, pokes: Mutex::new(HashMap::new()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<Notify>, CancellationToken)>> {
        self.pokes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks `cluster`'s worker (if it runs) to sync soon.
    pub(crate) fn poke(&self, cluster: &str) {
        if let Some((n, _)) = self.lock().get(cluster) {
            n.notify_one();
        }
    }

    /// Asks every worker to sync soon.
    pub(crate) fn poke_all(&self) {
        for (n, _) in self.lock().values() {
            n.notify_one();
        }
    }

    /// Runs until `stop`: keeps one worker per connected cluster.
    pub(crate) async fn run<S: ClusterSync>(self: Arc<Self>, sync: Arc<S>, stop: CancellationToken) {
        let tasks = TaskTracker::new();
        let clusters: Api<Cluster> = Api::all(self.store.clone());
        loop {
            match clusters.list().await {
                Ok(list) => {
                    let connected: Vec<String> = list
                        .into_iter()
                        .map(|c| c.metadata.name)
                        .filter(|c| {
                            self.registration.is_connected(c) && self.registration.access(c).is_some()
                        })
                        .collect();
                    let mut pokes = self.lock();
                    pokes.retain(|name, (_, cancel)| {
                        let keep = connected.contains(name) && !cancel.is_cancelled();
                        if !keep {
                            cancel.cancel();
                        }
                        keep
                    });
                    for name in connected {
                        if pokes.contains_key(&name) {
                            continue;
                        }
                        let notify = Arc::new(Notify::new());
                        let cancel = stop.child_token();
                        pokes.insert(name.clone(), (notify.clone(), cancel.clone()));
                        tracing::debug!(sync = sync.name(), cluster = %name, "starting the cluster's sync worker");
                        tasks.spawn(self.clone().worker(sync.clone(), name, notify, cancel));
                    }
                }
                Err(e) => tracing::warn!(sync = sync.name(), error = %e, "listing clusters"),
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(DISCOVER_EVERY) => {}
            }
        }
        tasks.close();
        tasks.wait().await;
    }

    async fn worker<S: ClusterSync>(
        self: Arc<Self>,
        sync: Arc<S>,
        cluster: String,
        notify: Arc<Notify>,
        stop: CancellationToken,
    ) {
        let mut watch: Option<(tokio::task::JoinHandle<()>, CancellationToken)> = None;
        let mut retry = RETRY_FIRST;
        loop {
            let client = match self.registration.cluster_client(&cluster) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::debug!(sync = sync.name(), %cluster, error = %e, "no client");
                    None
                }
            };
            // (Re)start the downstream watch with a fresh client when it has ended.
            if let Some(client) = &client
                && watch.as_ref().is_none_or(|(h, _)| h.is_finished())
            {
                let cancel = stop.child_token();
                let h = tokio::spawn(sync.watch_downstream(client.clone(), notify.clone(), cancel.clone()));
                watch = Some((h, cancel));
            }
            let wait = match client {
                None => retry,
                Some(client) => match sync.sync(&cluster, client).await {
                    Ok(()) => {
                        retry = RETRY_FIRST;
                        self.resync
                    }
                    Err(e) => {
                        tracing::warn!(sync = sync.name(), %cluster, error = %e, retry_in = ?retry, "sync failed");
                        let w = retry;
                        retry = (retry * 2).min(RETRY_MAX);
                        w
                    }
                },
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
        if let Some((h, cancel)) = watch {
            cancel.cancel();
            let _ = h.await;
        }
    }
}

/// Follows one management kind and calls `on_change` with every object added, changed or deleted
/// (the flag is true for a deletion);
/// re-watches (replaying everything) after an error. Runs until `stop`.
pub(crate) async fn follow<K: Resource>(
    store: Arc<dyn Store>,
    stop: CancellationToken,
    on_change: impl Fn(&K, bool) + Send + Sync + 'static,
) {
    let api: Api<K> = Api::all(store);
    loop {
        match api.watch(WatchOptions::default()).await {
            Ok(mut events) => loop {
                let ev = tokio::select! {
                    () = stop.cancelled() => return,
                    ev = events.next() => ev,
                };
                match ev {
                    Some(Ok(TypedEvent::Added(o) | TypedEvent::Modified(o))) => on_change(&o, false),
                    Some(Ok(TypedEvent::Deleted(o))) => on_change(&o, true),
                    Some(Ok(TypedEvent::Bookmark(_))) => {}
                    Some(Err(e)) => {
                        tracing::debug!(kind = K::KIND, error = %e, "watch ended; watching again");
                        break;
                    }
                    None => break,
                }
            },
            Err(e) => tracing::warn!(kind = K::KIND, error = %e, "watching"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
