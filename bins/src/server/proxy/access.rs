//! Who may reach which cluster through the proxy ([`BindingAccess`]): admins reach every cluster;
//! other users need a ClusterRoleTemplateBinding in the cluster or a ProjectRoleTemplateBinding in
//! one of its projects, for themselves or one of their groups. What they may do inside is left to
//! the downstream RBAC (rendered from those bindings by the tenancy controller).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use rancher_auth::proxy::{ClusterAccess, ClusterClients, Denied, UserInfo};
use rancher_core::model::{ClusterRoleTemplateBinding, ProjectRoleTemplateBinding};
use rancher_core::store::{Api, Store};

use super::admin_binding::AdminBindings;
use super::authz_index::AuthzIndex;
use crate::server::auth::is_cluster_admin;
use crate::server::registration::Registration;

/// The proxy's [`ClusterAccess`] policy, read from the [`AuthzIndex`] (watched roles, bindings and
/// clusters; see there for how stale it may be).
pub(crate) struct BindingAccess {
    index: AuthzIndex,
    registration: Arc<Registration>,
    /// The proxy's cached clients, set once the proxy is built; dropped per cluster when its agent
    /// handed over new access (a new CA or credential).
    clients: Arc<OnceLock<ClusterClients>>,
    /// Per cluster, the agent access the cached client was built from. Holding the `Arc` keeps its
    /// address from being reused, so `ptr_eq` tells a new hand-over from the old one.
    seen: Mutex<HashMap<String, Arc<crate::server::registration::ClusterAccess>>>,
    admins: AdminBindings,
}

impl BindingAccess {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        registration: Arc<Registration>,
        clients: Arc<OnceLock<ClusterClients>>,
    ) -> Self {
        let admins = AdminBindings::new(registration.clone());
        let index = AuthzIndex::start(store);
        BindingAccess { index, registration, clients, seen: Mutex::new(HashMap::new()), admins }
    }

    /// Drops the cached client of `cluster` when the agent's access changed since it was built.
    fn refresh_client(&self, cluster: &str) {
        let Some(access) = self.registration.access(cluster) else { return };
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.get(cluster).is_some_and(|known| Arc::ptr_eq(known, &access)) {
            return;
        }
        let first = seen.insert(cluster.to_owned(), access).is_none();
        if let (false, Some(clients)) = (first, self.clients.get()) {
            clients.invalidate(cluster);
        }
    }
}

/// Whether a binding's subject (user id, user principal or group principal) is `user`.
fn subject_is(user: &UserInfo, user_name: &str, user_principal: &str, group_principal: &str) -> bool {
    let principal = user.extra.get("principalid").and_then(|p| p.first());
    (!user_name.is_empty() && user_name == user.username)
        || (!user_principal.is_empty() && principal.is_some_and(|p| p == user_principal))
        || (!group_principal.is_empty() && user.groups.iter().any(|g| g == group_principal))
}

fn crtb_grants(b: &ClusterRoleTemplateBinding, user: &UserInfo, cluster: &str) -> bool {
    b.spec.cluster_name == cluster
        && subject_is(user, &b.spec.user_name, &b.spec.user_principal_name, &b.spec.group_principal_name)
}

fn prtb_grants(b: &ProjectRoleTemplateBinding, user: &UserInfo, cluster: &str) -> bool {
    b.spec.project_name.split_once(':').is_some_and(|(c, _)| c == cluster)
        && subject_is(user, &b.spec.user_name, &b.spec.user_principal_name, &b.spec.group_principal_name)
}

fn bindings_unreadable(cluster: &str, e: &rancher_core::store::StoreError) -> Denied {
    tracing::warn!(cluster, "reading bindings for the proxy: {e}");
    Denied::Forbidden("the server could not read role bindings".into())
}

/// True when `user` (or one of their groups or principals) has a ClusterRoleTemplateBinding in
/// `cluster` or a ProjectRoleTemplateBinding in one of its projects. Reads the store.
///
/// # Errors
/// [`Denied::Forbidden`] when the store cannot be read (the reason is logged).
pub(crate) async fn has_binding(
    store: &Arc<dyn Store>,
    user: &UserInfo,
    cluster: &str,
) -> Result<bool, Denied> {
    let crtbs = Api::<ClusterRoleTemplateBinding>::namespaced(store.clone(), cluster)
        .list()
        .await
        .map_err(|e| bindings_unreadable(cluster, &e))?;
    if crtbs.iter().any(|b| crtb_grants(b, user, cluster)) {
        return Ok(true);
    }
    let prtbs = Api::<ProjectRoleTemplateBinding>::all(store.clone())
        .list()
        .await
        .map_err(|e| bindings_unreadable(cluster, &e))?;
    Ok(prtbs.iter().any(|b| prtb_grants(b, user, cluster)))
}

/// [`has_binding`] from the watched index (the store until it has synced).
async fn has_indexed_binding(index: &AuthzIndex, user: &UserInfo, cluster: &str) -> Result<bool, Denied> {
    let unreadable = |e| bindings_unreadable(cluster, &e);
    if index.any_crtb(cluster, |b| crtb_grants(b, user, cluster)).await.map_err(unreadable)? {
        return Ok(true);
    }
    index.any_prtb(|b| prtb_grants(b, user, cluster)).await.map_err(unreadable)
}

#[async_trait]
impl ClusterAccess for BindingAccess {
    async fn may_access(&self, user: &UserInfo, cluster_id: &str) -> Result<(), Denied> {
        let cluster = self.index.cluster(cluster_id).await.map_err(|e| {
            tracing::warn!(cluster = cluster_id, "reading the cluster for the proxy: {e}");
            Denied::Forbidden("the server could not read the cluster".into())
        })?;
        if cluster.is_none_or(|c| c.metadata.deletion_timestamp.is_some()) {
            return Err(Denied::NotFound);
        }
        self.refresh_client(cluster_id);
        let rules = self.index.rules_for(&user.username).await.map_err(|e| {
            tracing::warn!(user = %user.username, "reading global roles for the proxy: {e}");
            Denied::Forbidden("the server could not read global roles".into())
        })?;
        if is_cluster_admin(&rules) {
            self.admins.ensure(cluster_id, &user.username).await;
            return Ok(());
        }
        if has_indexed_binding(&self.index, user, cluster_id).await? {
            self.admins.revoke(cluster_id, &user.username).await;
            Ok(())
        } else {
            Err(Denied::Forbidden(format!(
                "user {} has no role in cluster {cluster_id}: ask for a cluster or project membership",
                user.username
            )))
        }
    }
}
