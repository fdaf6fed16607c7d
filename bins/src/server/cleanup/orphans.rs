//! The orphan sweep: at start and every [`SWEEP_EVERY`], deletes objects whose owner no longer
//! exists or is a newer object of the same name — what a crash in the middle of a clean-up, or a
//! deletion by an earlier version, left behind. Dependents are listed before their owners, so an
//! object made after the listing is never judged against an older list of owners.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rancher_core::ObjectMeta;
use rancher_core::model::{
    Cluster, ClusterRegistrationToken, ClusterRoleTemplateBinding, GlobalRoleBinding, Project,
    ProjectRoleTemplateBinding, Token, User,
};
use rancher_core::store::{Api, Store, StoreResult};
use tokio_util::sync::CancellationToken;

use super::leftovers::delete_all;
use super::owner::{self, CLUSTER_UID_ANNOTATION, PROJECT_UID_ANNOTATION};
use crate::server::proxy::membership::project_ref;

/// How often the sweep runs after the first one.
const SWEEP_EVERY: Duration = Duration::from_secs(300);
/// The first sweep waits this long after start, so it does not compete with the start itself.
const FIRST_AFTER: Duration = Duration::from_secs(2);

/// Runs the sweep until `stop`.
pub(super) async fn run(store: Arc<dyn Store>, stop: CancellationToken) {
    let mut wait = FIRST_AFTER;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        match sweep(&store).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(deleted = n, "removed objects left by deleted clusters, projects and users")
            }
            Err(e) => tracing::warn!("the orphan sweep failed (it runs again): {e}"),
        }
        wait = SWEEP_EVERY;
    }
}

/// The objects that were listed, dependents first.
#[derive(Default)]
struct Listed {
    tokens: Vec<Token>,
    grbs: Vec<GlobalRoleBinding>,
    crts: Vec<ClusterRegistrationToken>,
    crtbs: Vec<ClusterRoleTemplateBinding>,
    prtbs: Vec<ProjectRoleTemplateBinding>,
    projects: Vec<Project>,
    clusters: Vec<Cluster>,
    users: Vec<User>,
}

/// The owners, by name.
struct Owners<'a> {
    clusters: HashMap<&'a str, &'a Cluster>,
    projects: HashMap<(&'a str, &'a str), &'a Project>,
    users: HashSet<&'a str>,
}

impl Owners<'_> {
    fn cluster_owns(&self, cluster: &str, dependent: &ObjectMeta) -> bool {
        self.clusters
            .get(cluster)
            .is_some_and(|c| owner::belongs(dependent, CLUSTER_UID_ANNOTATION, &c.metadata))
    }

    fn project_owns(&self, project_id: &str, dependent: &ObjectMeta) -> bool {
        let Some((c, p)) = project_ref(project_id) else { return false };
        self.projects.get(&(c, p)).is_some_and(|project| {
            owner::belongs(dependent, PROJECT_UID_ANNOTATION, &project.metadata)
                && self.cluster_owns(c, &project.metadata)
        })
    }

    fn user_exists(&self, user_name: &str) -> bool {
        user_name.is_empty() || self.users.contains(user_name)
    }
}

async fn list(store: &Arc<dyn Store>) -> StoreResult<Listed> {
    Ok(Listed {
        tokens: Api::all(store.clone()).list().await?,
        grbs: Api::all(store.clone()).list().await?,
        crts: Api::all(store.clone()).list().await?,
        crtbs: Api::all(store.clone()).list().await?,
        prtbs: Api::all(store.clone()).list().await?,
        projects: Api::all(store.clone()).list().await?,
        clusters: Api::all(store.clone()).list().await?,
        users: Api::all(store.clone()).list().await?,
    })
}

/// The orphans among `listed`, by kind.
fn orphans(listed: &Listed) -> Listed {
    let owners = Owners {
        clusters: listed.clusters.iter().map(|c| (c.metadata.name.as_str(), c)).collect(),
        projects: listed
            .projects
            .iter()
            .map(|p| ((p.metadata.namespace.as_deref().unwrap_or_default(), p.metadata.name.as_str()), p))
            .collect(),
        users: listed.users.iter().map(|u| u.metadata.name.as_str()).collect(),
    };
    let ns = |m: &ObjectMeta| m.namespace.clone().unwrap_or_default();
    Listed {
        tokens: listed
            .tokens
            .iter()
            .filter(|t| {
                !owners.user_exists(&t.spec.user_id)
                    || (!t.spec.cluster_name.is_empty()
                        && !owners.cluster_owns(&t.spec.cluster_name, &t.metadata))
            })
            .cloned()
            .collect(),
        grbs: listed.grbs.iter().filter(|b| !owners.user_exists(&b.spec.user_name)).cloned().collect(),
        crts: listed
            .crts
            .iter()
            .filter(|c| !owners.cluster_owns(&ns(&c.metadata), &c.metadata))
            .cloned()
            .collect(),
        crtbs: listed
            .crtbs
            .iter()
            .filter(|b| {
                !owners.cluster_owns(&ns(&b.metadata), &b.metadata) || !owners.user_exists(&b.spec.user_name)
            })
            .cloned()
            .collect(),
        prtbs: listed
            .prtbs
            .iter()
            .filter(|b| {
                !owners.project_owns(&b.spec.project_name, &b.metadata)
                    || !owners.user_exists(&b.spec.user_name)
            })
            .cloned()
            .collect(),
        projects: listed
            .projects
            .iter()
            .filter(|p| !owners.cluster_owns(&ns(&p.metadata), &p.metadata))
            .cloned()
            .collect(),
        clusters: Vec::new(),
        users: Vec::new(),
    }
}

/// One sweep; returns how many objects were deleted.
async fn sweep(store: &Arc<dyn Store>) -> StoreResult<usize> {
    let listed = list(store).await?;
    let o = orphans(&listed);
    let mut deleted = 0;
    // What authenticates and registers first, then what grants, then the projects.
    deleted += delete_all(store, &o.tokens).await?;
    deleted += delete_all(store, &o.crts).await?;
    deleted += delete_all(store, &o.grbs).await?;
    deleted += delete_all(store, &o.crtbs).await?;
    deleted += delete_all(store, &o.prtbs).await?;
    deleted += delete_all(store, &o.projects).await?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{
        ClusterRoleTemplateBindingSpec, ClusterSpec, ProjectRoleTemplateBindingSpec, ProjectSpec, TokenSpec,
        UserSpec,
    };
    use rancher_core::store::MemoryStore;

    use super::*;

    #[tokio::test]
    async fn leftovers_of_deleted_and_recreated_owners_are_swept_and_the_rest_stays() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let clusters = Api::<Cluster>::all(store.clone());
        let old = clusters.create(&Cluster::new("edge", ClusterSpec::default())).await.unwrap();
        let crtbs = Api::<ClusterRoleTemplateBinding>::namespaced(store.clone(), "edge");
        let mut stale = ClusterRoleTemplateBinding::new(
            "stale",
            ClusterRoleTemplateBindingSpec { cluster_name: "edge".into(), ..Default::default() },
        );
        owner::stamp(&mut stale.metadata, CLUSTER_UID_ANNOTATION, &old.metadata);
        crtbs.create(&stale).await.unwrap();
        // `edge` is deleted without its clean-up (an earlier version, or a crash) and made again.
        clusters.delete("edge").await.unwrap();
        let new = clusters.create(&Cluster::new("edge", ClusterSpec::default())).await.unwrap();
        let mut fresh = ClusterRoleTemplateBinding::new(
            "fresh",
            ClusterRoleTemplateBindingSpec { cluster_name: "edge".into(), ..Default::default() },
        );
        owner::stamp(&mut fresh.metadata, CLUSTER_UID_ANNOTATION, &new.metadata);
        crtbs.create(&fresh).await.unwrap();

        let users = Api::<User>::all(store.clone());
        users.create(&User::new("u-here", UserSpec::default())).await.unwrap();
        let tokens = Api::<Token>::all(store.clone());
        for (name, user, cluster) in
            [("token-a", "u-here", ""), ("token-b", "u-gone", ""), ("token-c", "u-here", "gone")]
        {
            let t = Token::new(
                name,
                TokenSpec { user_id: user.into(), cluster_name: cluster.into(), ..Default::default() },
            );
            tokens.create(&t).await.unwrap();
        }
        let projects = Api::<Project>::namespaced(store.clone(), "edge");
        let mut p = Project::new("p-web", ProjectSpec { cluster_name: "edge".into(), ..Default::default() });
        owner::stamp(&mut p.metadata, CLUSTER_UID_ANNOTATION, &new.metadata);
        let p = projects.create(&p).await.unwrap();
        let prtbs = Api::<ProjectRoleTemplateBinding>::namespaced(store.clone(), "p-web");
        for (name, project) in [("keep", "edge:p-web"), ("lost", "edge:p-gone")] {
            let mut b = ProjectRoleTemplateBinding::new(
                name,
                ProjectRoleTemplateBindingSpec { project_name: project.into(), ..Default::default() },
            );
            owner::stamp(&mut b.metadata, PROJECT_UID_ANNOTATION, &p.metadata);
            prtbs.create(&b).await.unwrap();
        }

        assert_eq!(sweep(&store).await.unwrap(), 4);
        let names = |v: Vec<String>| v;
        assert_eq!(
            names(crtbs.list().await.unwrap().into_iter().map(|b| b.metadata.name).collect()),
            ["fresh"]
        );
        assert_eq!(
            names(tokens.list().await.unwrap().into_iter().map(|b| b.metadata.name).collect()),
            ["token-a"]
        );
        assert_eq!(
            names(prtbs.list().await.unwrap().into_iter().map(|b| b.metadata.name).collect()),
            ["keep"]
        );
        assert_eq!(projects.list().await.unwrap().len(), 1);
        assert_eq!(sweep(&store).await.unwrap(), 0, "nothing more to do");
    }
}
