//! The cluster clean-up controller: keeps [`CLUSTER_FINALIZER`] on every live cluster and, once a
//! cluster is Terminating, removes everything of it before letting the store delete it.

use std::sync::Arc;
use std::time::Duration;

use rancher_auth::proxy::ClusterClients;
use rancher_core::controller::{Action, Controller};
use rancher_core::model::{Cluster, ClusterRegistrationToken, ClusterRoleTemplateBinding, Project, Token};
use rancher_core::store::{Api, Store, StoreError};
use tokio_util::sync::CancellationToken;

use super::CLUSTER_FINALIZER;
use super::leftovers::{delete_all, remove_project_leftovers};
use crate::server::registration::Registration;

/// How long the downstream part of a clean-up may take before it is given up (the cluster may be
/// unreachable; its agent is disconnected right after either way).
const DOWNSTREAM_WAIT: Duration = Duration::from_secs(15);
/// A sync that was already running when the cluster was deleted may still write downstream: the
/// downstream removal runs again after this pause to catch it.
const SECOND_PASS_AFTER: Duration = Duration::from_millis(500);

/// What the controller works with.
struct Ctx {
    store: Arc<dyn Store>,
    registration: Arc<Registration>,
    clients: ClusterClients,
}

/// Runs the controller until `stop`.
pub(super) async fn run(
    store: Arc<dyn Store>,
    registration: Arc<Registration>,
    clients: ClusterClients,
    stop: CancellationToken,
) {
    let ctx = Arc::new(Ctx { store: store.clone(), registration, clients });
    Controller::new(Api::<Cluster>::all(store))
        .workers(2)
        .resync(Some(Duration::from_secs(600)))
        .run(reconcile, ctx, stop)
        .await;
}

async fn reconcile(cluster: Arc<Cluster>, ctx: Arc<Ctx>) -> Result<Action, StoreError> {
    let ours = cluster.metadata.finalizers.iter().any(|f| f == CLUSTER_FINALIZER);
    let api = Api::<Cluster>::all(ctx.store.clone());
    if cluster.metadata.deletion_timestamp.is_none() {
        if !ours {
            // A cluster made before the finalizer existed (or by another writer): hold it from now on.
            let mut updated = (*cluster).clone();
            updated.metadata.finalizers.push(CLUSTER_FINALIZER.to_owned());
            api.update(&updated).await?;
        }
        return Ok(Action::await_change());
    }
    if !ours {
        return Ok(Action::await_change());
    }
    clean_up(&cluster, &ctx).await?;
    let mut done = (*cluster).clone();
    done.metadata.finalizers.retain(|f| f != CLUSTER_FINALIZER);
    // A Conflict retries the whole clean-up, which is idempotent.
    match api.update(&done).await {
        Ok(_) | Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    tracing::info!(cluster = %cluster.metadata.name, "cluster deleted and cleaned up");
    Ok(Action::await_change())
}

/// Everything of a Terminating cluster, downstream first (it needs the agent's session), then in
/// this process, then in the store.
async fn clean_up(cluster: &Cluster, ctx: &Ctx) -> Result<(), StoreError> {
    let name = cluster.metadata.name.as_str();
    let reg = &ctx.registration;
    let uid = cluster.metadata.uid.as_str();
    // Only through a session of this very cluster; without one there is nothing to reach.
    let access =
        reg.access(name).filter(|a| a.cluster_uid == uid && !reg.session_keys_for(name, uid).is_empty());
    if let Some(access) = access {
        match reg.client_with(name, &access) {
            Ok(client) => {
                for pass in 0..2 {
                    if pass > 0 {
                        tokio::time::sleep(SECOND_PASS_AFTER).await;
                    }
                    let removal = async {
                        crate::server::ace_sync::remove_records(&client).await?;
                        crate::server::tenancy::remove_rendered(&client).await
                    };
                    match tokio::time::timeout(DOWNSTREAM_WAIT, removal).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(cluster = name, "removing our objects downstream: {e}");
                            break;
                        }
                        Err(_) => {
                            tracing::warn!(cluster = name, "removing our objects downstream timed out");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(cluster = name, "no client to clean the cluster up: {e}"),
        }
    }
    let closed = reg.forget_cluster(name);
    ctx.clients.invalidate(name);
    tracing::info!(cluster = name, sessions = closed, "closed the deleted cluster's agent sessions");

    let store = &ctx.store;
    delete_all(store, &Api::<ClusterRegistrationToken>::namespaced(store.clone(), name).list().await?)
        .await?;
    delete_all(store, &Api::<ClusterRoleTemplateBinding>::namespaced(store.clone(), name).list().await?)
        .await?;
    for project in Api::<Project>::namespaced(store.clone(), name).list().await? {
        remove_project_leftovers(store, &project).await?;
        delete_all(store, std::slice::from_ref(&project)).await?;
    }
    let tokens: Vec<Token> = Api::<Token>::all(store.clone())
        .list()
        .await?
        .into_iter()
        .filter(|t| t.spec.cluster_name == name)
        .collect();
    delete_all(store, &tokens).await?;
    // An agent that was being authorized while all this ran may have registered since.
    reg.forget_cluster(name);
    ctx.clients.invalidate(name);
    Ok(())
}
