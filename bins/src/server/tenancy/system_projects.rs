//! The Default and System projects every cluster has, as in Rancher: [`ensure_projects`] creates them
//! for each live cluster (once: a restart finds them by their labels). It runs on one replica at a
//! time, among the controllers that run once; a duplicate that a change of leader could still make is
//! removed. [`run`], on the replica that holds the cluster's session, puts `default` into Default and
//! the system namespaces into System on the cluster's first sync while connected, through the tunnel —
//! unless a namespace is in a project already. A deleted cluster's projects go with the cluster's
//! clean-up.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use rancher_auth::rbac_render::PROJECT_ID_ANNOTATION;
use rancher_core::controller::{Action, Controller, ObjectRef};
use rancher_core::model::{Cluster, Project, ProjectSpec};
use rancher_core::store::{Api, Store, StoreError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::SyncError;
use super::project_names::ProjectNames;
use super::workers::{BoxFut, ClusterSync, ClusterWorkers, follow};
use crate::server::cleanup::leftovers;
use crate::server::cleanup::owner::{self, CLUSTER_UID_ANNOTATION};
use crate::server::proxy::membership::{project_counts, project_ref};
use crate::server::registration::Registration;

/// The label of a cluster's Default project (value `"true"`).
pub(crate) const DEFAULT_PROJECT_LABEL: &str = "authz.management.cattle.io/default-project";
/// The label of a cluster's System project (value `"true"`).
pub(crate) const SYSTEM_PROJECT_LABEL: &str = "authz.management.cattle.io/system-project";
/// On a Default or System project once its namespaces were put into it: from then on, where those
/// namespaces are is the users' choice (moving `default` out stays moved).
pub(crate) const ASSIGNED_ANNOTATION: &str = "management.cattle.io/namespaces-assigned";
/// How often every cluster is checked even when nothing was seen to change.
const RESYNC: Duration = Duration::from_secs(300);

/// One of the two projects every cluster has.
pub(crate) struct Special {
    /// Its label (value `"true"`).
    pub(crate) label: &'static str,
    /// Its display name.
    pub(crate) display_name: &'static str,
    /// The namespaces it gets on the cluster's first connected sync.
    pub(crate) namespaces: &'static [&'static str],
}

/// The Default project (holding `default`) and the System project (the system namespaces).
pub(crate) const SPECIAL_PROJECTS: [Special; 2] = [
    Special { label: DEFAULT_PROJECT_LABEL, display_name: "Default", namespaces: &["default"] },
    Special {
        label: SYSTEM_PROJECT_LABEL,
        display_name: "System",
        namespaces: &["kube-system", "kube-public", "kube-node-lease", "cattle-system"],
    },
];

fn is(project: &Project, special: &Special) -> bool {
    project.metadata.labels.get(special.label).is_some_and(|v| v == "true")
}

/// The live projects of `cluster` (as it exists now) that are `special`, oldest first.
fn specials_of<'p>(projects: &'p [Project], cluster: &Cluster, special: &Special) -> Vec<&'p Project> {
    let mut found: Vec<&Project> = projects
        .iter()
        .filter(|p| is(p, special) && project_counts(&p.metadata, &cluster.metadata))
        .collect();
    found.sort_by(|a, b| {
        (a.metadata.creation_timestamp, &a.metadata.name)
            .cmp(&(b.metadata.creation_timestamp, &b.metadata.name))
    });
    found
}

/// Runs until `stop`: puts the namespaces of the clusters connected here into their Default and
/// System projects.
pub(crate) async fn run(store: Arc<dyn Store>, registration: Arc<Registration>, stop: CancellationToken) {
    let tasks = TaskTracker::new();
    let workers = ClusterWorkers::new(store.clone(), registration, RESYNC);
    let w = workers.clone();
    // Kept of each: the cluster of a special project (`None` for the others).
    let special_cluster = |p: &Project| {
        SPECIAL_PROJECTS
            .iter()
            .any(|s| is(p, s))
            .then(|| p.metadata.namespace.clone().unwrap_or_else(|| p.spec.cluster_name.clone()))
    };
    tasks.spawn(follow(store.clone(), stop.clone(), special_cluster, move |cluster, _| {
        if let Some(c) = cluster {
            w.poke(c);
        }
    }));
    tasks.spawn(workers.run(Arc::new(SystemNamespaces { store }), stop));
    tasks.close();
    tasks.wait().await;
}

/// Runs until `stop`: gives every live cluster its Default and System project. Reconciles a cluster
/// when it changes, when one of its Default or System projects changes or goes (a duplicate appears,
/// someone deletes one), and every [`RESYNC`]; store failures are retried with the controller's
/// backoff. Run it on one replica at a time: two would each make the projects a new cluster lacks.
pub(crate) async fn ensure_projects(
    store: Arc<dyn Store>,
    names: Arc<ProjectNames>,
    stop: CancellationToken,
) {
    let ctx = Ctx { store: store.clone(), names };
    let special_of_cluster = |p: &Project| {
        let special = SPECIAL_PROJECTS.iter().any(|s| is(p, s));
        special.then(|| ObjectRef::new(p.metadata.namespace.as_deref().unwrap_or(&p.spec.cluster_name)))
    };
    Controller::new(Api::<Cluster>::all(store.clone()))
        .workers(WORKERS)
        .resync(Some(RESYNC))
        .watches(Api::<Project>::all(store.clone()), special_of_cluster)
        .run(ensure_cluster, Arc::new(ctx), stop)
        .await;
}

/// How many clusters' projects are made at once. Clusters are independent (each one's projects live
/// in its own namespace, one reconcile per cluster at a time); one at a time, three replicas over
/// etcd had made 11,792 of the 20,000 projects a fleet of 10,000 needs seven minutes after all of it
/// was active.
const WORKERS: usize = 16;

/// What the controller of special projects works with.
struct Ctx {
    store: Arc<dyn Store>,
    names: Arc<ProjectNames>,
}

/// Makes sure the live cluster `cluster` has exactly one Default and one System project.
async fn ensure_cluster(cluster: Arc<Cluster>, ctx: Arc<Ctx>) -> Result<Action, StoreError> {
    if cluster.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let projects = Api::<Project>::namespaced(ctx.store.clone(), &cluster.metadata.name).list().await?;
    for special in &SPECIAL_PROJECTS {
        ensure_one(&ctx, &projects, &cluster, special).await?;
    }
    Ok(Action::await_change())
}

async fn ensure_one(
    ctx: &Ctx,
    projects: &[Project],
    cluster: &Cluster,
    special: &Special,
) -> Result<(), StoreError> {
    let (store, name) = (&ctx.store, cluster.metadata.name.as_str());
    let found = specials_of(projects, cluster, special);
    // Two replicas may both have made one (across a change of leader): the oldest stays.
    for extra in found.iter().skip(1) {
        tracing::info!(cluster = %name, project = %extra.metadata.name, "removing a duplicate {} project", special.display_name);
        if leftovers::delete_exact(store, *extra).await? {
            leftovers::remove_project_leftovers(store, extra).await?;
        }
    }
    if !found.is_empty() {
        return Ok(());
    }
    // The cluster as it is now: not deleted meanwhile, nor made again under its name.
    match Api::<Cluster>::all(store.clone()).get_opt(name).await? {
        Some(c) if c.metadata.uid == cluster.metadata.uid && c.metadata.deletion_timestamp.is_none() => {}
        _ => return Ok(()),
    }
    let spec = ProjectSpec {
        display_name: special.display_name.to_owned(),
        cluster_name: name.to_owned(),
        description: format!("The cluster's {} project, made by the server.", special.display_name),
        ..Default::default()
    };
    let mut project = Project::new(&ctx.names.new_name().await?, spec);
    project.metadata.namespace = Some(name.to_owned());
    project.metadata.labels.insert(special.label.to_owned(), "true".to_owned());
    owner::stamp(&mut project.metadata, CLUSTER_UID_ANNOTATION, &cluster.metadata);
    let made = Api::<Project>::namespaced(store.clone(), name).create(&project).await?;
    tracing::info!(cluster = %name, project = %made.metadata.name, "created the {} project", special.display_name);
    Ok(())
}

/// Puts a connected cluster's `default` and system namespaces into its Default and System projects.
struct SystemNamespaces {
    store: Arc<dyn Store>,
}

fn downstream(action: &'static str, name: &str, source: kube::Error) -> SyncError {
    SyncError::Downstream {
        action,
        kind: "Namespace".into(),
        name: name.to_owned(),
        source: Box::new(source),
    }
}

impl SystemNamespaces {
    async fn assign(&self, cluster: &Cluster, client: &kube::Client) -> Result<(), SyncError> {
        let name = cluster.metadata.name.as_str();
        let projects = Api::<Project>::namespaced(self.store.clone(), name).list().await?;
        let live = |id: &str| {
            project_ref(id).is_some_and(|(c, p)| {
                c == name
                    && projects
                        .iter()
                        .any(|x| x.metadata.name == p && project_counts(&x.metadata, &cluster.metadata))
            })
        };
        let namespaces = kube::Api::<Namespace>::all(client.clone());
        for special in &SPECIAL_PROJECTS {
            let Some(project) = specials_of(&projects, cluster, special).first().copied() else { continue };
            if project.metadata.annotations.contains_key(ASSIGNED_ANNOTATION) {
                continue;
            }
            let id = format!("{name}:{}", project.metadata.name);
            for ns in special.namespaces {
                let Some(found) = namespaces.get_opt(ns).await.map_err(|e| downstream("reading", ns, e))?
                else {
                    continue;
                };
                let current = found.metadata.annotations.as_ref().and_then(|a| a.get(PROJECT_ID_ANNOTATION));
                if found.metadata.deletion_timestamp.is_some() || current.is_some_and(|c| live(c)) {
                    continue;
                }
                let patch = serde_json::json!({"metadata": {"annotations": {PROJECT_ID_ANNOTATION: id}}});
                namespaces
                    .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| downstream("annotating", ns, e))?;
                tracing::info!(cluster = %name, namespace = %ns, project = %id, "namespace put into the {} project", special.display_name);
            }
            let mut done = project.clone();
            done.metadata.annotations.insert(ASSIGNED_ANNOTATION.to_owned(), "true".to_owned());
            Api::<Project>::namespaced(self.store.clone(), name).update(&done).await?;
        }
        Ok(())
    }
}

impl ClusterSync for SystemNamespaces {
    fn name(&self) -> &'static str {
        "system-projects"
    }

    fn sync<'a>(&'a self, cluster: &'a Cluster, client: kube::Client) -> BoxFut<'a, Result<(), SyncError>> {
        Box::pin(async move { self.assign(cluster, &client).await })
    }
}

#[cfg(test)]
mod tests {
    use rancher_core::model::ClusterSpec;
    use rancher_core::store::MemoryStore;

    use super::*;

    /// What the controller does for every cluster, in one pass.
    async fn ensure_all(store: &Arc<dyn Store>) -> Result<(), StoreError> {
        for c in Api::<Cluster>::all(store.clone()).list().await? {
            let ctx = Ctx { store: store.clone(), names: ProjectNames::start(store.clone()) };
            ensure_cluster(Arc::new(c), Arc::new(ctx)).await?;
        }
        Ok(())
    }

    async fn cluster(store: &Arc<dyn Store>, name: &str) -> Cluster {
        let c = Cluster::new(name, ClusterSpec::default());
        Api::<Cluster>::all(store.clone()).create(&c).await.unwrap()
    }

    async fn specials(store: &Arc<dyn Store>, cluster: &str) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = Api::<Project>::namespaced(store.clone(), cluster)
            .list()
            .await
            .unwrap()
            .into_iter()
            .filter(|p| SPECIAL_PROJECTS.iter().any(|s| is(p, s)))
            .map(|p| (p.spec.display_name, p.metadata.name))
            .collect();
        found.sort();
        found
    }

    #[tokio::test]
    async fn each_live_cluster_gets_one_of_each_and_keeps_it() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        cluster(&store, "a").await;
        let b = cluster(&store, "b").await;
        ensure_all(&store).await.unwrap();
        let first = specials(&store, "a").await;
        assert_eq!(first.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>(), ["Default", "System"]);
        assert!(first.iter().all(|(_, n)| n.starts_with("p-") && n.len() == 7), "{first:?}");
        assert_eq!(specials(&store, "b").await.len(), 2);
        // Again (a restart): the same projects, no new ones.
        ensure_all(&store).await.unwrap();
        assert_eq!(specials(&store, "a").await, first);
        // A duplicate (two replicas raced): the newer one goes.
        let mut dup = Api::<Project>::namespaced(store.clone(), "a").get(&first[0].1).await.unwrap();
        dup.metadata = rancher_core::ObjectMeta {
            name: "p-zzzzz".into(),
            namespace: Some("a".into()),
            labels: dup.metadata.labels.clone(),
            annotations: dup.metadata.annotations.clone(),
            ..Default::default()
        };
        Api::<Project>::namespaced(store.clone(), "a").create(&dup).await.unwrap();
        ensure_all(&store).await.unwrap();
        assert_eq!(specials(&store, "a").await, first);
        // A cluster being deleted gets none back.
        for (_, p) in specials(&store, "b").await {
            Api::<Project>::namespaced(store.clone(), "b").delete(&p).await.unwrap();
        }
        let mut terminating = b.clone();
        terminating.metadata.finalizers.push("x".into());
        let terminating = Api::<Cluster>::all(store.clone()).update(&terminating).await.unwrap();
        Api::<Cluster>::all(store.clone()).delete(&terminating.metadata.name).await.unwrap();
        ensure_all(&store).await.unwrap();
        assert!(specials(&store, "b").await.is_empty());
    }
}
