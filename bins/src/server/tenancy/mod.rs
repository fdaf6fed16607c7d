//! Tenancy downstream: role template bindings and global admins rendered into each connected
//! cluster's RBAC and kept in sync ([`rbac_sync`], [`admins`]), run by each connected cluster's
//! supervisor ([`supervisor`](crate::server::supervisor)) through its one client, beside the
//! authorized cluster endpoint's token sync (`ace_sync`); [`workers`] registers and pokes them.
//!
//! When a sync happens: a ClusterRoleTemplateBinding, ProjectRoleTemplateBinding, RoleTemplate,
//! Project, GlobalRoleBinding or GlobalRole changes in the store, or a user is enabled, disabled or
//! deleted (watched), a downstream namespace appears, goes or changes its
//! `field.cattle.io/projectId` annotation or one of our RBAC objects is deleted (reported by the
//! cluster's agent as a digest: the server holds no watch into the cluster), a sync failed (retried with
//! backoff), and every [`RBAC_RESYNC`] to repair drift (someone deleted one of our RoleBindings).
//!
//! Every cluster's Default and System projects, and the namespaces first put into them:
//! [`system_projects`].

mod admins;
pub(crate) mod apply;
pub(crate) mod project_names;
mod rbac_sync;
pub(crate) mod system_projects;
pub(crate) mod workers;

use std::sync::Arc;
use std::time::Duration;

use rancher_core::model::{Project, ProjectRoleTemplateBinding, RoleTemplate, User};
use rancher_core::store::{Api, Store, StoreError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::rbac_sync::RbacSync;
pub(crate) use self::rbac_sync::remove_rendered;
use self::workers::{ClusterWorkers, Fingerprints, follow, follow_membership};
use crate::server::registration::Registration;

/// How often every cluster's RBAC is re-checked even when nothing was seen to change: what this
/// repairs is an edit by hand of one of our objects (a deletion is reported by the agent and put
/// back at once). Spread wider over a big fleet (see the supervisor's worker).
pub(crate) const RBAC_RESYNC: Duration = Duration::from_secs(600);
/// The name of the RBAC sync (see [`Registration::mark_synced`]).
pub(crate) const RBAC_SYNC: &str = "rbac";

/// Why a downstream sync failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    /// The management store could not be read.
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
    /// A call to the downstream API server failed.
    #[error("{action} {kind} {name}: {source}")]
    Downstream {
        /// `listing`, `creating`, `updating`, `deleting`.
        action: &'static str,
        /// The Kubernetes kind.
        kind: String,
        /// `namespace/name` or `name`.
        name: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// No client into the cluster could be built (its CA or credential is unusable).
    #[error("no client for the cluster: {0}")]
    Client(String),
    /// An object could not be converted (a bug: rendered objects are well-formed).
    #[error("encoding an object: {0}")]
    Encode(#[source] serde_json::Error),
}

/// The project role template bindings of `projects` — each project's live in the namespace of its
/// name — so that a cluster's sync reads its own bindings, not every binding of the fleet (which at
/// ten thousand clusters made each sync read tens of thousands of objects).
pub(crate) async fn project_bindings(
    store: &Arc<dyn Store>,
    projects: &[Project],
) -> Result<Vec<ProjectRoleTemplateBinding>, StoreError> {
    let mut all = Vec::new();
    for p in projects {
        all.extend(
            Api::<ProjectRoleTemplateBinding>::namespaced(store.clone(), &p.metadata.name).list().await?,
        );
    }
    Ok(all)
}

/// Runs the RBAC sync of every connected cluster until `stop`.
pub(crate) async fn run(store: Arc<dyn Store>, registration: Arc<Registration>, stop: CancellationToken) {
    let workers = ClusterWorkers::new(store.clone(), registration, RBAC_RESYNC);
    let tasks = TaskTracker::new();
    // Bindings, projects and who is a global admin (their bindings and roles).
    follow_membership(&tasks, &store, &stop, &workers);
    let w = workers.clone();
    tasks.spawn(follow(store.clone(), stop.clone(), |_: &RoleTemplate| (), move |(), _| w.poke_all()));
    // Whether admins are enabled at all.
    let w = workers.clone();
    let seen = Fingerprints::default();
    // A user's lastLogin changes on every login: only enabling, disabling and deleting count.
    let enabled = |u: &User| (u.metadata.name.clone(), u.spec.enabled);
    tasks.spawn(follow(store.clone(), stop.clone(), enabled, move |(name, enabled), deleted| {
        if seen.changed(name, (!deleted).then_some(*enabled)) {
            w.poke_all();
        }
    }));
    tasks.spawn(workers.run(Arc::new(RbacSync { store }), stop.clone()));
    tasks.close();
    tasks.wait().await;
}
