//! Who may reach which cluster through the proxy ([`BindingAccess`]): admins reach every cluster;
//! other users need a ClusterRoleTemplateBinding in the cluster or a ProjectRoleTemplateBinding in
//! one of its projects, for themselves or one of their groups ([`membership`](super::membership)).
//! The decision is read from the [`AuthzIndex`] only; nothing is written downstream on a request, and
//! nothing waits on a cluster without a live agent session (its requests are answered 503 at once).
//! What they may do inside is left to the downstream RBAC, rendered by the tenancy controller —
//! including admins' `cluster-admin` bindings — which the proxy waits for, briefly, on a cluster
//! whose agent has just (re)connected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use rancher_auth::proxy::{ClusterAccess, ClusterClients, Denied, UserInfo};
use rancher_core::ObjectMeta;
use rancher_core::model::{Cluster, ClusterRoleTemplateBinding, Project, ProjectRoleTemplateBinding};
use rancher_core::store::{Api, Store};
use tokio::sync::broadcast::error::RecvError;

use super::authz_index::AuthzIndex;
use super::membership::{ClusterMembers, crtb_grants, project_ref, prtb_candidate, prtb_counts};
use crate::server::auth::is_cluster_admin;
use crate::server::registration::Registration;
use crate::server::tenancy::RBAC_SYNC;

/// How long after an agent's (re)connect a request waits for the cluster's first RBAC sync, so that
/// a new member's or admin's first request does not race the controller that binds them.
const FIRST_SYNC_WAIT: Duration = Duration::from_secs(10);

/// The proxy's [`ClusterAccess`] policy, read from the [`AuthzIndex`] (watched roles, bindings,
/// projects and clusters; see there for how stale it may be).
pub(crate) struct BindingAccess {
    index: AuthzIndex,
    registration: Arc<Registration>,
    /// The proxy's cached clients, set once the proxy is built; dropped per cluster when its agent
    /// handed over new access (a new CA or credential) or its access is gone.
    clients: Arc<OnceLock<ClusterClients>>,
    /// Per cluster, the agent access the cached client was built from, and when it was first seen.
    /// Holding the `Arc` keeps its address from being reused, so `ptr_eq` tells a new hand-over
    /// from the old one.
    seen: Mutex<HashMap<String, (Arc<crate::server::registration::ClusterAccess>, tokio::time::Instant)>>,
}

impl BindingAccess {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        registration: Arc<Registration>,
        clients: Arc<OnceLock<ClusterClients>>,
    ) -> Self {
        let index = AuthzIndex::start(store);
        BindingAccess { index, registration, clients, seen: Mutex::new(HashMap::new()) }
    }

    /// Drops the cached client of `cluster` when the agent's access changed since it was built, or
    /// is gone, or no agent of the cluster holds a live session: the request then resolves its
    /// upstream afresh and is answered 503 at once, never sent into a pooled connection of a session
    /// that has ended. Returns when the current access was first seen (`None`: there is none, or no
    /// session to use it).
    fn refresh_client(&self, cluster: &ObjectMeta) -> Option<tokio::time::Instant> {
        let id = cluster.name.as_str();
        let live = !self.registration.session_keys_for(id, &cluster.uid).is_empty();
        let access = self.registration.access(id).filter(|a| live && a.cluster_uid == cluster.uid);
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(access) = access else {
            if seen.remove(id).is_some()
                && let Some(clients) = self.clients.get()
            {
                clients.invalidate(id);
            }
            return None;
        };
        if let Some((known, since)) = seen.get(id)
            && Arc::ptr_eq(known, &access)
        {
            return Some(*since);
        }
        let now = tokio::time::Instant::now();
        let first = seen.insert(id.to_owned(), (access, now)).is_none();
        if let (false, Some(clients)) = (first, self.clients.get()) {
            clients.invalidate(id);
        }
        Some(now)
    }

    /// Waits (within [`FIRST_SYNC_WAIT`] of the access hand-over) for the cluster's RBAC sync — but
    /// not for a cluster whose agents have gone: the wait ends when its last session does, and the
    /// request is answered 503 at once.
    async fn settle(&self, cluster: &ObjectMeta, since: Option<tokio::time::Instant>) {
        let Some(since) = since else { return };
        let (id, uid) = (cluster.name.as_str(), cluster.uid.as_str());
        let deadline = since + FIRST_SYNC_WAIT;
        if tokio::time::Instant::now() >= deadline || self.registration.is_synced(RBAC_SYNC, id) {
            return;
        }
        let mut events = self.registration.tunnel().subscribe();
        let gone = async {
            while !self.registration.session_keys_for(id, uid).is_empty() {
                if let Err(RecvError::Closed) = events.recv().await {
                    return;
                }
            }
        };
        tokio::select! {
            _ = self.registration.wait_synced(RBAC_SYNC, id, deadline) => {}
            () = gone => {}
        }
    }
}

fn bindings_unreadable(cluster: &str, e: &rancher_core::store::StoreError) -> Denied {
    tracing::warn!(cluster, "reading bindings for the proxy: {e}");
    Denied::Forbidden("the server could not read role bindings".into())
}

/// True when `user` (or one of their groups or principals) has a ClusterRoleTemplateBinding in
/// `cluster` or a ProjectRoleTemplateBinding in one of its projects, made for the cluster and
/// project as they exist now. Reads the store; a cluster that does not exist has no members.
///
/// # Errors
/// [`Denied::Forbidden`] when the store cannot be read (the reason is logged).
pub(crate) async fn has_binding(
    store: &Arc<dyn Store>,
    user: &UserInfo,
    cluster: &str,
) -> Result<bool, Denied> {
    let unreadable = |e| bindings_unreadable(cluster, &e);
    let Some(current) = Api::<Cluster>::all(store.clone()).get_opt(cluster).await.map_err(unreadable)? else {
        return Ok(false);
    };
    let crtbs = Api::<ClusterRoleTemplateBinding>::namespaced(store.clone(), cluster)
        .list()
        .await
        .map_err(unreadable)?;
    let prtbs = Api::<ProjectRoleTemplateBinding>::all(store.clone()).list().await.map_err(unreadable)?;
    let projects = Api::<Project>::namespaced(store.clone(), cluster).list().await.map_err(unreadable)?;
    let members = ClusterMembers { cluster: &current, crtbs: &crtbs, prtbs: &prtbs, projects: &projects };
    Ok(members.is_member(user))
}

/// [`has_binding`] from the watched index (the store until it has synced).
async fn has_indexed_binding(
    index: &AuthzIndex,
    user: &UserInfo,
    cluster: &ObjectMeta,
) -> Result<bool, Denied> {
    let id = cluster.name.as_str();
    let unreadable = |e| bindings_unreadable(id, &e);
    if index.any_crtb(id, |b| crtb_grants(b, user, cluster)).await.map_err(unreadable)? {
        return Ok(true);
    }
    for b in index.cluster_prtbs_where(id, |b| prtb_candidate(b, user, id)).await.map_err(unreadable)? {
        let Some((_, p)) = project_ref(&b.spec.project_name) else { continue };
        if let Some(project) = index.project(id, p).await.map_err(unreadable)?
            && prtb_counts(&b, &project.metadata, cluster)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[async_trait]
impl ClusterAccess for BindingAccess {
    async fn may_access(&self, user: &UserInfo, cluster_id: &str) -> Result<(), Denied> {
        let cluster = self.index.cluster(cluster_id).await.map_err(|e| {
            tracing::warn!(cluster = cluster_id, "reading the cluster for the proxy: {e}");
            Denied::Forbidden("the server could not read the cluster".into())
        })?;
        let Some(cluster) = cluster.filter(|c| c.metadata.deletion_timestamp.is_none()) else {
            return Err(Denied::NotFound);
        };
        let since = self.refresh_client(&cluster.metadata);
        let roles = self.index.roles_for(&user.username).await.map_err(|e| {
            tracing::warn!(user = %user.username, "reading global roles for the proxy: {e}");
            Denied::Forbidden("the server could not read global roles".into())
        })?;
        let admin = roles.iter().any(|role| is_cluster_admin(&role.spec.rules));
        if admin || has_indexed_binding(&self.index, user, &cluster.metadata).await? {
            self.settle(&cluster.metadata, since).await;
            Ok(())
        } else {
            Err(Denied::Forbidden(format!(
                "user {} has no role in cluster {cluster_id}: ask for a cluster or project membership",
                user.username
            )))
        }
    }
}
