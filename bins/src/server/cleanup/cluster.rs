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

#[cfg(test)]
mod tests {
    use rancher_auth::proxy::{Forward, ForwardConfig, StaticUpstreams};
    use rancher_core::model::{
        ClusterRoleTemplateBindingSpec, ClusterSpec, ProjectRoleTemplateBinding,
        ProjectRoleTemplateBindingSpec, ProjectSpec, TokenSpec,
    };
    use rancher_core::store::MemoryStore;

    use super::*;

    async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !f().await {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A cluster with a CRTB, a project with a PRTB, and a token scoped to it.
    async fn cluster_with_dependents(store: &Arc<dyn Store>, name: &str, finalizer: bool) {
        let mut c = Cluster::new(name, ClusterSpec::default());
        if finalizer {
            c.metadata.finalizers.push(CLUSTER_FINALIZER.to_owned());
        }
        Api::<Cluster>::all(store.clone()).create(&c).await.unwrap();
        let crtb = ClusterRoleTemplateBinding::new(
            "member",
            ClusterRoleTemplateBindingSpec {
                user_name: "u-a".into(),
                cluster_name: name.into(),
                ..Default::default()
            },
        );
        Api::<ClusterRoleTemplateBinding>::namespaced(store.clone(), name).create(&crtb).await.unwrap();
        let p = Project::new("p-web", ProjectSpec { cluster_name: name.into(), ..Default::default() });
        Api::<Project>::namespaced(store.clone(), name).create(&p).await.unwrap();
        let prtb = ProjectRoleTemplateBinding::new(
            &format!("in-{name}"),
            ProjectRoleTemplateBindingSpec {
                user_name: "u-a".into(),
                project_name: format!("{name}:p-web"),
                ..Default::default()
            },
        );
        Api::<ProjectRoleTemplateBinding>::namespaced(store.clone(), "p-web").create(&prtb).await.unwrap();
        let t = Token::new(
            &format!("token-{name}"),
            TokenSpec { user_id: "u-a".into(), cluster_name: name.into(), ..Default::default() },
        );
        Api::<Token>::all(store.clone()).create(&t).await.unwrap();
    }

    async fn count(store: &Arc<dyn Store>, cluster: &str) -> usize {
        let crtbs =
            Api::<ClusterRoleTemplateBinding>::namespaced(store.clone(), cluster).list().await.unwrap();
        let projects = Api::<Project>::namespaced(store.clone(), cluster).list().await.unwrap();
        let prtbs = Api::<ProjectRoleTemplateBinding>::all(store.clone()).list().await.unwrap();
        let tokens = Api::<Token>::all(store.clone()).list().await.unwrap();
        crtbs.len()
            + projects.len()
            + prtbs.iter().filter(|b| b.spec.project_name.starts_with(&format!("{cluster}:"))).count()
            + tokens.iter().filter(|t| t.spec.cluster_name == cluster).count()
    }

    #[tokio::test]
    async fn a_deleted_cluster_is_held_until_everything_of_it_is_gone_even_across_a_restart() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let reg = Arc::new(
            Registration::new(
                store.clone(),
                "https://127.0.0.1:1".into(),
                "",
                "img".into(),
                rancher_tunnel::Metrics::unregistered(),
            )
            .unwrap(),
        );
        let clients = || Forward::new(StaticUpstreams::new(), ForwardConfig::default()).clients();
        let clusters = Api::<Cluster>::all(store.clone());
        cluster_with_dependents(&store, "edge", true).await;
        cluster_with_dependents(&store, "other", true).await;
        cluster_with_dependents(&store, "legacy", false).await;
        // Deleted while no controller runs (it crashed, or the server was down): Terminating.
        clusters.delete("edge").await.unwrap();
        assert!(clusters.get("edge").await.unwrap().metadata.deletion_timestamp.is_some());

        let stop = CancellationToken::new();
        let running = tokio::spawn(run(store.clone(), reg.clone(), clients(), stop.clone()));
        until("the Terminating cluster is cleaned up and released", async || {
            clusters.get_opt("edge").await.unwrap().is_none()
        })
        .await;
        assert_eq!(count(&store, "edge").await, 0, "everything of edge is gone");
        assert_eq!(count(&store, "other").await, 4, "nothing of other is touched");
        until("a cluster from before the finalizer gets it", async || {
            clusters.get("legacy").await.unwrap().metadata.finalizers.iter().any(|f| f == CLUSTER_FINALIZER)
        })
        .await;
        clusters.delete("legacy").await.unwrap();
        until("the legacy cluster is cleaned up too", async || {
            clusters.get_opt("legacy").await.unwrap().is_none()
        })
        .await;
        assert_eq!(count(&store, "legacy").await, 0);
        stop.cancel();
        running.await.unwrap();
    }
}
