//! The proxy's in-memory view of what decides access ([`AuthzIndex`]): global role bindings and
//! roles, clusters, projects, and cluster/project role template bindings, each a reflector fed by a
//! store watcher (list, watch, resume, re-list on `Gone`, backoff). The bindings are kept by what a
//! request looks them up by (a user's global role bindings, a cluster's role template bindings), so
//! that a request's cost does not grow with the fleet. Tokens and users are not here: the identity
//! cache (`server::auth::identity_cache`) holds them, and sees a revocation before it returns.
//!
//! Staleness bound: a change to a role, binding or cluster takes effect when its watch event arrives
//! (typically milliseconds after the write). Until a kind has synced, and from a watch failure until
//! the re-list that follows it completes, reads of that kind go to the store instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{StreamExt, TryStreamExt};
use rancher_core::controller::reflector::IndexKey;
use rancher_core::controller::watcher::{Config, Event};
use rancher_core::controller::{ObjectRef, reflector, watcher};
use rancher_core::model::{
    Cluster, ClusterRoleTemplateBinding, GlobalRole, GlobalRoleBinding, Project, ProjectRoleTemplateBinding,
};
use rancher_core::store::{Api, Store, StoreResult};
use rancher_core::{MetadataOnly, Resource};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::membership::prtb_cluster;
use crate::server::cleanup::owner::CLUSTER_UID_ANNOTATION;

/// One kind's cache, trusted only while its watch is known to be current.
struct Cached<K> {
    reader: reflector::Store<K>,
    /// Listed and following; false from a watch failure until the re-list after it is done.
    synced: Arc<AtomicBool>,
}

impl<K: Resource> Cached<K> {
    /// Starts following `K` on the current Tokio runtime until `stop`, keeping the objects by
    /// `key_of` too when given, and only what `slim` leaves of each.
    fn follow(
        store: &Arc<dyn Store>,
        stop: &CancellationToken,
        key_of: Option<IndexKey<K>>,
        slim: fn(&mut K),
    ) -> Self {
        let (reader, writer) = match key_of {
            Some(key_of) => reflector::indexed_store(key_of),
            None => reflector::store(),
        };
        let synced = Arc::new(AtomicBool::new(false));
        let flag = synced.clone();
        let feed = rancher_core::controller::reflector(
            writer,
            watcher(Api::<K>::all(store.clone()), Config::default().relist_after_error())
                .map_ok(move |event| event.modify(slim)),
        )
        .for_each(move |item| {
            match item {
                Ok(Event::InitApply(_)) => {}
                Ok(Event::Init) => flag.store(false, Ordering::Release),
                Ok(Event::Apply(_) | Event::Delete(_) | Event::InitDone) => {
                    flag.store(true, Ordering::Release)
                }
                Err(e) => {
                    tracing::debug!(
                        kind = K::KIND,
                        "the proxy's watch failed; reading the store until it recovers: {e}"
                    );
                    flag.store(false, Ordering::Release);
                }
            }
            futures::future::ready(())
        });
        tokio::spawn(stop.clone().run_until_cancelled_owned(feed));
        Cached { reader, synced }
    }

    /// `f` over the cache, or `None` when it is not synced.
    fn read<R>(&self, f: impl FnOnce(&reflector::Store<K>) -> R) -> Option<R> {
        self.synced.load(Ordering::Acquire).then(|| f(&self.reader))
    }
}

/// Keeps the whole object.
fn whole<K>(_: &mut K) {}

/// Drops what no access decision reads of an object's metadata: its labels, finalizers and every
/// annotation but `keep`.
fn slim_metadata(meta: &mut rancher_core::ObjectMeta, keep: Option<&str>) {
    meta.labels = Default::default();
    meta.finalizers = Default::default();
    let kept = keep.and_then(|k| meta.annotations.remove_entry(k));
    meta.annotations = kept.into_iter().collect();
}

/// Global roles, bindings, clusters, projects and role template bindings, served from memory once
/// synced.
pub(crate) struct AuthzIndex {
    store: Arc<dyn Store>,
    global_bindings: Cached<GlobalRoleBinding>,
    global_roles: Cached<GlobalRole>,
    clusters: Cached<MetadataOnly<Cluster>>,
    projects: Cached<MetadataOnly<Project>>,
    crtbs: Cached<ClusterRoleTemplateBinding>,
    prtbs: Cached<ProjectRoleTemplateBinding>,
    /// Stops the watches when the index is dropped.
    _stop: DropGuard,
}

impl std::fmt::Debug for AuthzIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthzIndex").finish_non_exhaustive()
    }
}

impl AuthzIndex {
    /// Starts the watches on the current Tokio runtime.
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        let stop = CancellationToken::new();
        // What a proxied request looks up by: the bindings of one user, of one cluster.
        let grb_user: IndexKey<GlobalRoleBinding> = |b| Some(b.spec.user_name.clone());
        let crtb_cluster: IndexKey<ClusterRoleTemplateBinding> = |b| b.metadata.namespace.clone();
        let prtb_by_cluster: IndexKey<ProjectRoleTemplateBinding> = |b| prtb_cluster(b).map(str::to_owned);
        AuthzIndex {
            global_bindings: Cached::follow(&store, &stop, Some(grb_user), whole),
            global_roles: Cached::follow(&store, &stop, None, whole),
            // A request reads a cluster's name, uid, creation and deletion, and a project's with the
            // annotation naming its cluster: nothing else is kept (a whole `Cluster` is a kilobyte
            // before its spec and status hold anything; labels and annotations each cost a map node
            // of some 500 bytes per object).
            clusters: Cached::follow(&store, &stop, None, |c| slim_metadata(&mut c.metadata, None)),
            projects: Cached::follow(&store, &stop, None, |p| {
                slim_metadata(&mut p.metadata, Some(CLUSTER_UID_ANNOTATION));
            }),
            crtbs: Cached::follow(&store, &stop, Some(crtb_cluster), whole),
            prtbs: Cached::follow(&store, &stop, Some(prtb_by_cluster), whole),
            store,
            _stop: stop.drop_guard(),
        }
    }

    /// Whether every kind has synced (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn synced(&self) -> bool {
        self.global_bindings.read(|_| ()).is_some()
            && self.global_roles.read(|_| ()).is_some()
            && self.clusters.read(|_| ()).is_some()
            && self.projects.read(|_| ()).is_some()
            && self.crtbs.read(|_| ()).is_some()
            && self.prtbs.read(|_| ()).is_some()
    }

    /// The metadata of cluster `id` (kept slim in memory: see [`AuthzIndex::start`]).
    pub(crate) async fn cluster(&self, id: &str) -> StoreResult<Option<Arc<MetadataOnly<Cluster>>>> {
        if let Some(c) = self.clusters.read(|m| m.get(&ObjectRef::new(id))) {
            return Ok(c);
        }
        let found = Api::<Cluster>::all(self.store.clone()).get_opt(id).await?;
        Ok(found.map(|c| Arc::new(MetadataOnly::new(c.metadata))))
    }

    /// The metadata of the project `name` of `cluster`.
    pub(crate) async fn project(
        &self,
        cluster: &str,
        name: &str,
    ) -> StoreResult<Option<Arc<MetadataOnly<Project>>>> {
        if let Some(p) = self.projects.read(|m| m.get(&ObjectRef::new(name).within(cluster))) {
            return Ok(p);
        }
        let found = Api::<Project>::namespaced(self.store.clone(), cluster).get_opt(name).await?;
        Ok(found.map(|p| Arc::new(MetadataOnly::new(p.metadata))))
    }

    /// Every global role bound to `user_id` (shared with the index: a request reads their rules and
    /// copies none).
    pub(crate) async fn roles_for(&self, user_id: &str) -> StoreResult<Vec<Arc<GlobalRole>>> {
        let names = match self.global_bindings.read(|m| {
            m.indexed(user_id, |_| true).iter().map(|b| b.spec.global_role_name.clone()).collect::<Vec<_>>()
        }) {
            Some(names) => names,
            None => Api::<GlobalRoleBinding>::all(self.store.clone())
                .list()
                .await?
                .into_iter()
                .filter(|b| b.spec.user_name == user_id)
                .map(|b| b.spec.global_role_name)
                .collect(),
        };
        let mut roles = Vec::with_capacity(names.len());
        for name in names {
            // A binding to a role that was deleted grants nothing.
            let role = match self.global_roles.read(|m| m.get(&ObjectRef::new(&name))) {
                Some(role) => role,
                None => Api::<GlobalRole>::all(self.store.clone()).get_opt(&name).await?.map(Arc::new),
            };
            roles.extend(role);
        }
        Ok(roles)
    }

    /// Whether any ClusterRoleTemplateBinding in `cluster`'s namespace satisfies `pred`.
    pub(crate) async fn any_crtb(
        &self,
        cluster: &str,
        pred: impl Fn(&ClusterRoleTemplateBinding) -> bool,
    ) -> StoreResult<bool> {
        if let Some(hit) = self.crtbs.read(|m| !m.indexed(cluster, &pred).is_empty()) {
            return Ok(hit);
        }
        let list = Api::<ClusterRoleTemplateBinding>::namespaced(self.store.clone(), cluster).list().await?;
        Ok(list.iter().any(pred))
    }

    /// The ProjectRoleTemplateBindings of `cluster`'s projects that satisfy `pred`.
    pub(crate) async fn cluster_prtbs_where(
        &self,
        cluster: &str,
        pred: impl Fn(&ProjectRoleTemplateBinding) -> bool,
    ) -> StoreResult<Vec<ProjectRoleTemplateBinding>> {
        if let Some(hits) =
            self.prtbs.read(|m| m.indexed(cluster, &pred).into_iter().map(Arc::unwrap_or_clone).collect())
        {
            return Ok(hits);
        }
        let list = Api::<ProjectRoleTemplateBinding>::all(self.store.clone()).list().await?;
        Ok(list.into_iter().filter(|b| prtb_cluster(b) == Some(cluster) && pred(b)).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use rancher_core::model::{GlobalRoleBindingSpec, GlobalRoleSpec, PolicyRule};
    use rancher_core::store::MemoryStore;
    use rancher_core::store::testing::CutWatches;

    async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !f().await {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The rules of `user`'s global roles, as the index finds them.
    async fn rules(index: &AuthzIndex, user: &str) -> Vec<PolicyRule> {
        let roles = index.roles_for(user).await.unwrap();
        roles.iter().flat_map(|r| r.spec.rules.iter().cloned()).collect()
    }

    #[tokio::test]
    async fn role_and_binding_changes_reach_the_index_and_reads_work_before_sync() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let rule = PolicyRule {
            verbs: vec!["get".into()],
            api_groups: vec!["*".into()],
            resources: vec!["clusters".into()],
            ..Default::default()
        };
        Api::<GlobalRole>::all(store.clone())
            .create(&GlobalRole::new(
                "reader",
                GlobalRoleSpec { rules: vec![rule.clone()], ..Default::default() },
            ))
            .await
            .unwrap();
        let index = AuthzIndex::start(store.clone());
        // Whether synced yet or not, the answer is the store's.
        assert!(rules(&index, "u-a").await.is_empty());
        until("the index syncs", async || index.synced()).await;

        let bindings = Api::<GlobalRoleBinding>::all(store.clone());
        let spec = GlobalRoleBindingSpec {
            user_name: "u-a".into(),
            global_role_name: "reader".into(),
            ..Default::default()
        };
        bindings.create(&GlobalRoleBinding::new("grb-a", spec)).await.unwrap();
        until("the binding is seen", async || rules(&index, "u-a").await == [rule.clone()]).await;
        assert!(rules(&index, "u-b").await.is_empty(), "only the bound user gains the rules");

        bindings.delete("grb-a").await.unwrap();
        until("the removal is seen", async || rules(&index, "u-a").await.is_empty()).await;
        assert!(index.cluster("nope").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn cluster_bindings_are_found_by_their_cluster_before_and_after_sync() {
        use rancher_core::model::{ClusterRoleTemplateBindingSpec, ProjectRoleTemplateBindingSpec};
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        for cluster in ["c1", "c2"] {
            let mut crtb = ClusterRoleTemplateBinding::new(
                &format!("crtb-{cluster}"),
                ClusterRoleTemplateBindingSpec {
                    user_name: format!("u-{cluster}"),
                    cluster_name: cluster.into(),
                    role_template_name: "cluster-member".into(),
                    ..Default::default()
                },
            );
            crtb.metadata.namespace = Some(cluster.into());
            Api::<ClusterRoleTemplateBinding>::namespaced(store.clone(), cluster)
                .create(&crtb)
                .await
                .unwrap();
            let mut prtb = ProjectRoleTemplateBinding::new(
                &format!("prtb-{cluster}"),
                ProjectRoleTemplateBindingSpec {
                    user_name: format!("u-{cluster}"),
                    project_name: format!("{cluster}:p-shop"),
                    role_template_name: "project-member".into(),
                    ..Default::default()
                },
            );
            prtb.metadata.namespace = Some("p-shop".into());
            Api::<ProjectRoleTemplateBinding>::namespaced(store.clone(), "p-shop")
                .create(&prtb)
                .await
                .unwrap();
        }
        let index = AuthzIndex::start(store.clone());
        let look = async |index: &AuthzIndex| {
            let mut seen = Vec::new();
            for cluster in ["c1", "c2", "c3"] {
                for user in ["u-c1", "u-c2"] {
                    let crtb = index.any_crtb(cluster, |b| b.spec.user_name == user).await.unwrap();
                    let prtbs =
                        index.cluster_prtbs_where(cluster, |b| b.spec.user_name == user).await.unwrap();
                    seen.push((cluster, user, crtb, prtbs.len()));
                }
            }
            seen
        };
        // A user's bindings count in their own cluster only, from the store and from the index alike.
        let want = vec![
            ("c1", "u-c1", true, 1),
            ("c1", "u-c2", false, 0),
            ("c2", "u-c1", false, 0),
            ("c2", "u-c2", true, 1),
            ("c3", "u-c1", false, 0),
            ("c3", "u-c2", false, 0),
        ];
        assert_eq!(look(&index).await, want, "read from the store (before the index syncs, or racing it)");
        until("the index syncs", async || index.synced()).await;
        assert_eq!(look(&index).await, want, "read from the index");
    }

    #[tokio::test]
    async fn while_the_watch_is_broken_reads_go_to_the_store() {
        let store = CutWatches::over_memory();
        let rule = PolicyRule { verbs: vec!["*".into()], resources: vec!["*".into()], ..Default::default() };
        Api::<GlobalRole>::all(store.clone())
            .create(&GlobalRole::new(
                "admin",
                GlobalRoleSpec { rules: vec![rule.clone()], ..Default::default() },
            ))
            .await
            .unwrap();
        let index = AuthzIndex::start(store.clone());
        until("the index syncs", async || index.synced()).await;
        store.cut(true);
        until("the index notices the broken watches", async || {
            !index.global_bindings.synced.load(Ordering::Acquire)
        })
        .await;
        // A binding made while the watch is down counts at once: the store answers, not the cache.
        let spec = GlobalRoleBindingSpec {
            user_name: "u-a".into(),
            global_role_name: "admin".into(),
            ..Default::default()
        };
        Api::<GlobalRoleBinding>::all(store.clone())
            .create(&GlobalRoleBinding::new("grb-a", spec))
            .await
            .unwrap();
        assert_eq!(rules(&index, "u-a").await, std::slice::from_ref(&rule));
        // Watches work again: the cache catches up and is used again.
        store.cut(false);
        until("the index syncs again", async || index.synced()).await;
        assert_eq!(rules(&index, "u-a").await, [rule]);
    }
}
