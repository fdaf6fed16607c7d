//! The handle a sync's controller holds on the cluster supervisors ([`ClusterWorkers`]): it
//! registers the sync, which every connected cluster's supervisor then runs
//! ([`supervisor`](crate::server::supervisor)), and pokes the sync's worker in one cluster or in all
//! of them. Also the store followers that decide when to poke: [`follow`], [`follow_membership`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rancher_core::Resource;
use rancher_core::controller::watcher::{Config, Event};
use rancher_core::controller::{ObjectRef, watcher};
use rancher_core::store::{Api, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::server::registration::Registration;
pub(crate) use crate::server::supervisor::{BoxFut, ClusterSync};
use crate::server::supervisor::{Pokes, Registered};

/// One [`ClusterSync`] as run by every cluster supervisor: how to poke its workers.
pub(crate) struct ClusterWorkers {
    store: Arc<dyn Store>,
    registration: Arc<Registration>,
    resync: Duration,
    pokes: Arc<Pokes>,
}

impl ClusterWorkers {
    /// A handle for a sync that repairs drift every `resync`; [`run`](Self::run) registers it.
    pub(crate) fn new(store: Arc<dyn Store>, registration: Arc<Registration>, resync: Duration) -> Arc<Self> {
        Arc::new(ClusterWorkers { store, registration, resync, pokes: Arc::new(Pokes::default()) })
    }

    /// Asks `cluster`'s worker (if its supervisor runs) to sync soon.
    pub(crate) fn poke(&self, cluster: &str) {
        self.pokes.poke(cluster);
    }

    /// Asks every running worker to sync soon.
    pub(crate) fn poke_all(&self) {
        self.pokes.poke_all();
    }

    /// Registers `sync` with the cluster supervisors, which run it from now on in every connected
    /// cluster; returns at `stop` (the supervisors stop their work then too).
    pub(crate) async fn run<S: ClusterSync>(self: Arc<Self>, sync: Arc<S>, stop: CancellationToken) {
        self.registration.supervisors().register(Registered {
            sync,
            store: self.store.clone(),
            resync: self.resync,
            pokes: self.pokes.clone(),
        });
        stop.cancelled().await;
    }
}

/// Follows one management kind and calls `on_change` with every object added, changed or deleted
/// (the flag is true for a deletion), from the store's [`watcher`]: a broken watch resumes from the
/// last version seen without replaying anything; when the store no longer has that version the kind
/// is listed again, and what the list no longer holds is reported deleted (with its last state).
/// Runs until `stop`.
pub(crate) async fn follow<K: Resource>(
    store: Arc<dyn Store>,
    stop: CancellationToken,
    on_change: impl Fn(&K, bool) + Send + Sync + 'static,
) {
    let mut events = std::pin::pin!(watcher(Api::<K>::all(store), Config::default()));
    // The objects seen so far, to report those a re-list no longer holds.
    let mut known: HashMap<ObjectRef, K> = HashMap::new();
    let mut listed: HashMap<ObjectRef, K> = HashMap::new();
    while let Some(Some(event)) = stop.run_until_cancelled(events.next()).await {
        match event {
            Ok(Event::Apply(o)) => {
                on_change(&o, false);
                known.insert(ObjectRef::from_obj(&o), o);
            }
            Ok(Event::Delete(o)) => {
                known.remove(&ObjectRef::from_obj(&o));
                on_change(&o, true);
            }
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(o)) => {
                on_change(&o, false);
                listed.insert(ObjectRef::from_obj(&o), o);
            }
            Ok(Event::InitDone) => {
                for (key, gone) in &known {
                    if !listed.contains_key(key) {
                        on_change(gone, true);
                    }
                }
                known = std::mem::take(&mut listed);
            }
            Err(e) => tracing::debug!(kind = K::KIND, error = %e, "following (retrying)"),
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

#[cfg(test)]
mod follow_tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use futures::StreamExt;
    use rancher_core::model::{Cluster, ClusterSpec};
    use rancher_core::store::{
        Deleted, ListOptions, MemoryStore, ObjectList, Preconditions, StoreError, StoreResult, WatchOptions,
        WatchStream,
    };
    use serde_json::Value;
    use tokio::sync::{mpsc, watch};

    use super::*;

    /// A store whose watches can be cut and refused, as when the store is unreachable for a while.
    struct Cuttable {
        inner: MemoryStore,
        down: watch::Sender<bool>,
        watches: Mutex<usize>,
    }

    #[async_trait]
    impl Store for Cuttable {
        async fn create(&self, r: &str, o: Value) -> StoreResult<Value> {
            self.inner.create(r, o).await
        }
        async fn get(&self, r: &str, ns: Option<&str>, n: &str) -> StoreResult<Value> {
            self.inner.get(r, ns, n).await
        }
        async fn update(&self, r: &str, o: Value) -> StoreResult<Value> {
            self.inner.update(r, o).await
        }
        async fn delete(&self, r: &str, ns: Option<&str>, n: &str, p: Preconditions) -> StoreResult<Deleted> {
            self.inner.delete(r, ns, n, p).await
        }
        async fn list(&self, r: &str, o: &ListOptions) -> StoreResult<ObjectList> {
            self.inner.list(r, o).await
        }
        async fn watch(&self, r: &str, o: &WatchOptions) -> StoreResult<WatchStream> {
            *self.watches.lock().unwrap() += 1;
            if *self.down.borrow() {
                return Err(StoreError::backend(std::io::Error::other("unreachable (test)")));
            }
            let mut down = self.down.subscribe();
            let cut = async move {
                let _ = down.wait_for(|d| *d).await;
            };
            Ok(self.inner.watch(r, o).await?.take_until(cut).boxed())
        }
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<(String, bool)>) -> (String, bool) {
        tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.expect("no change reported").unwrap()
    }

    /// A deletion that happens while the watch is down and whose version the store has forgotten
    /// (history overrun) is still reported, from the re-list; what did not change is not reported
    /// as deleted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deletion_missed_while_the_store_was_unreachable_is_reported() {
        let store = Arc::new(Cuttable {
            inner: MemoryStore::with_history(8),
            down: watch::channel(false).0,
            watches: Mutex::new(0),
        });
        let api: Api<Cluster> = Api::all(store.clone());
        for name in ["a", "b"] {
            api.create(&Cluster::new(name, ClusterSpec::default())).await.unwrap();
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let follower = tokio::spawn(follow::<Cluster>(store.clone(), stop.clone(), move |c, deleted| {
            let _ = tx.send((c.metadata.name.clone(), deleted));
        }));
        let mut first = vec![next(&mut rx).await, next(&mut rx).await];
        first.sort();
        assert_eq!(first, [("a".to_owned(), false), ("b".to_owned(), false)]);
        while *store.watches.lock().unwrap() == 0 {
            tokio::task::yield_now().await;
        }

        // Down, and noticed: the follower's next watch attempt fails before anything changes (else a
        // follower slow to wake could still read the changes from its old watch).
        store.down.send_replace(true);
        while *store.watches.lock().unwrap() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        api.delete("a").await.unwrap();
        let mut b = api.get("b").await.unwrap();
        for i in 0..20 {
            b.spec.description = format!("v{i}");
            b = api.update(&b).await.unwrap();
        }
        store.down.send_replace(false);

        assert_eq!(next(&mut rx).await, ("b".to_owned(), false), "the re-list reports what it holds");
        assert_eq!(next(&mut rx).await, ("a".to_owned(), true), "and what it no longer holds");
        api.create(&Cluster::new("c", ClusterSpec::default())).await.unwrap();
        assert_eq!(next(&mut rx).await, ("c".to_owned(), false), "then follows on");
        stop.cancel();
        follower.await.unwrap();
    }
}
