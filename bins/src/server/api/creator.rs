//! The creator of a project owns it, as in Rancher: a `project-owner` binding named
//! `creator-<user>` in the project, made with it. (A cluster's creator gets `cluster-owner` the same
//! way, in [`super::clusters`].) A global administrator, who manages every project already, gets none:
//! it would only render redundant RBAC downstream.

use rancher_core::model::{Project, ProjectRoleTemplateBinding, ProjectRoleTemplateBindingSpec};
use rancher_core::store::{Api, StoreError};

use super::kind::Ctx;
use crate::server::auth::is_cluster_admin;
use crate::server::cleanup::owner::{self, PROJECT_UID_ANNOTATION};
use crate::server::error::ApiResult;

/// The role template a project's creator is given.
pub(crate) const PROJECT_CREATOR_ROLE: &str = "project-owner";

/// Makes the caller the owner of the project they just created.
pub(crate) async fn make_project_owner(cx: &Ctx<'_>, project: &Project) -> ApiResult<()> {
    if is_cluster_admin(&cx.caller.rules) {
        return Ok(());
    }
    let cluster = project.metadata.namespace.as_deref().unwrap_or(&project.spec.cluster_name);
    let mut prtb = ProjectRoleTemplateBinding::new(
        &format!("creator-{}", cx.caller.user_id()),
        ProjectRoleTemplateBindingSpec {
            user_name: cx.caller.user_id().to_owned(),
            project_name: format!("{cluster}:{}", project.metadata.name),
            role_template_name: PROJECT_CREATOR_ROLE.into(),
            ..Default::default()
        },
    );
    owner::stamp(&mut prtb.metadata, PROJECT_UID_ANNOTATION, &project.metadata);
    match Api::<ProjectRoleTemplateBinding>::namespaced(cx.state.store.clone(), &project.metadata.name)
        .create(&prtb)
        .await
    {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
