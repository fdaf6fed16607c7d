//! Whoever grants a right must hold it: Kubernetes' escalation rules applied to every `/v3` write that
//! grants (roles, bindings, users). [`Grants`] is a snapshot of roles and bindings that answers what a
//! user holds globally, in every cluster, or in one cluster or project; the `check_*` functions refuse
//! with a Kubernetes `Status` 403 naming what the caller lacks.
//!
//! The rules, per kind (see each function):
//! * a global role is written only by someone whose global rules cover its rules, and who holds its
//!   inherited cluster roles in every cluster — or who may `escalate` `globalroles`;
//! * a global role is bound only by someone who holds it in that sense, or may `bind` it;
//! * a role template is written only by someone who holds its rules in every cluster (a global admin),
//!   or who may `escalate` `roletemplates`;
//! * a role template is bound in a cluster or project only by someone who holds all of it there
//!   (the union of what is bound to them there), a global admin, or someone who may `bind` it;
//! * a user — their roles, their password, their name, whether they exist — is changed only by
//!   someone who holds every permission that user holds, wherever the user holds it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rancher_auth::rbac::{self, ResourceAttributes};
use rancher_auth::rbac_render::{Flattened, RenderError, flatten};
use rancher_core::model::{
    Cluster, ClusterRoleTemplateBinding, GlobalRole, GlobalRoleBinding, PolicyRule, Project,
    ProjectRoleTemplateBinding, RoleTemplate, User,
};
use rancher_core::store::{Api, Store};

use super::kind::Ctx;
use crate::server::auth::{Caller, MANAGEMENT_GROUP, is_cluster_admin};
use crate::server::error::{ApiError, ApiResult};
use crate::server::proxy::membership;

/// Where a role template binding applies: a cluster, or a project (`<cluster>:<project>`) in it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct GrantScope {
    /// The cluster's id.
    pub(crate) cluster: String,
    /// The project's name (without the cluster), for project bindings.
    pub(crate) project: Option<String>,
}

impl std::fmt::Display for GrantScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.project {
            Some(p) => write!(f, "project {}:{p}", self.cluster),
            None => write!(f, "cluster {}", self.cluster),
        }
    }
}

/// Kubernetes' default user-facing ClusterRoles nest: `admin` includes `edit`, which includes `view`
/// (their aggregated rules carry the labels of the larger roles too). An external role template
/// naming one of them is held by whoever holds a larger one.
const NESTED_CLUSTER_ROLES: &[(&str, &[&str])] = &[("admin", &["edit", "view"]), ("edit", &["view"])];

/// Permissions held in one place (or wanted there): RBAC rules, and existing downstream ClusterRoles
/// referenced by external role templates, whose rules the server does not know.
#[derive(Clone, Debug, Default)]
pub(crate) struct Held {
    /// Everything (a global admin).
    all: bool,
    rules: Vec<PolicyRule>,
    external: BTreeSet<String>,
}

impl Held {
    fn everything() -> Self {
        Held { all: true, ..Default::default() }
    }

    fn add(&mut self, f: Flattened) {
        self.rules.extend(f.rules);
        for e in f.external {
            if let Some((_, nested)) = NESTED_CLUSTER_ROLES.iter().find(|(name, _)| *name == e) {
                self.external.extend(nested.iter().map(|n| (*n).to_owned()));
            }
            self.external.insert(e);
        }
    }

    fn merge(&mut self, other: Held) {
        self.all |= other.all;
        self.rules.extend(other.rules);
        self.external.extend(other.external);
    }

    /// True when these permissions allow `verb` on the management resource `resource` here.
    pub(crate) fn allows(&self, verb: &str, resource: &str, name: Option<&str>) -> bool {
        self.all
            || rbac::allows(
                &self.rules,
                &ResourceAttributes { verb, api_group: MANAGEMENT_GROUP, resource, name },
            )
    }

    /// Whether these permissions include every one of `wanted`; the error says what is missing.
    fn covers(&self, wanted: &Held) -> Result<(), String> {
        if self.all {
            return Ok(());
        }
        if wanted.all {
            return Err("every permission (an administrator's)".into());
        }
        rbac::covers(&self.rules, &wanted.rules).map_err(|u| u.to_string())?;
        // Rules that allow every verb on every resource and URL include any ClusterRole.
        if wanted.external.is_empty() || rbac::covers(&self.rules, &everything()).is_ok() {
            return Ok(());
        }
        match wanted.external.iter().find(|e| !self.external.contains(*e)) {
            Some(e) => Err(format!("the Kubernetes ClusterRole {e:?}")),
            None => Ok(()),
        }
    }
}

fn everything() -> Vec<PolicyRule> {
    let all = || vec!["*".to_owned()];
    vec![
        PolicyRule { verbs: all(), api_groups: all(), resources: all(), ..Default::default() },
        PolicyRule { verbs: all(), non_resource_urls: all(), ..Default::default() },
    ]
}

/// Who a binding may name: a user id, the user's principals, and the groups they were last seen in.
struct Subject<'a> {
    id: &'a str,
    principals: &'a [String],
    groups: &'a [String],
}

impl<'a> Subject<'a> {
    fn of(user: &'a User) -> Self {
        Subject {
            id: &user.metadata.name,
            principals: &user.spec.principal_ids,
            groups: &user.status.group_principals,
        }
    }

    fn named(&self, user: &str, principal: &str, group: &str) -> bool {
        (!user.is_empty() && user == self.id)
            || (!principal.is_empty() && self.principals.iter().any(|p| p == principal))
            || (!group.is_empty() && self.groups.iter().any(|g| g == group))
    }
}

/// A snapshot of the role catalogue and every binding, read once per check.
pub(crate) struct Grants {
    templates: Vec<RoleTemplate>,
    roles: HashMap<String, GlobalRole>,
    grbs: Vec<GlobalRoleBinding>,
    crtbs: Vec<ClusterRoleTemplateBinding>,
    prtbs: Vec<ProjectRoleTemplateBinding>,
}

impl Grants {
    /// Reads the roles, role templates and bindings. Only bindings that count are kept, as the proxy
    /// and the downstream RBAC decide it: those of live clusters and projects as they exist now (not
    /// a leftover of an earlier cluster or project of the same name).
    pub(crate) async fn load(store: &Arc<dyn Store>) -> ApiResult<Self> {
        let roles = Api::<GlobalRole>::all(store.clone()).list().await?;
        let clusters: HashMap<String, Cluster> = Api::<Cluster>::all(store.clone())
            .list()
            .await?
            .into_iter()
            .map(|c| (c.metadata.name.clone(), c))
            .collect();
        let projects: HashMap<(String, String), Project> = Api::<Project>::all(store.clone())
            .list()
            .await?
            .into_iter()
            .map(|p| ((p.metadata.namespace.clone().unwrap_or_default(), p.metadata.name.clone()), p))
            .collect();
        let mut crtbs = Api::<ClusterRoleTemplateBinding>::all(store.clone()).list().await?;
        crtbs.retain(|b| {
            let cluster = b.metadata.namespace.as_ref().and_then(|c| clusters.get(c));
            cluster.is_some_and(|c| membership::crtb_counts(b, c))
        });
        let mut prtbs = Api::<ProjectRoleTemplateBinding>::all(store.clone()).list().await?;
        prtbs.retain(|b| {
            let Some((c, p)) = membership::project_ref(&b.spec.project_name) else { return false };
            match (clusters.get(c), projects.get(&(c.to_owned(), p.to_owned()))) {
                (Some(cluster), Some(project)) => membership::prtb_counts(b, project, cluster),
                _ => false,
            }
        });
        Ok(Grants {
            templates: Api::<RoleTemplate>::all(store.clone()).list().await?,
            roles: roles.into_iter().map(|r| (r.metadata.name.clone(), r)).collect(),
            grbs: Api::<GlobalRoleBinding>::all(store.clone()).list().await?,
            crtbs,
            prtbs,
        })
    }

    /// `template` with its inheritance resolved, `extra` standing in for a template being written.
    fn flatten(&self, template: &str, extra: Option<&RoleTemplate>) -> Result<Held, RenderError> {
        let mut by_name: HashMap<&str, &RoleTemplate> =
            self.templates.iter().map(|t| (t.metadata.name.as_str(), t)).collect();
        if let Some(t) = extra {
            by_name.insert(&t.metadata.name, t);
        }
        let mut held = Held::default();
        held.add(flatten(template, &by_name)?);
        Ok(held)
    }

    /// The global roles bound to the user `id` (bindings to missing roles grant nothing).
    fn global_roles_of<'s>(&'s self, id: &'s str) -> impl Iterator<Item = &'s GlobalRole> + 's {
        self.grbs
            .iter()
            .filter(move |b| b.spec.user_name == id)
            .filter_map(|b| self.roles.get(&b.spec.global_role_name))
    }

    /// The rules of the user's global roles.
    fn global_rules(&self, id: &str) -> Vec<PolicyRule> {
        self.global_roles_of(id).flat_map(|r| r.spec.rules.iter().cloned()).collect()
    }

    /// What a user with these global rules holds in every cluster: everything for a global admin,
    /// else the inherited cluster roles of their global roles.
    fn everywhere(&self, id: &str, global_rules: &[PolicyRule]) -> Held {
        if is_cluster_admin(global_rules) {
            return Held::everything();
        }
        let mut held = Held::default();
        for role in self.global_roles_of(id) {
            for t in &role.spec.inherited_cluster_roles {
                // A missing inherited template grants nothing, as downstream.
                if let Ok(f) = self.flatten(t, None) {
                    held.merge(f);
                }
            }
        }
        held
    }

    /// What `who` holds in `scope`: everywhere, plus the cluster's bindings, plus (for a project) the
    /// project's bindings.
    fn in_scope(&self, who: &Subject<'_>, global_rules: &[PolicyRule], scope: &GrantScope) -> Held {
        let mut held = self.everywhere(who.id, global_rules);
        if held.all {
            return held;
        }
        let crtbs = self.crtbs.iter().filter(|b| {
            b.metadata.namespace.as_deref() == Some(scope.cluster.as_str())
                && who.named(&b.spec.user_name, &b.spec.user_principal_name, &b.spec.group_principal_name)
        });
        let mut templates: Vec<&str> = crtbs.map(|b| b.spec.role_template_name.as_str()).collect();
        if let Some(project) = &scope.project {
            let id = format!("{}:{project}", scope.cluster);
            templates.extend(
                self.prtbs
                    .iter()
                    .filter(|b| {
                        b.spec.project_name == id
                            && who.named(
                                &b.spec.user_name,
                                &b.spec.user_principal_name,
                                &b.spec.group_principal_name,
                            )
                    })
                    .map(|b| b.spec.role_template_name.as_str()),
            );
        }
        for t in templates {
            if let Ok(f) = self.flatten(t, None) {
                held.merge(f);
            }
        }
        held
    }

    /// Every cluster and project where `who` has a binding.
    fn scopes_of(&self, who: &Subject<'_>) -> BTreeSet<GrantScope> {
        let crtbs = self.crtbs.iter().filter(|b| {
            who.named(&b.spec.user_name, &b.spec.user_principal_name, &b.spec.group_principal_name)
        });
        let prtbs = self.prtbs.iter().filter(|b| {
            who.named(&b.spec.user_name, &b.spec.user_principal_name, &b.spec.group_principal_name)
        });
        crtbs
            .filter_map(|b| b.metadata.namespace.clone())
            .map(|cluster| GrantScope { cluster, project: None })
            .chain(prtbs.filter_map(|b| {
                let (c, p) = b.spec.project_name.split_once(':')?;
                Some(GrantScope { cluster: c.to_owned(), project: Some(p.to_owned()) })
            }))
            .collect()
    }
}

/// Membership: who has a binding where.
impl Grants {
    /// What the caller holds in `scope`: see [`Grants::in_scope`].
    pub(crate) fn held_by(&self, caller: &Caller, scope: &GrantScope) -> Held {
        self.in_scope(&caller_subject(caller), &caller.rules, scope)
    }

    /// Whether the caller is a member of `scope`: has a binding in the project, or (for a cluster) a
    /// cluster binding in it — or, with `projects_too`, a binding in one of its projects.
    pub(crate) fn is_member(&self, caller: &Caller, scope: &GrantScope, projects_too: bool) -> bool {
        let who = caller_subject(caller);
        let named = |user: &str, principal: &str, group: &str| who.named(user, principal, group);
        let in_project =
            |b: &ProjectRoleTemplateBinding| match (&scope.project, b.spec.project_name.split_once(':')) {
                (_, None) => false,
                (Some(p), Some((c, bp))) => c == scope.cluster && bp == p,
                (None, Some((c, _))) => projects_too && c == scope.cluster,
            };
        let cluster_binding = scope.project.is_none()
            && self.crtbs.iter().any(|b| {
                b.metadata.namespace.as_deref() == Some(scope.cluster.as_str())
                    && named(&b.spec.user_name, &b.spec.user_principal_name, &b.spec.group_principal_name)
            });
        cluster_binding
            || self.prtbs.iter().any(|b| {
                in_project(b)
                    && named(&b.spec.user_name, &b.spec.user_principal_name, &b.spec.group_principal_name)
            })
    }
}

fn caller_subject(caller: &Caller) -> Subject<'_> {
    Subject::of(&caller.user)
}

fn forbidden(caller: &Caller, what: &str, attempt: &str, missing: &str, instead: &str) -> ApiError {
    ApiError::Forbidden(format!(
        "{what} is forbidden: user \"{}\" is attempting to {attempt} permissions it does not hold: \
         {missing} (hold them, or be allowed to {instead})",
        caller.user_id()
    ))
}

fn missing_template(e: RenderError) -> ApiError {
    ApiError::invalid_field("spec.roleTemplateName", e.to_string())
}

/// CRTB and PRTB creation: the caller holds every permission of `template` in `scope`, or may
/// `bind` that role template (globally, or where it is bound).
pub(crate) async fn check_template_binding(
    cx: &Ctx<'_>,
    plural: &str,
    scope: &GrantScope,
    template: &str,
) -> ApiResult<()> {
    if cx.caller.can("bind", "roletemplates", Some(template)) {
        return Ok(());
    }
    let grants = Grants::load(&cx.state.store).await?;
    let held = grants.in_scope(&caller_subject(cx.caller), &cx.caller.rules, scope);
    if held.allows("bind", "roletemplates", Some(template)) {
        return Ok(());
    }
    let wanted = grants.flatten(template, None).map_err(missing_template)?;
    held.covers(&wanted).map_err(|missing| {
        forbidden(
            cx.caller,
            plural,
            &format!("grant role template \"{template}\" in {scope}, which holds"),
            &missing,
            &format!("\"bind\" roletemplates \"{template}\""),
        )
    })
}

/// What holding a global role means: its rules globally, its inherited cluster roles everywhere.
fn global_role_held(
    grants: &Grants,
    role: &GlobalRole,
    extra: Option<&RoleTemplate>,
) -> ApiResult<(Vec<PolicyRule>, Held)> {
    let mut everywhere = Held::default();
    for t in &role.spec.inherited_cluster_roles {
        let f = grants
            .flatten(t, extra)
            .map_err(|e| ApiError::invalid_field("spec.inheritedClusterRoles", e.to_string()))?;
        everywhere.merge(f);
    }
    Ok((role.spec.rules.clone(), everywhere))
}

/// Whether the caller holds `role`: its rules among theirs, its inherited cluster roles everywhere.
fn caller_holds_role(grants: &Grants, caller: &Caller, role: &GlobalRole) -> ApiResult<Result<(), String>> {
    let (rules, everywhere) = global_role_held(grants, role, None)?;
    if let Err(u) = rbac::covers(&caller.rules, &rules) {
        return Ok(Err(u.to_string()));
    }
    let held = grants.everywhere(caller.user_id(), &caller.rules);
    Ok(held.covers(&everywhere).map_err(|m| format!("{m} in every cluster")))
}

/// GlobalRole create and update: the caller holds the role as written, or may `escalate` it.
pub(crate) async fn check_global_role_write(cx: &Ctx<'_>, role: &GlobalRole) -> ApiResult<()> {
    let name = role.metadata.name.as_str();
    if cx.caller.can("escalate", "globalroles", (!name.is_empty()).then_some(name)) {
        return Ok(());
    }
    let grants = Grants::load(&cx.state.store).await?;
    caller_holds_role(&grants, cx.caller, role)?.map_err(|missing| {
        forbidden(
            cx.caller,
            &format!("globalroles \"{name}\""),
            "write a global role with",
            &missing,
            "\"escalate\" globalroles",
        )
    })
}

/// What a global role binding write does: make one, or remove (or change) one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BindingWrite {
    /// A new binding.
    Bind,
    /// An update or delete of a stored binding.
    Unbind,
}

/// GlobalRoleBinding create, update and delete: the caller holds the role or may `bind` it; and, when
/// the subject is a user, the caller may manage that user (so nobody but an admin binds anything to an
/// admin, or removes an admin's binding). A group's binding is removed only by someone who holds (or
/// may bind) its role, so a group of admins is not demoted by a mere binding editor either.
pub(crate) async fn check_global_role_binding(
    cx: &Ctx<'_>,
    role: &GlobalRole,
    user: Option<&User>,
    write: BindingWrite,
) -> ApiResult<()> {
    let name = role.metadata.name.as_str();
    let grants = Grants::load(&cx.state.store).await?;
    if !cx.caller.can("bind", "globalroles", Some(name)) {
        let attempt = match write {
            BindingWrite::Bind => format!("bind global role \"{name}\", which holds"),
            BindingWrite::Unbind => format!("remove a binding of global role \"{name}\", which holds"),
        };
        caller_holds_role(&grants, cx.caller, role)?.map_err(|missing| {
            forbidden(
                cx.caller,
                "globalrolebindings",
                &attempt,
                &missing,
                &format!("\"bind\" globalroles \"{name}\""),
            )
        })?;
    }
    match user {
        Some(u) => check_manage(&grants, cx.caller, u, "globalrolebindings"),
        None => Ok(()),
    }
}

/// RoleTemplate create and update: its rules apply wherever it is (or will be) bound, so the caller
/// must hold them in every cluster — in practice a global admin — or may `escalate` role templates.
pub(crate) async fn check_template_write(cx: &Ctx<'_>, template: &RoleTemplate) -> ApiResult<()> {
    let name = template.metadata.name.as_str();
    if cx.caller.can("escalate", "roletemplates", (!name.is_empty()).then_some(name)) {
        return Ok(());
    }
    let grants = Grants::load(&cx.state.store).await?;
    let held = grants.everywhere(cx.caller.user_id(), &cx.caller.rules);
    if held.all {
        return Ok(());
    }
    let wanted = grants
        .flatten(name, Some(template))
        .map_err(|e| ApiError::invalid_field("spec.roleTemplateNames", e.to_string()))?;
    held.covers(&wanted).map_err(|missing| {
        forbidden(
            cx.caller,
            &format!("roletemplates \"{name}\""),
            "write a role template, which applies in every cluster it is bound in, with",
            &missing,
            "\"escalate\" roletemplates",
        )
    })
}

/// Whether `caller` holds every permission `target` holds: globally, in every cluster, and in each
/// cluster and project where the target has a binding.
fn check_manage(grants: &Grants, caller: &Caller, target: &User, what: &str) -> ApiResult<()> {
    if target.metadata.name == caller.user_id() {
        return Ok(());
    }
    let me = caller_subject(caller);
    let them = Subject::of(target);
    let their_rules = grants.global_rules(them.id);
    let refuse = |missing: String| {
        ApiError::Forbidden(format!(
            "{what} is forbidden: user \"{}\" may not change user \"{}\" ({}), who holds permissions \
             \"{}\" does not: {missing}",
            caller.user_id(),
            them.id,
            target.spec.username,
            caller.user_id()
        ))
    };
    rbac::covers(&caller.rules, &their_rules).map_err(|u| refuse(u.to_string()))?;
    let mine = grants.everywhere(me.id, &caller.rules);
    if mine.all {
        return Ok(());
    }
    mine.covers(&grants.everywhere(them.id, &their_rules))
        .map_err(|m| refuse(format!("{m} in every cluster")))?;
    for scope in grants.scopes_of(&them) {
        let theirs = grants.in_scope(&them, &their_rules, &scope);
        grants
            .in_scope(&me, &caller.rules, &scope)
            .covers(&theirs)
            .map_err(|m| refuse(format!("{m} in {scope}")))?;
    }
    Ok(())
}

/// Update, disable, rename, delete or reset the password of `target`: only by someone who holds every
/// permission the target holds (so only an admin changes an admin).
pub(crate) async fn check_manage_user(cx: &Ctx<'_>, target: &User) -> ApiResult<()> {
    let grants = Grants::load(&cx.state.store).await?;
    check_manage(&grants, cx.caller, target, &format!("users \"{}\"", target.metadata.name))
}

/// Creating a user gives it the new-user-default global roles and a password the creator knows, so
/// the creator must hold those roles.
pub(crate) async fn check_new_user_roles(cx: &Ctx<'_>) -> ApiResult<()> {
    let grants = Grants::load(&cx.state.store).await?;
    for role in grants.roles.values().filter(|r| r.spec.new_user_default) {
        caller_holds_role(&grants, cx.caller, role)?.map_err(|missing| {
            forbidden(
                cx.caller,
                "users",
                &format!("create a user, who is given global role \"{}\", which holds", role.metadata.name),
                &missing,
                &format!("\"bind\" globalroles \"{}\"", role.metadata.name),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
