//! What a user holds where: [`Grants`] is one snapshot of the role catalogue and every binding that
//! answers what a user holds globally, in every cluster, or in one cluster or project ([`Held`]), and
//! who is a member where. The escalation checks ([`super::escalation`]) and the membership view of
//! `/v3` compare holdings with it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rancher_auth::rbac::{self, ResourceAttributes};
use rancher_auth::rbac_render::{Flattened, RenderError, flatten};
use rancher_core::model::{
    Cluster, ClusterRoleTemplateBinding, GlobalRole, GlobalRoleBinding, PolicyRule, Project,
    ProjectRoleTemplateBinding, RoleTemplate, User,
};
use rancher_core::store::{Api, Store};

use rancher_core::store::StoreError;

use crate::server::auth::{Caller, MANAGEMENT_GROUP, is_cluster_admin};
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
    pub(super) all: bool,
    rules: Vec<PolicyRule>,
    external: BTreeSet<String>,
}

impl Held {
    pub(super) fn everything() -> Self {
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

    pub(super) fn merge(&mut self, other: Held) {
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
    pub(super) fn covers(&self, wanted: &Held) -> Result<(), Missing> {
        if self.all {
            return Ok(());
        }
        if wanted.all {
            return Err(Missing("every permission (an administrator's)".into()));
        }
        rbac::covers(&self.rules, &wanted.rules).map_err(|u| Missing(u.to_string()))?;
        // Rules that allow every verb on every resource and URL include any ClusterRole.
        if wanted.external.is_empty() || rbac::covers(&self.rules, &everything()).is_ok() {
            return Ok(());
        }
        match wanted.external.iter().find(|e| !self.external.contains(*e)) {
            Some(e) => Err(Missing(format!("the Kubernetes ClusterRole {e:?}"))),
            None => Ok(()),
        }
    }
}

/// The permissions a holding lacks, for the message of a refusal: rules, or a Kubernetes ClusterRole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Missing(pub(super) String);

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Missing {
    /// The same lack, said of a place: `… in every cluster`, `… in cluster c-1`.
    pub(super) fn in_place(self, place: impl std::fmt::Display) -> Missing {
        Missing(format!("{} in {place}", self.0))
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
pub(super) struct Subject<'a> {
    pub(super) id: &'a str,
    principals: &'a [String],
    groups: &'a [String],
}

impl<'a> Subject<'a> {
    pub(super) fn of(user: &'a User) -> Self {
        Subject {
            id: &user.metadata.name,
            principals: &user.spec.principal_ids,
            groups: &user.status.group_principals,
        }
    }

    pub(super) fn named(&self, user: &str, principal: &str, group: &str) -> bool {
        (!user.is_empty() && user == self.id)
            || (!principal.is_empty() && self.principals.iter().any(|p| p == principal))
            || (!group.is_empty() && self.groups.iter().any(|g| g == group))
    }
}

/// A snapshot of the role catalogue and every binding, read once per check.
pub(crate) struct Grants {
    templates: Vec<RoleTemplate>,
    pub(super) roles: HashMap<String, GlobalRole>,
    grbs: Vec<GlobalRoleBinding>,
    crtbs: Vec<ClusterRoleTemplateBinding>,
    prtbs: Vec<ProjectRoleTemplateBinding>,
}

impl Grants {
    /// Reads the roles, role templates and bindings. Only bindings that count are kept, as the proxy
    /// and the downstream RBAC decide it: those of live clusters and projects as they exist now (not
    /// a leftover of an earlier cluster or project of the same name).
    pub(crate) async fn load(store: &Arc<dyn Store>) -> Result<Self, StoreError> {
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
            cluster.is_some_and(|c| membership::crtb_counts(b, &c.metadata))
        });
        let mut prtbs = Api::<ProjectRoleTemplateBinding>::all(store.clone()).list().await?;
        prtbs.retain(|b| {
            let Some((c, p)) = membership::project_ref(&b.spec.project_name) else { return false };
            match (clusters.get(c), projects.get(&(c.to_owned(), p.to_owned()))) {
                (Some(cluster), Some(project)) => {
                    membership::prtb_counts(b, &project.metadata, &cluster.metadata)
                }
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
    pub(super) fn flatten(&self, template: &str, extra: Option<&RoleTemplate>) -> Result<Held, RenderError> {
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
    pub(super) fn global_rules(&self, id: &str) -> Vec<PolicyRule> {
        self.global_roles_of(id).flat_map(|r| r.spec.rules.iter().cloned()).collect()
    }

    /// What a user with these global rules holds in every cluster: everything for a global admin,
    /// else the inherited cluster roles of their global roles.
    pub(super) fn everywhere(&self, id: &str, global_rules: &[PolicyRule]) -> Held {
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
    pub(super) fn in_scope(
        &self,
        who: &Subject<'_>,
        global_rules: &[PolicyRule],
        scope: &GrantScope,
    ) -> Held {
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
    pub(super) fn scopes_of(&self, who: &Subject<'_>) -> BTreeSet<GrantScope> {
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

pub(super) fn caller_subject(caller: &Caller) -> Subject<'_> {
    Subject::of(&caller.user)
}

#[cfg(test)]
mod tests;
