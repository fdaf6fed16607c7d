//! Lifecycle as a security property: deleting a cluster, project or user removes everything that
//! granted, registered or authenticated through it, and an object created later under the same name
//! inherits nothing.
//!
//! * **Clusters** carry the finalizer [`CLUSTER_FINALIZER`] from their creation (clusters made before
//!   it existed get it from the controller). Deleting one only marks it Terminating — the proxy, the
//!   agents' authorizer and the sync workers already treat it as gone — and the [`cluster`] controller
//!   then closes its agents' sessions, drops its downstream access and cached proxy client, removes
//!   our records and RBAC downstream (best effort: the cluster may be unreachable), deletes its
//!   registration tokens, role template bindings, projects and their bindings, and cluster-scoped
//!   tokens, and only then removes the finalizer. A crash midway resumes at the next start (the
//!   cluster is still Terminating); every step is idempotent.
//! * **Projects and users** are deleted at once; their bindings (and a user's tokens) are removed
//!   right after ([`leftovers`]).
//! * What a crash or an earlier version left behind — objects whose owner is gone, or is a newer
//!   object of the same name — is removed by the [`orphans`] sweep, at start and periodically.
//! * Until then, and in the races no clean-up can close (a binding written just as its cluster is
//!   deleted), [`owner`] makes such leftovers inert: objects record their owner's uid and every reader
//!   checks it.

mod cluster;
pub(crate) mod leftovers;
mod orphans;
pub(crate) mod owner;

use std::sync::Arc;

use rancher_auth::proxy::ClusterClients;
use rancher_core::store::Store;
use tokio_util::sync::CancellationToken;

use crate::server::registration::Registration;

/// The finalizer that holds a deleted cluster until its clean-up is done.
pub(crate) const CLUSTER_FINALIZER: &str = "controller.cattle.io/cluster-cleanup";

/// Runs the cluster clean-up controller and the orphan sweep until `stop`.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    registration: Arc<Registration>,
    clients: ClusterClients,
    stop: CancellationToken,
) {
    // In a JoinSet: if this task is aborted, the sweep goes with it.
    let mut sweep = tokio::task::JoinSet::new();
    sweep.spawn(orphans::run(store.clone(), stop.clone()));
    cluster::run(store, registration, clients, stop).await;
    while let Some(done) = sweep.join_next().await {
        if let Err(e) = done {
            tracing::error!("the orphan sweep ended abnormally: {e}");
        }
    }
}
