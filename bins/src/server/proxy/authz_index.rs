//! The proxy's in-memory view of what decides access ([`AuthzIndex`]): global role bindings and
//! roles, clusters, projects, and cluster/project role template bindings, each listed once and then kept current
//! by a store watch (re-listed when the watch ends, e.g. on `Gone`). Tokens and users are NOT here:
//! they are read from the store on every request so revocation is immediate.
//!
//! Staleness bound: a change to a role, binding or cluster takes effect when its watch event arrives
//! (typically milliseconds after the write). Until a kind has synced, and while its watch is being
//! re-established, reads of that kind go to the store instead.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use rancher_core::Resource;
use rancher_core::model::{
    Cluster, ClusterRoleTemplateBinding, GlobalRole, GlobalRoleBinding, PolicyRule, Project,
    ProjectRoleTemplateBinding,
};
use rancher_core::store::{Api, ListOptions, Store, StoreResult, TypedEvent, WatchOptions};
use tokio_util::sync::{CancellationToken, DropGuard};

/// (namespace, name) → object.
type Objects<K> = BTreeMap<(String, String), K>;

/// One kind's objects; `None` while not synced with the store.
struct Reflector<K> {
    objects: RwLock<Option<Objects<K>>>,
}

fn key<K: Resource>(k: &K) -> (String, String) {
    (k.meta().namespace.clone().unwrap_or_default(), k.name().to_owned())
}

impl<K: Resource> Reflector<K> {
    fn new() -> Arc<Self> {
        Arc::new(Reflector { objects: RwLock::new(None) })
    }

    /// `f` over the objects, or `None` when not synced.
    fn read<R>(&self, f: impl FnOnce(&Objects<K>) -> R) -> Option<R> {
        self.objects.read().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref().map(f)
    }

    fn set(&self, objects: Option<Objects<K>>) {
        *self.objects.write().unwrap_or_else(std::sync::PoisonError::into_inner) = objects;
    }

    fn apply(&self, event: TypedEvent<K>) {
        let mut guard = self.objects.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(objects) = guard.as_mut() else { return };
        match event {
            TypedEvent::Added(k) | TypedEvent::Modified(k) => {
                objects.insert(key(&k), k);
            }
            TypedEvent::Deleted(k) => {
                objects.remove(&key(&k));
            }
            TypedEvent::Bookmark(_) => {}
        }
    }

    /// Lists then follows the store until `stop`; on any failure marks itself unsynced (readers fall
    /// back to the store) and starts over after a short pause.
    async fn run(self: Arc<Self>, store: Arc<dyn Store>, stop: CancellationToken) {
        let api = Api::<K>::all(store);
        let mut pause = Duration::from_millis(100);
        loop {
            let synced = async {
                let (items, page) = api.list_with(ListOptions::default()).await?;
                let mut stream = api
                    .watch(WatchOptions {
                        resource_version: Some(page.resource_version),
                        ..Default::default()
                    })
                    .await?;
                self.set(Some(items.into_iter().map(|k| (key(&k), k)).collect()));
                while let Some(event) = stream.next().await {
                    self.apply(event?);
                }
                Ok(())
            };
            let outcome: StoreResult<()> = tokio::select! {
                () = stop.cancelled() => return,
                r = synced => r,
            };
            self.set(None);
            match outcome {
                Ok(()) => tracing::debug!(kind = K::KIND, "the proxy's watch ended; re-listing"),
                Err(e) => tracing::debug!(kind = K::KIND, "the proxy's watch failed, re-listing: {e}"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}

/// Global roles, bindings, clusters, projects and role template bindings, served from memory once
/// synced.
pub(crate) struct AuthzIndex {
    store: Arc<dyn Store>,
    global_bindings: Arc<Reflector<GlobalRoleBinding>>,
    global_roles: Arc<Reflector<GlobalRole>>,
    clusters: Arc<Reflector<Cluster>>,
    projects: Arc<Reflector<Project>>,
    crtbs: Arc<Reflector<ClusterRoleTemplateBinding>>,
    prtbs: Arc<Reflector<ProjectRoleTemplateBinding>>,
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
        let index = AuthzIndex {
            store: store.clone(),
            global_bindings: Reflector::new(),
            global_roles: Reflector::new(),
            clusters: Reflector::new(),
            projects: Reflector::new(),
            crtbs: Reflector::new(),
            prtbs: Reflector::new(),
            _stop: stop.clone().drop_guard(),
        };
        tokio::spawn(index.global_bindings.clone().run(store.clone(), stop.clone()));
        tokio::spawn(index.global_roles.clone().run(store.clone(), stop.clone()));
        tokio::spawn(index.clusters.clone().run(store.clone(), stop.clone()));
        tokio::spawn(index.projects.clone().run(store.clone(), stop.clone()));
        tokio::spawn(index.crtbs.clone().run(store.clone(), stop.clone()));
        tokio::spawn(index.prtbs.clone().run(store, stop));
        index
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

    /// The cluster `id`.
    pub(crate) async fn cluster(&self, id: &str) -> StoreResult<Option<Cluster>> {
        if let Some(c) = self.clusters.read(|m| m.get(&(String::new(), id.to_owned())).cloned()) {
            return Ok(c);
        }
        Api::<Cluster>::all(self.store.clone()).get_opt(id).await
    }

    /// The project `name` of `cluster`.
    pub(crate) async fn project(&self, cluster: &str, name: &str) -> StoreResult<Option<Project>> {
        if let Some(p) = self.projects.read(|m| m.get(&(cluster.to_owned(), name.to_owned())).cloned()) {
            return Ok(p);
        }
        Api::<Project>::namespaced(self.store.clone(), cluster).get_opt(name).await
    }

    /// The rules of every global role bound to `user_id`.
    pub(crate) async fn rules_for(&self, user_id: &str) -> StoreResult<Vec<PolicyRule>> {
        let names = match self.global_bindings.read(|m| {
            m.values()
                .filter(|b| b.spec.user_name == user_id)
                .map(|b| b.spec.global_role_name.clone())
                .collect::<Vec<_>>()
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
        let mut rules = Vec::new();
        for name in names {
            // A binding to a role that was deleted grants nothing.
            let role = match self.global_roles.read(|m| m.get(&(String::new(), name.clone())).cloned()) {
                Some(role) => role,
                None => Api::<GlobalRole>::all(self.store.clone()).get_opt(&name).await?,
            };
            if let Some(role) = role {
                rules.extend(role.spec.rules);
            }
        }
        Ok(rules)
    }

    /// Whether any ClusterRoleTemplateBinding in `cluster`'s namespace satisfies `pred`.
    pub(crate) async fn any_crtb(
        &self,
        cluster: &str,
        pred: impl Fn(&ClusterRoleTemplateBinding) -> bool,
    ) -> StoreResult<bool> {
        let from = (cluster.to_owned(), String::new());
        if let Some(hit) = self
            .crtbs
            .read(|m| m.range(from..).take_while(|((ns, _), _)| ns == cluster).any(|(_, b)| pred(b)))
        {
            return Ok(hit);
        }
        let list = Api::<ClusterRoleTemplateBinding>::namespaced(self.store.clone(), cluster).list().await?;
        Ok(list.iter().any(pred))
    }

    /// The ProjectRoleTemplateBindings that satisfy `pred`.
    pub(crate) async fn prtbs_where(
        &self,
        pred: impl Fn(&ProjectRoleTemplateBinding) -> bool,
    ) -> StoreResult<Vec<ProjectRoleTemplateBinding>> {
        if let Some(hits) = self.prtbs.read(|m| m.values().filter(|b| pred(b)).cloned().collect()) {
            return Ok(hits);
        }
        let list = Api::<ProjectRoleTemplateBinding>::all(self.store.clone()).list().await?;
        Ok(list.into_iter().filter(|b| pred(b)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rancher_core::model::{GlobalRoleBindingSpec, GlobalRoleSpec};
    use rancher_core::store::MemoryStore;

    async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !f().await {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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
        assert!(index.rules_for("u-a").await.unwrap().is_empty());
        until("the index syncs", async || index.synced()).await;

        let bindings = Api::<GlobalRoleBinding>::all(store.clone());
        let spec = GlobalRoleBindingSpec {
            user_name: "u-a".into(),
            global_role_name: "reader".into(),
            ..Default::default()
        };
        bindings.create(&GlobalRoleBinding::new("grb-a", spec)).await.unwrap();
        until("the binding is seen", async || index.rules_for("u-a").await.unwrap() == [rule.clone()]).await;
        assert!(index.rules_for("u-b").await.unwrap().is_empty(), "only the bound user gains the rules");

        bindings.delete("grb-a").await.unwrap();
        until("the removal is seen", async || index.rules_for("u-a").await.unwrap().is_empty()).await;
        assert_eq!(index.cluster("nope").await.unwrap(), None);
    }
}
