//! One worker per connected cluster that makes the cluster match the management store: it syncs
//! when poked (a management object or a downstream object it depends on changed), after a failure
//! (with backoff), and every resync period to repair drift. Shared by the RBAC and the authorized
//! cluster endpoint syncs. A worker serves one cluster *incarnation* (name and uid) through the
//! access its agent handed over for that uid: a cluster deleted and created again under the same
//! name gets a new worker, and no worker ever writes into a cluster through another's access.

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
use crate::server::registration::{ClusterAccess, Registration};

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

    /// One sync of `cluster` (as stored now) through `client`.
    fn sync<'a>(&'a self, cluster: &'a Cluster, client: kube::Client) -> BoxFut<'a, Result<(), SyncError>>;

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

/// A running worker: how to poke and stop it, and the uid of the cluster it serves.
struct Running {
    notify: Arc<Notify>,
    cancel: CancellationToken,
    uid: String,
}

/// The per-cluster workers of one [`ClusterSync`].
pub(crate) struct ClusterWorkers {
    store: Arc<dyn Store>,
    registration: Arc<Registration>,
    resync: Duration,
    pokes: Mutex<HashMap<String, Running>>,
}

impl ClusterWorkers {
    pub(crate) fn new(store: Arc<dyn Store>, registration: Arc<Registration>, resync: Duration) -> Arc<Self> {
        Arc::new(ClusterWorkers { store, registration, resync, pokes: Mutex::new(HashMap::new()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.pokes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks `cluster`'s worker (if it runs) to sync soon.
    pub(crate) fn poke(&self, cluster: &str) {
        if let Some(r) = self.lock().get(cluster) {
            r.notify.notify_one();
        }
    }

    /// Asks every worker to sync soon.
    pub(crate) fn poke_all(&self) {
        for r in self.lock().values() {
            r.notify.notify_one();
        }
    }

    /// Runs until `stop`: keeps one worker per connected cluster.
    pub(crate) async fn run<S: ClusterSync>(self: Arc<Self>, sync: Arc<S>, stop: CancellationToken) {
        let tasks = TaskTracker::new();
        let clusters: Api<Cluster> = Api::all(self.store.clone());
        loop {
            match clusters.list().await {
                Ok(list) => {
                    // Live clusters with access and a session authorized for their own uid.
                    let connected: HashMap<String, String> = list
                        .into_iter()
                        .filter(|c| c.metadata.deletion_timestamp.is_none())
                        .filter(|c| {
                            let (name, uid) = (&c.metadata.name, &c.metadata.uid);
                            self.registration.access(name).is_some_and(|a| a.cluster_uid == *uid)
                                && !self.registration.session_keys_for(name, uid).is_empty()
                        })
                        .map(|c| (c.metadata.name, c.metadata.uid))
                        .collect();
                    let mut pokes = self.lock();
                    pokes.retain(|name, r| {
                        let keep = connected.get(name) == Some(&r.uid) && !r.cancel.is_cancelled();
                        if !keep {
                            r.cancel.cancel();
                        }
                        keep
                    });
                    for (name, uid) in connected {
                        if pokes.contains_key(&name) {
                            continue;
                        }
                        let notify = Arc::new(Notify::new());
                        let cancel = stop.child_token();
                        let running =
                            Running { notify: notify.clone(), cancel: cancel.clone(), uid: uid.clone() };
                        pokes.insert(name.clone(), running);
                        tracing::debug!(sync = sync.name(), cluster = %name, "starting the cluster's sync worker");
                        tasks.spawn(self.clone().worker(sync.clone(), (name, uid), notify, cancel));
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

    /// The cluster `name` as stored now, with its access, when it is still the incarnation `uid`.
    async fn current(
        &self,
        name: &str,
        uid: &str,
    ) -> Result<Option<(Cluster, Arc<ClusterAccess>)>, SyncError> {
        let Some(cluster) = Api::<Cluster>::all(self.store.clone()).get_opt(name).await? else {
            return Ok(None);
        };
        if cluster.metadata.uid != uid || cluster.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        Ok(self.registration.access(name).filter(|a| a.cluster_uid == uid).map(|a| (cluster, a)))
    }

    async fn worker<S: ClusterSync>(
        self: Arc<Self>,
        sync: Arc<S>,
        (cluster, uid): (String, String),
        notify: Arc<Notify>,
        stop: CancellationToken,
    ) {
        let mut watch: Option<(tokio::task::JoinHandle<()>, CancellationToken)> = None;
        let mut retry = RETRY_FIRST;
        loop {
            let current = match self.current(&cluster, &uid).await {
                Ok(Some(c)) => Some(c),
                // Deleted, made again, or its access is gone: this worker is done.
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(sync = sync.name(), %cluster, error = %e, "reading the cluster");
                    None
                }
            };
            let client = current.as_ref().and_then(|(_, access)| {
                match self.registration.client_with(&cluster, access) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::debug!(sync = sync.name(), %cluster, error = %e, "no client");
                        None
                    }
                }
            });
            // (Re)start the downstream watch with a fresh client when it has ended.
            if let Some(client) = &client
                && watch.as_ref().is_none_or(|(h, _)| h.is_finished())
            {
                let cancel = stop.child_token();
                let h = tokio::spawn(sync.watch_downstream(client.clone(), notify.clone(), cancel.clone()));
                watch = Some((h, cancel));
            }
            let wait = match (client, &current) {
                (Some(client), Some((stored, access))) => match sync.sync(stored, client).await {
                    Ok(()) => {
                        self.registration.mark_synced(sync.name(), &cluster, access);
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
                _ => retry,
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
        // Marks this worker finished, so discovery starts a new one if the cluster is still there.
        stop.cancel();
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

/// The last-seen fingerprint of each object, to tell changes that matter from churn.
pub(crate) struct Fingerprints<F>(std::sync::Mutex<HashMap<String, F>>);

impl<F> Default for Fingerprints<F> {
    fn default() -> Self {
        Fingerprints(std::sync::Mutex::new(HashMap::new()))
    }
}

impl<F: PartialEq> Fingerprints<F> {
    /// Records `print` for `name` (`None`: deleted); true when it differs from the last one, and
    /// always for a deletion (one missed while re-watching must still count).
    pub(crate) fn changed(&self, name: &str, print: Option<F>) -> bool {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match print {
            None => {
                map.remove(name);
                true
            }
            Some(p) => map.insert(name.to_owned(), p).as_ref() != map.get(name),
        }
    }
}

/// Follows what decides who may reach a cluster and pokes the workers it concerns: a cluster's CRTBs,
/// the PRTBs and projects in it, and (for every cluster) global role bindings and roles, which decide who
/// is an admin. Shared by the syncs whose result depends on membership (RBAC, token records).
pub(crate) fn follow_membership(
    tasks: &TaskTracker,
    store: &Arc<dyn Store>,
    stop: &CancellationToken,
    workers: &Arc<ClusterWorkers>,
) {
    use rancher_core::model::{
        ClusterRoleTemplateBinding, GlobalRole, GlobalRoleBinding, Project, ProjectRoleTemplateBinding,
    };
    let w = workers.clone();
    tasks.spawn(follow::<ClusterRoleTemplateBinding>(store.clone(), stop.clone(), move |b, _| {
        w.poke(b.metadata.namespace.as_deref().unwrap_or(&b.spec.cluster_name))
    }));
    let w = workers.clone();
    tasks.spawn(follow::<ProjectRoleTemplateBinding>(store.clone(), stop.clone(), move |b, _| {
        match rancher_auth::rbac_render::project_cluster(&b.spec.project_name) {
            Ok(cluster) => w.poke(cluster),
            Err(_) => w.poke_all(),
        }
    }));
    let w = workers.clone();
    tasks.spawn(follow::<Project>(store.clone(), stop.clone(), move |p, _| {
        w.poke(p.metadata.namespace.as_deref().unwrap_or(&p.spec.cluster_name))
    }));
    let w = workers.clone();
    tasks.spawn(follow::<GlobalRoleBinding>(store.clone(), stop.clone(), move |_, _| w.poke_all()));
    let w = workers.clone();
    tasks.spawn(follow::<GlobalRole>(store.clone(), stop.clone(), move |_, _| w.poke_all()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_is_not_a_change() {
        let f = Fingerprints::default();
        assert!(f.changed("t", Some((true, 1))));
        assert!(!f.changed("t", Some((true, 1))));
        assert!(f.changed("t", Some((false, 1))));
        assert!(f.changed("t", None));
        assert!(f.changed("gone", None));
    }
}
