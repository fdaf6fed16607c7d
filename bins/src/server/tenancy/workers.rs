//! The handle a sync's controller holds on the cluster supervisors ([`ClusterWorkers`]): it
//! registers the sync, which every connected cluster's supervisor then runs
//! ([`supervisor`](crate::server::supervisor)), and pokes the sync's worker in one cluster or in all
//! of them. Also the store followers that decide when to poke: [`follow`], [`follow_membership`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rancher_core::Resource;
use rancher_core::store::{Api, Store, TypedEvent, WatchOptions};
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
