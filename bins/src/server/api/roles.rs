//! Global roles and their bindings, role templates, and the cluster and project role template bindings:
//! their validation, and where each write asks [`escalation`] whether the caller holds what it
//! grants.

use async_trait::async_trait;
use rancher_core::Resource;
use rancher_core::model::{
    ClusterRoleTemplateBinding, GlobalRole, GlobalRoleBinding, Project, ProjectRoleTemplateBinding,
    RoleTemplate, User,
};
use rancher_core::store::Api;
use serde_json::{Map, Value};

use super::clusters::live_cluster;
use super::kind::{ApiKind, Ctx, generated_name};
use super::rancher_shape::{
    self, BINDING_NAME, CLUSTER_ID, GROUP_PRINCIPAL_ID, PROJECT_ID, ROLE_TEMPLATE_ID, USER_ID,
};
use crate::server::cleanup::owner::{self, CLUSTER_UID_ANNOTATION, PROJECT_UID_ANNOTATION};
use crate::server::error::{ApiError, ApiResult};
use crate::server::services::access::escalation;
use crate::server::services::access::{BindingWrite, GrantScope};

async fn role_template(cx: &Ctx<'_>, name: &str, context: &str) -> ApiResult<()> {
    match Api::<RoleTemplate>::all(cx.state.store.clone()).get_opt(name).await? {
        None => {
            Err(ApiError::invalid_field("spec.roleTemplateName", format!("role template {name:?} not found")))
        }
        Some(rt) if rt.spec.context != context => Err(ApiError::invalid_field(
            "spec.roleTemplateName",
            format!("role template {name:?} has context {:?}, not {context:?}", rt.spec.context),
        )),
        Some(rt) if rt.spec.locked => {
            Err(ApiError::invalid_field("spec.roleTemplateName", format!("role template {name:?} is locked")))
        }
        Some(_) => Ok(()),
    }
}

/// Checks a binding's subject; the user, when it names one.
async fn subject(cx: &Ctx<'_>, user: &str, group: &str) -> ApiResult<Option<User>> {
    if user.is_empty() && group.is_empty() {
        return Err(ApiError::invalid_field("spec.userName", "a user or a group principal is required"));
    }
    if user.is_empty() {
        return Ok(None);
    }
    match Api::<User>::all(cx.state.store.clone()).get_opt(user).await? {
        None => Err(ApiError::invalid_field("spec.userName", format!("user {user:?} not found"))),
        Some(u) => Ok(Some(u)),
    }
}

/// A binding naming only a user principal (`spec.userPrincipalName`, Rancher's `userPrincipalId`)
/// names the user who has that principal; `user` is set to their id.
async fn principal_user(cx: &Ctx<'_>, user: &mut String, principal: &str) -> ApiResult<()> {
    if !user.is_empty() || principal.is_empty() {
        return Ok(());
    }
    let users = Api::<User>::all(cx.state.store.clone()).list().await?;
    match users.into_iter().find(|u| u.spec.principal_ids.iter().any(|p| p == principal)) {
        Some(u) => {
            *user = u.metadata.name;
            Ok(())
        }
        None => Err(ApiError::invalid_field(
            "spec.userPrincipalName",
            format!(
                "no user has the principal {principal:?} (a user of an external provider logs in once first)"
            ),
        )),
    }
}

/// Rancher's fields of a binding's subject and role, for responses.
fn binding_fields_out<'a>(
    map: &mut Map<String, Value>,
    scope: (&'a str, &'a str),
    role_template: &'a str,
    user: &'a str,
    user_principal: &'a str,
    group_principal: &'a str,
) {
    let principal = rancher_shape::user_principal_out(user, user_principal);
    rancher_shape::fields_out(
        map,
        [
            scope,
            ("roleTemplateId", role_template),
            ("userId", user),
            ("userPrincipalId", principal.as_str()),
            ("groupPrincipalId", group_principal),
        ],
    );
}

fn builtin_delete(kind: &str, name: &str, builtin: bool) -> ApiResult<()> {
    if builtin {
        return Err(ApiError::Forbidden(format!("{kind} {name:?} is builtin and cannot be deleted")));
    }
    Ok(())
}

#[async_trait]
impl ApiKind for GlobalRole {
    const TYPE: &'static str = "globalRole";

    async fn prepare_create(&mut self, cx: &Ctx<'_>) -> ApiResult<()> {
        if self.spec.builtin {
            return Err(ApiError::invalid_field("spec.builtin", "only the server creates builtin roles"));
        }
        Ok(escalation::check_global_role_write(&cx.state.store, cx.caller, self).await?)
    }

    /// Any change counts as writing the whole role (making `admin` every new user's default is
    /// changing `admin`), so the caller must hold it as written.
    async fn prepare_update(&mut self, old: &Self, cx: &Ctx<'_>) -> ApiResult<()> {
        if old.spec.builtin && (self.spec.rules != old.spec.rules || !self.spec.builtin) {
            return Err(ApiError::invalid_field("spec.rules", "the rules of a builtin role cannot change"));
        }
        self.spec.builtin = old.spec.builtin;
        Ok(escalation::check_global_role_write(&cx.state.store, cx.caller, self).await?)
    }

    fn check_delete(&self) -> ApiResult<()> {
        builtin_delete("global role", &self.metadata.name, self.spec.builtin)
    }
}

#[async_trait]
impl ApiKind for GlobalRoleBinding {
    const TYPE: &'static str = "globalRoleBinding";

    async fn prepare_create(&mut self, cx: &Ctx<'_>) -> ApiResult<()> {
        if self.metadata.name.is_empty() && self.metadata.generate_name.is_none() {
            self.metadata.name = generated_name("grb-");
        }
        let name = &self.spec.global_role_name;
        let Some(role) = Api::<GlobalRole>::all(cx.state.store.clone()).get_opt(name).await? else {
            return Err(ApiError::invalid_field(
                "spec.globalRoleName",
                format!("global role {name:?} not found"),
            ));
        };
        let user = subject(cx, &self.spec.user_name, &self.spec.group_principal_name).await?;
        Ok(escalation::check_global_role_binding(
            &cx.state.store,
            cx.caller,
            &role,
            user.as_ref(),
            BindingWrite::Bind,
        )
        .await?)
    }

    /// Removing someone's global role changes them: see [`escalation::check_global_role_binding`].
    async fn check_change(&self, cx: &Ctx<'_>) -> ApiResult<()> {
        let store = &cx.state.store;
        // A binding to a deleted role grants nothing, and one of a deleted user grants nothing to
        // anyone: removing either changes no one.
        let Some(role) = Api::<GlobalRole>::all(store.clone()).get_opt(&self.spec.global_role_name).await?
        else {
            return Ok(());
        };
        let user = match self.spec.user_name.as_str() {
            "" => None,
            id => match Api::<User>::all(store.clone()).get_opt(id).await? {
                Some(u) => Some(u),
                None => return Ok(()),
            },
        };
        Ok(escalation::check_global_role_binding(
            &cx.state.store,
            cx.caller,
            &role,
            user.as_ref(),
            BindingWrite::Unbind,
        )
        .await?)
    }

    async fn prepare_update(&mut self, old: &Self, _cx: &Ctx<'_>) -> ApiResult<()> {
        if self.spec != old.spec {
            return Err(ApiError::invalid_field(
                "spec",
                "a binding cannot change: delete it and create another",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl ApiKind for RoleTemplate {
    const TYPE: &'static str = "roleTemplate";

    async fn prepare_create(&mut self, cx: &Ctx<'_>) -> ApiResult<()> {
        // A generated name is picked here, so that the escalation check sees the template's name.
        if self.metadata.name.is_empty() {
            self.metadata.name = generated_name("rt-");
            self.metadata.generate_name = None;
        }
        if self.spec.builtin {
            return Err(ApiError::invalid_field(
                "spec.builtin",
                "only the server creates builtin role templates",
            ));
        }
        check_context(&self.spec.context)?;
        Ok(escalation::check_template_write(&cx.state.store, cx.caller, self).await?)
    }

    async fn prepare_update(&mut self, old: &Self, cx: &Ctx<'_>) -> ApiResult<()> {
        check_context(&self.spec.context)?;
        if old.spec.builtin && (self.spec.rules != old.spec.rules || self.spec.context != old.spec.context) {
            return Err(ApiError::invalid_field(
                "spec.rules",
                "the rules of a builtin role template cannot change",
            ));
        }
        self.spec.builtin = old.spec.builtin;
        Ok(escalation::check_template_write(&cx.state.store, cx.caller, self).await?)
    }

    fn check_delete(&self) -> ApiResult<()> {
        builtin_delete("role template", &self.metadata.name, self.spec.builtin)
    }
}

fn check_context(context: &str) -> ApiResult<()> {
    if context != "cluster" && context != "project" {
        return Err(ApiError::invalid_field(
            "spec.context",
            format!("{context:?}: must be \"cluster\" or \"project\""),
        ));
    }
    Ok(())
}

#[async_trait]
impl ApiKind for ClusterRoleTemplateBinding {
    const TYPE: &'static str = "clusterRoleTemplateBinding";

    const MEMBER_MANAGED: bool = true;

    fn namespace_from_spec(&self) -> Option<String> {
        Some(self.spec.cluster_name.clone())
    }

    fn grant_scope(&self) -> Option<GrantScope> {
        let cluster = self.metadata.namespace.clone().filter(|n| !n.is_empty())?;
        Some(GrantScope { cluster, project: None })
    }

    const LIST_FILTERS: &'static [&'static str] = &["clusterId"];

    fn filter_value(&self, param: &str) -> Option<String> {
        (param == "clusterId").then(|| self.spec.cluster_name.clone())
    }

    fn rancher_fields_in(map: &mut Map<String, Value>) -> ApiResult<()> {
        rancher_shape::fields_in(
            map,
            &[BINDING_NAME, CLUSTER_ID, ROLE_TEMPLATE_ID, USER_ID, GROUP_PRINCIPAL_ID],
        )?;
        rancher_shape::user_principal_in(map)
    }

    fn rancher_fields_out(&self, map: &mut Map<String, Value>) {
        let s = &self.spec;
        binding_fields_out(
            map,
            ("clusterId", &s.cluster_name),
            &s.role_template_name,
            &s.user_name,
            &s.user_principal_name,
            &s.group_principal_name,
        );
    }

    async fn prepare_create(&mut self, cx: &Ctx<'_>) -> ApiResult<()> {
        let cluster = self.metadata.namespace.clone().unwrap_or_default();
        if !self.spec.cluster_name.is_empty() && self.spec.cluster_name != cluster {
            return Err(ApiError::invalid_field("spec.clusterName", "must match the namespace"));
        }
        // The binding is for this cluster as it exists now, not a later one of the same name.
        let current = live_cluster(cx, &cluster, "spec.clusterName").await?;
        owner::stamp(&mut self.metadata, CLUSTER_UID_ANNOTATION, &current.metadata);
        self.spec.cluster_name = cluster;
        if self.metadata.name.is_empty() && self.metadata.generate_name.is_none() {
            self.metadata.name = generated_name("crtb-");
        }
        role_template(cx, &self.spec.role_template_name, "cluster").await?;
        principal_user(cx, &mut self.spec.user_name, &self.spec.user_principal_name).await?;
        subject(cx, &self.spec.user_name, &self.spec.group_principal_name).await?;
        let scope = GrantScope { cluster: self.spec.cluster_name.clone(), project: None };
        Ok(escalation::check_template_binding(
            &cx.state.store,
            cx.caller,
            Self::PLURAL,
            &scope,
            &self.spec.role_template_name,
        )
        .await?)
    }

    async fn prepare_update(&mut self, old: &Self, _cx: &Ctx<'_>) -> ApiResult<()> {
        if self.spec != old.spec {
            return Err(ApiError::invalid_field(
                "spec",
                "a binding cannot change: delete it and create another",
            ));
        }
        owner::preserve(&mut self.metadata, &old.metadata, CLUSTER_UID_ANNOTATION);
        Ok(())
    }
}

#[async_trait]
impl ApiKind for ProjectRoleTemplateBinding {
    const TYPE: &'static str = "projectRoleTemplateBinding";

    const MEMBER_MANAGED: bool = true;

    /// PRTBs live in the namespace named by the project's own name (the part after `<cluster>:`).
    fn namespace_from_spec(&self) -> Option<String> {
        self.spec.project_name.split_once(':').map(|(_, p)| p.to_owned())
    }

    fn grant_scope(&self) -> Option<GrantScope> {
        let (cluster, project) = self.spec.project_name.split_once(':')?;
        Some(GrantScope { cluster: cluster.to_owned(), project: Some(project.to_owned()) })
    }

    const LIST_FILTERS: &'static [&'static str] = &["projectId"];

    fn filter_value(&self, param: &str) -> Option<String> {
        (param == "projectId").then(|| self.spec.project_name.clone())
    }

    fn rancher_fields_in(map: &mut Map<String, Value>) -> ApiResult<()> {
        rancher_shape::fields_in(
            map,
            &[BINDING_NAME, PROJECT_ID, ROLE_TEMPLATE_ID, USER_ID, GROUP_PRINCIPAL_ID],
        )?;
        rancher_shape::user_principal_in(map)
    }

    fn rancher_fields_out(&self, map: &mut Map<String, Value>) {
        let s = &self.spec;
        binding_fields_out(
            map,
            ("projectId", &s.project_name),
            &s.role_template_name,
            &s.user_name,
            &s.user_principal_name,
            &s.group_principal_name,
        );
    }

    async fn prepare_create(&mut self, cx: &Ctx<'_>) -> ApiResult<()> {
        let Some((cluster, project)) = self.spec.project_name.split_once(':') else {
            return Err(ApiError::invalid_field("spec.projectName", "must be <cluster>:<project>"));
        };
        if self.metadata.namespace.as_deref() != Some(project) {
            return Err(ApiError::invalid_field(
                "metadata.namespace",
                format!("must be the project's name {project:?}"),
            ));
        }
        // The binding is for this project as it exists now, not a later one of the same name.
        match Api::<Project>::namespaced(cx.state.store.clone(), cluster).get_opt(project).await? {
            Some(p) if p.metadata.deletion_timestamp.is_none() => {
                owner::stamp(&mut self.metadata, PROJECT_UID_ANNOTATION, &p.metadata);
            }
            _ => {
                return Err(ApiError::invalid_field(
                    "spec.projectName",
                    format!("project {:?} not found", self.spec.project_name),
                ));
            }
        }
        if self.metadata.name.is_empty() && self.metadata.generate_name.is_none() {
            self.metadata.name = generated_name("prtb-");
        }
        role_template(cx, &self.spec.role_template_name, "project").await?;
        if self.spec.service_account.is_empty() {
            principal_user(cx, &mut self.spec.user_name, &self.spec.user_principal_name).await?;
            subject(cx, &self.spec.user_name, &self.spec.group_principal_name).await?;
        }
        let scope = GrantScope { cluster: cluster.to_owned(), project: Some(project.to_owned()) };
        Ok(escalation::check_template_binding(
            &cx.state.store,
            cx.caller,
            Self::PLURAL,
            &scope,
            &self.spec.role_template_name,
        )
        .await?)
    }

    async fn prepare_update(&mut self, old: &Self, _cx: &Ctx<'_>) -> ApiResult<()> {
        if self.spec != old.spec {
            return Err(ApiError::invalid_field(
                "spec",
                "a binding cannot change: delete it and create another",
            ));
        }
        owner::preserve(&mut self.metadata, &old.metadata, PROJECT_UID_ANNOTATION);
        Ok(())
    }
}
