//! The RBAC sync of one cluster: read the role templates and bindings from the store and the
//! cluster's namespaces, render them ([`rancher_auth::rbac_render`]) together with the global admins'
//! bindings ([`admins`](super::admins)), and converge the cluster's ClusterRoles,
//! ClusterRoleBindings and RoleBindings that carry our label on the result. Only bindings made for
//! the cluster and projects as they exist now are rendered (a leftover of an earlier cluster or
//! project of the same name renders nothing).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::ListParams;
use rancher_auth::rbac_render::{self, Inputs, NamespaceInfo, PROJECT_ID_ANNOTATION};
use rancher_core::model::{
    Cluster, ClusterRoleTemplateBinding, GlobalRole, GlobalRoleBinding, Project, RoleTemplate, User,
};
use rancher_core::store::{Api, Store};
use serde_json::Value;

use super::apply::{self, Changes, Key, Kind};
use super::workers::{BoxFut, ClusterSync};
use super::{RBAC_SYNC, SyncError, admins};
use crate::protocol::report;
use crate::server::proxy::membership::{ClusterMembers, crtb_counts};

/// Renders and applies role template bindings downstream.
pub(crate) struct RbacSync {
    pub(crate) store: Arc<dyn Store>,
}

fn keyed(objects: impl IntoIterator<Item = (Key, Value)>) -> BTreeMap<Key, Value> {
    objects.into_iter().collect()
}

impl RbacSync {
    async fn run_once(&self, current: &Cluster, client: kube::Client) -> Result<Changes, SyncError> {
        let cluster = current.metadata.name.as_str();
        let store = &self.store;
        let templates = Api::<RoleTemplate>::all(store.clone()).list().await?;
        let crtbs = Api::<ClusterRoleTemplateBinding>::namespaced(store.clone(), cluster).list().await?;
        let projects = Api::<Project>::namespaced(store.clone(), cluster).list().await?;
        let prtbs = super::project_bindings(store, &projects).await?;
        let members = ClusterMembers { cluster: current, crtbs: &crtbs, prtbs: &prtbs, projects: &projects };
        let crtbs: Vec<_> = crtbs.iter().filter(|b| crtb_counts(b, &current.metadata)).cloned().collect();
        let prtbs: Vec<_> = prtbs.iter().filter(|b| members.prtb_counts(b)).cloned().collect();
        let users = Api::<User>::all(store.clone()).list().await?;
        let grbs = Api::<GlobalRoleBinding>::all(store.clone()).list().await?;
        let global_roles = Api::<GlobalRole>::all(store.clone()).list().await?;
        let admin_crbs = admins::desired(&users, &grbs, &global_roles);
        let namespaces = kube::Api::<Namespace>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| SyncError::Downstream {
                action: "listing",
                kind: "Namespace".into(),
                name: String::new(),
                source: Box::new(e),
            })?;
        let namespaces: Vec<NamespaceInfo> = namespaces
            .items
            .iter()
            .filter(|n| n.metadata.deletion_timestamp.is_none())
            .map(|n| {
                let project = n.metadata.annotations.as_ref().and_then(|a| a.get(PROJECT_ID_ANNOTATION));
                NamespaceInfo::new(
                    n.metadata.name.as_deref().unwrap_or_default(),
                    project.map(String::as_str),
                )
            })
            .collect();
        let desired = rbac_render::render_cluster(&Inputs {
            cluster,
            templates: &templates,
            crtbs: &crtbs,
            prtbs: &prtbs,
            namespaces: &namespaces,
        });
        for s in &desired.skipped {
            tracing::warn!(%cluster, binding = %s.binding, error = %s.error, "binding not rendered");
        }
        let roles = keyed(desired.cluster_roles.into_iter().map(|(n, v)| ((String::new(), n), v)));
        let mut crbs = keyed(desired.cluster_role_bindings.into_iter().map(|(n, v)| ((String::new(), n), v)));
        crbs.extend(admin_crbs);
        let rbs = keyed(desired.role_bindings);

        let role_kind = Kind::of::<ClusterRole>(false);
        let crb_kind = Kind::of::<ClusterRoleBinding>(false);
        let rb_kind = Kind::of::<RoleBinding>(true);
        let live_roles = apply::list_ours(&client, &role_kind, None).await?;
        let live_crbs = apply::list_ours(&client, &crb_kind, None).await?;
        let live_rbs = apply::list_ours(&client, &rb_kind, None).await?;

        let (mut changes, mut errors) = (Changes::default(), Vec::new());
        admins::adopt_legacy(&client, &crbs, &mut changes, &mut errors).await;
        // Adopted objects now carry our label: read them again so they are updated, not re-created.
        let live_crbs =
            if changes.any() { apply::list_ours(&client, &crb_kind, None).await? } else { live_crbs };
        let differs = rbac_render::differs;
        // Roles before the bindings that name them; bindings removed before their roles.
        apply::upsert(&client, &role_kind, &roles, &live_roles, &mut changes, &mut errors, differs).await;
        apply::upsert(&client, &crb_kind, &crbs, &live_crbs, &mut changes, &mut errors, differs).await;
        apply::upsert(&client, &rb_kind, &rbs, &live_rbs, &mut changes, &mut errors, differs).await;
        apply::prune(&client, &rb_kind, &rbs, &live_rbs, &mut changes, &mut errors).await;
        apply::prune(&client, &crb_kind, &crbs, &live_crbs, &mut changes, &mut errors).await;
        apply::prune(&client, &role_kind, &roles, &live_roles, &mut changes, &mut errors).await;
        match errors.into_iter().next() {
            Some(first) => Err(first),
            None => Ok(changes),
        }
    }
}

/// Removes every RBAC object we rendered in a cluster, admins' bindings included (it is being
/// deleted).
///
/// # Errors
/// The first downstream failure.
pub(crate) async fn remove_rendered(client: &kube::Client) -> Result<(), SyncError> {
    let (mut changes, mut errors) = (Changes::default(), Vec::new());
    let none = BTreeMap::new();
    admins::adopt_legacy(client, &none, &mut changes, &mut errors).await;
    // Bindings before the roles they name.
    for kind in
        [Kind::of::<RoleBinding>(true), Kind::of::<ClusterRoleBinding>(false), Kind::of::<ClusterRole>(false)]
    {
        let live = apply::list_ours(client, &kind, None).await?;
        apply::prune(client, &kind, &none, &live, &mut changes, &mut errors).await;
    }
    errors.into_iter().next().map_or(Ok(()), Err)
}

impl ClusterSync for RbacSync {
    fn name(&self) -> &'static str {
        RBAC_SYNC
    }

    fn sync<'a>(&'a self, current: &'a Cluster, client: kube::Client) -> BoxFut<'a, Result<(), SyncError>> {
        Box::pin(async move {
            let cluster = &current.metadata.name;
            let changes = self.run_once(current, client).await?;
            if changes.any() {
                tracing::info!(
                    %cluster, created = changes.created, updated = changes.updated, deleted = changes.deleted,
                    "downstream RBAC synced"
                );
            }
            Ok(())
        })
    }

    /// Synced again when a namespace appears, goes, or changes project, and when one of our RBAC
    /// objects is deleted behind our back (it is put back at once rather than at the next resync),
    /// as the cluster's agent reports.
    fn depends_on(&self) -> &'static [&'static str] {
        &[report::NAMESPACES, report::RBAC]
    }
}
