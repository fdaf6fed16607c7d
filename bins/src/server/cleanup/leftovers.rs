//! Removing what belonged to a deleted project or user: the project's role template bindings; the
//! user's tokens, global role bindings and cluster and project role template bindings. Each object is
//! deleted only if it is still the one that was read (uid precondition), so an object made meanwhile
//! under the same name is never removed by mistake.

use std::sync::Arc;

use rancher_core::Resource;
use rancher_core::model::{
    ClusterRoleTemplateBinding, GlobalRoleBinding, Project, ProjectRoleTemplateBinding, Token, User,
};
use rancher_core::store::{Api, Preconditions, Store, StoreError, StoreResult};

/// Deletes `obj` if it still exists with the same uid. Returns whether it was deleted.
pub(crate) async fn delete_exact<K: Resource>(store: &Arc<dyn Store>, obj: &K) -> StoreResult<bool> {
    let meta = obj.meta();
    let pre = Preconditions { uid: Some(meta.uid.clone()), ..Default::default() };
    match store.delete(K::PLURAL, meta.namespace.as_deref(), &meta.name, pre).await {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes every object of `objects`; the first error is returned after trying them all.
pub(crate) async fn delete_all<K: Resource>(store: &Arc<dyn Store>, objects: &[K]) -> StoreResult<usize> {
    let (mut deleted, mut first_error) = (0, None);
    for obj in objects {
        match delete_exact(store, obj).await {
            Ok(true) => deleted += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(kind = K::KIND, name = %obj.meta().name, "deleting a leftover: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(deleted),
    }
}

/// The project role template bindings of the project `<cluster>:<project>`, whichever incarnation of
/// it they were made for.
pub(crate) async fn project_bindings(
    store: &Arc<dyn Store>,
    cluster: &str,
    project: &str,
) -> StoreResult<Vec<ProjectRoleTemplateBinding>> {
    let id = format!("{cluster}:{project}");
    // PRTBs live in the namespace named by the project (unique in the server since names are
    // generated, but a binding of an older store may name another cluster's namesake): the project
    // id tells them apart.
    let all = Api::<ProjectRoleTemplateBinding>::namespaced(store.clone(), project).list().await?;
    Ok(all.into_iter().filter(|b| b.spec.project_name == id).collect())
}

/// Removes the bindings of a deleted project. Returns how many were deleted.
///
/// # Errors
/// Store errors (after trying every binding).
pub(crate) async fn remove_project_leftovers(
    store: &Arc<dyn Store>,
    project: &Project,
) -> StoreResult<usize> {
    let cluster = project.metadata.namespace.as_deref().unwrap_or(&project.spec.cluster_name);
    let bindings = project_bindings(store, cluster, &project.metadata.name).await?;
    delete_all(store, &bindings).await
}

/// Whether a binding's subject is the user `user` (by id, or by one of their principals).
fn names_user(user: &User, user_name: &str, user_principal: &str) -> bool {
    (!user_name.is_empty() && user_name == user.metadata.name)
        || (!user_principal.is_empty() && user.spec.principal_ids.iter().any(|p| p == user_principal))
}

/// Removes a deleted user's tokens and bindings. Returns how many objects were deleted.
///
/// # Errors
/// Store errors (after trying every object).
pub(crate) async fn remove_user_leftovers(store: &Arc<dyn Store>, user: &User) -> StoreResult<usize> {
    let id = user.metadata.name.as_str();
    let tokens: Vec<Token> =
        Api::<Token>::all(store.clone()).list().await?.into_iter().filter(|t| t.spec.user_id == id).collect();
    let grbs: Vec<GlobalRoleBinding> = Api::<GlobalRoleBinding>::all(store.clone())
        .list()
        .await?
        .into_iter()
        .filter(|b| names_user(user, &b.spec.user_name, ""))
        .collect();
    let crtbs: Vec<ClusterRoleTemplateBinding> = Api::<ClusterRoleTemplateBinding>::all(store.clone())
        .list()
        .await?
        .into_iter()
        .filter(|b| names_user(user, &b.spec.user_name, &b.spec.user_principal_name))
        .collect();
    let prtbs: Vec<ProjectRoleTemplateBinding> = Api::<ProjectRoleTemplateBinding>::all(store.clone())
        .list()
        .await?
        .into_iter()
        .filter(|b| names_user(user, &b.spec.user_name, &b.spec.user_principal_name))
        .collect();
    // Tokens first: they are what authenticates.
    let results = [
        delete_all(store, &tokens).await,
        delete_all(store, &grbs).await,
        delete_all(store, &crtbs).await,
        delete_all(store, &prtbs).await,
    ];
    let mut deleted = 0;
    for r in results {
        deleted += r?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{
        ClusterRoleTemplateBindingSpec, GlobalRoleBindingSpec, ProjectRoleTemplateBindingSpec, ProjectSpec,
        TokenSpec, UserSpec,
    };
    use rancher_core::store::MemoryStore;

    use super::*;

    #[tokio::test]
    async fn a_users_tokens_and_bindings_go_and_nobody_elses() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut u = User::new("u-gone", UserSpec { enabled: true, ..Default::default() });
        u.spec.principal_ids = vec!["local://u-gone".into()];
        for (name, user) in [("token-a", "u-gone"), ("token-b", "u-stay")] {
            let t = Token::new(name, TokenSpec { user_id: user.into(), ..Default::default() });
            Api::<Token>::all(store.clone()).create(&t).await.unwrap();
        }
        for (name, user) in [("g1", "u-gone"), ("g2", "u-stay")] {
            let b = GlobalRoleBinding::new(
                name,
                GlobalRoleBindingSpec {
                    user_name: user.into(),
                    global_role_name: "user".into(),
                    ..Default::default()
                },
            );
            Api::<GlobalRoleBinding>::all(store.clone()).create(&b).await.unwrap();
        }
        for (name, user, principal) in
            [("c1", "u-gone", ""), ("c2", "", "local://u-gone"), ("c3", "u-stay", "")]
        {
            let b = ClusterRoleTemplateBinding::new(
                name,
                ClusterRoleTemplateBindingSpec {
                    user_name: user.into(),
                    user_principal_name: principal.into(),
                    cluster_name: "edge".into(),
                    ..Default::default()
                },
            );
            Api::<ClusterRoleTemplateBinding>::namespaced(store.clone(), "edge").create(&b).await.unwrap();
        }
        let b = ProjectRoleTemplateBinding::new(
            "p1",
            ProjectRoleTemplateBindingSpec {
                user_name: "u-gone".into(),
                project_name: "edge:p-x".into(),
                ..Default::default()
            },
        );
        Api::<ProjectRoleTemplateBinding>::namespaced(store.clone(), "p-x").create(&b).await.unwrap();

        assert_eq!(remove_user_leftovers(&store, &u).await.unwrap(), 5);
        let names = |v: Vec<String>| v;
        let tokens = Api::<Token>::all(store.clone()).list().await.unwrap();
        assert_eq!(names(tokens.into_iter().map(|t| t.metadata.name).collect()), ["token-b"]);
        let crtbs = Api::<ClusterRoleTemplateBinding>::all(store.clone()).list().await.unwrap();
        assert_eq!(names(crtbs.into_iter().map(|t| t.metadata.name).collect()), ["c3"]);
        assert_eq!(Api::<GlobalRoleBinding>::all(store.clone()).list().await.unwrap().len(), 1);
        assert!(Api::<ProjectRoleTemplateBinding>::all(store.clone()).list().await.unwrap().is_empty());
        assert_eq!(remove_user_leftovers(&store, &u).await.unwrap(), 0, "idempotent");
    }

    #[tokio::test]
    async fn a_projects_bindings_go_but_not_those_of_its_namesake_in_another_cluster() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        for (name, project) in [("mine", "a:p-web"), ("other", "b:p-web")] {
            let b = ProjectRoleTemplateBinding::new(
                name,
                ProjectRoleTemplateBindingSpec {
                    user_name: "u".into(),
                    project_name: project.into(),
                    ..Default::default()
                },
            );
            Api::<ProjectRoleTemplateBinding>::namespaced(store.clone(), "p-web").create(&b).await.unwrap();
        }
        let mut p = Project::new("p-web", ProjectSpec { cluster_name: "a".into(), ..Default::default() });
        p.metadata.namespace = Some("a".into());
        assert_eq!(remove_project_leftovers(&store, &p).await.unwrap(), 1);
        let left = Api::<ProjectRoleTemplateBinding>::all(store.clone()).list().await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].metadata.name, "other");
    }
}
