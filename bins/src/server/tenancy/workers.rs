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

/// Follows one management kind from the store's [`watcher`]: `on_apply` with every object added or
/// changed (and what `keep` makes of it), `on_gone` with what `keep` made of every object deleted. A
/// broken watch resumes from the last version seen without replaying anything; when the store no
/// longer has that version the kind is listed again, and what the list no longer holds is reported
/// gone. Only `keep`'s part of each object is held for that, not the object: a follower of every
/// cluster, project or binding of a large fleet would otherwise hold a copy of each. Runs until `stop`.
pub(crate) async fn follow_with<K: Resource, P: Send>(
    store: Arc<dyn Store>,
    stop: CancellationToken,
    keep: impl Fn(&K) -> P + Send + Sync + 'static,
    on_apply: impl Fn(&K, &P) + Send + Sync + 'static,
    on_gone: impl Fn(&P) + Send + Sync + 'static,
) {
    let mut events = std::pin::pin!(watcher(Api::<K>::all(store), Config::default()));
    // What was kept of the objects seen so far, to report those a re-list no longer holds.
    let mut known: HashMap<ObjectRef, P> = HashMap::new();
    let mut listed: HashMap<ObjectRef, P> = HashMap::new();
    while let Some(Some(event)) = stop.run_until_cancelled(events.next()).await {
        match event {
            Ok(Event::Apply(o)) => {
                let kept = keep(&o);
                on_apply(&o, &kept);
                known.insert(ObjectRef::from_obj(&o), kept);
            }
            Ok(Event::Delete(o)) => {
                known.remove(&ObjectRef::from_obj(&o));
                on_gone(&keep(&o));
            }
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(o)) => {
                let kept = keep(&o);
                on_apply(&o, &kept);
                listed.insert(ObjectRef::from_obj(&o), kept);
            }
            Ok(Event::InitDone) => {
                for (key, gone) in &known {
                    if !listed.contains_key(key) {
                        on_gone(gone);
                    }
                }
                known = std::mem::take(&mut listed);
            }
            Err(e) => tracing::debug!(kind = K::KIND, error = %e, "following (retrying)"),
        }
    }
}

/// [`follow_with`] for a follower that does the same with an object either way: `on_change` gets
/// what `keep` makes of it, and whether it was deleted.
pub(crate) async fn follow<K: Resource, P: Send + 'static>(
    store: Arc<dyn Store>,
    stop: CancellationToken,
    keep: impl Fn(&K) -> P + Send + Sync + 'static,
    on_change: impl Fn(&P, bool) + Send + Sync + 'static,
) {
    let on_change = Arc::new(on_change);
    let gone = on_change.clone();
    follow_with(store, stop, keep, move |_, kept| on_change(kept, false), move |kept| gone(kept, true)).await;
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
    // The cluster each concerns (`None`: every cluster).
    let poke = |w: Arc<ClusterWorkers>| {
        move |cluster: &Option<String>, _deleted: bool| match cluster {
            Some(c) => w.poke(c),
            None => w.poke_all(),
        }
    };
    let crtb_cluster = |b: &ClusterRoleTemplateBinding| {
        Some(b.metadata.namespace.clone().unwrap_or_else(|| b.spec.cluster_name.clone()))
    };
    tasks.spawn(follow(store.clone(), stop.clone(), crtb_cluster, poke(workers.clone())));
    let prtb_cluster = |b: &ProjectRoleTemplateBinding| {
        rancher_auth::rbac_render::project_cluster(&b.spec.project_name).ok().map(str::to_owned)
    };
    tasks.spawn(follow(store.clone(), stop.clone(), prtb_cluster, poke(workers.clone())));
    let project_cluster =
        |p: &Project| Some(p.metadata.namespace.clone().unwrap_or_else(|| p.spec.cluster_name.clone()));
    tasks.spawn(follow(store.clone(), stop.clone(), project_cluster, poke(workers.clone())));
    let every = |_: &GlobalRoleBinding| None;
    tasks.spawn(follow(store.clone(), stop.clone(), every, poke(workers.clone())));
    let every = |_: &GlobalRole| None;
    tasks.spawn(follow(store.clone(), stop.clone(), every, poke(workers.clone())));
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
    use rancher_core::model::{Cluster, ClusterSpec};
    use rancher_core::store::MemoryStore;
    use rancher_core::store::testing::CutWatches;
    use tokio::sync::mpsc;

    use super::*;

    async fn next(rx: &mut mpsc::UnboundedReceiver<(String, bool)>) -> (String, bool) {
        tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.expect("no change reported").unwrap()
    }

    /// A deletion that happens while the watch is down and whose version the store has forgotten
    /// (history overrun) is still reported, from the re-list; what did not change is not reported
    /// as deleted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deletion_missed_while_the_store_was_unreachable_is_reported() {
        let store = CutWatches::new(Arc::new(MemoryStore::with_history(8)));
        let api: Api<Cluster> = Api::all(store.clone());
        for name in ["a", "b"] {
            api.create(&Cluster::new(name, ClusterSpec::default())).await.unwrap();
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let name = |c: &Cluster| c.metadata.name.clone();
        let follower = tokio::spawn(follow(store.clone(), stop.clone(), name, move |c: &String, deleted| {
            let _ = tx.send((c.clone(), deleted));
        }));
        let mut first = vec![next(&mut rx).await, next(&mut rx).await];
        first.sort();
        assert_eq!(first, [("a".to_owned(), false), ("b".to_owned(), false)]);
        while store.watches() == 0 {
            tokio::task::yield_now().await;
        }

        // Down, and noticed: the follower's next watch attempt fails before anything changes (else a
        // follower slow to wake could still read the changes from its old watch).
        store.cut(true);
        while store.watches() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        api.delete("a").await.unwrap();
        let mut b = api.get("b").await.unwrap();
        for i in 0..20 {
            b.spec.description = format!("v{i}");
            b = api.update(&b).await.unwrap();
        }
        store.cut(false);

        assert_eq!(next(&mut rx).await, ("b".to_owned(), false), "the re-list reports what it holds");
        assert_eq!(next(&mut rx).await, ("a".to_owned(), true), "and what it no longer holds");
        api.create(&Cluster::new("c", ClusterSpec::default())).await.unwrap();
        assert_eq!(next(&mut rx).await, ("c".to_owned(), false), "then follows on");
        stop.cancel();
        follower.await.unwrap();
    }
}
