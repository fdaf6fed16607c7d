//! Who is a member of a cluster, as pure functions over the management objects: a
//! ClusterRoleTemplateBinding of the cluster, or a ProjectRoleTemplateBinding of one of its projects,
//! for the user, their principal or one of their groups — counting only bindings made for the
//! cluster and project that exist now (see [`owner`](crate::server::cleanup::owner)). Global admins
//! are members everywhere. Shared by the proxy, token minting and the authorized cluster endpoint's
//! token sync, so they cannot disagree.

use std::collections::HashMap;

use rancher_auth::proxy::UserInfo;
use rancher_core::ObjectMeta;
use rancher_core::model::{
    Cluster, ClusterRoleTemplateBinding, GlobalRole, GlobalRoleBinding, PolicyRule, Project,
    ProjectRoleTemplateBinding,
};

use crate::server::cleanup::owner::{self, CLUSTER_UID_ANNOTATION, PROJECT_UID_ANNOTATION};

/// Whether a binding's subject (user id, user principal or group principal) is `user`.
pub(crate) fn subject_is(
    user: &UserInfo,
    user_name: &str,
    user_principal: &str,
    group_principal: &str,
) -> bool {
    let principal = user.extra.get("principalid").and_then(|p| p.first());
    (!user_name.is_empty() && user_name == user.username)
        || (!user_principal.is_empty() && principal.is_some_and(|p| p == user_principal))
        || (!group_principal.is_empty() && user.groups.iter().any(|g| g == group_principal))
}

/// Whether `b` is a live binding of the cluster of `cluster` (its metadata) as it exists now
/// (whoever its subject is). Like the other checks here, it reads only metadata, so a caller that
/// keeps only that of clusters and projects need not rebuild whole objects.
pub(crate) fn crtb_counts(b: &ClusterRoleTemplateBinding, cluster: &ObjectMeta) -> bool {
    let name = &cluster.name;
    cluster.deletion_timestamp.is_none()
        && b.metadata.deletion_timestamp.is_none()
        && (b.spec.cluster_name == *name
            || (b.spec.cluster_name.is_empty() && b.metadata.namespace.as_deref() == Some(name)))
        && owner::belongs(&b.metadata, CLUSTER_UID_ANNOTATION, cluster)
}

/// Whether `b` makes `user` a member of the cluster of `cluster`.
pub(crate) fn crtb_grants(b: &ClusterRoleTemplateBinding, user: &UserInfo, cluster: &ObjectMeta) -> bool {
    crtb_counts(b, cluster)
        && subject_is(user, &b.spec.user_name, &b.spec.user_principal_name, &b.spec.group_principal_name)
}

/// The `(cluster, project)` of a `<cluster>:<project>` project id.
pub(crate) fn project_ref(project_name: &str) -> Option<(&str, &str)> {
    project_name.split_once(':').filter(|(c, p)| !c.is_empty() && !p.is_empty() && !p.contains(':'))
}

/// Whether the project of `project` is a live project of the cluster of `cluster` as it exists now.
pub(crate) fn project_counts(project: &ObjectMeta, cluster: &ObjectMeta) -> bool {
    cluster.deletion_timestamp.is_none()
        && project.deletion_timestamp.is_none()
        && project.namespace.as_deref() == Some(cluster.name.as_str())
        && owner::belongs(project, CLUSTER_UID_ANNOTATION, cluster)
}

/// Whether `b` is a live binding of `project` (already found by its id), itself a live project of
/// `cluster` (whoever its subject is).
pub(crate) fn prtb_counts(
    b: &ProjectRoleTemplateBinding,
    project: &ObjectMeta,
    cluster: &ObjectMeta,
) -> bool {
    let Some((c, p)) = project_ref(&b.spec.project_name) else { return false };
    c == cluster.name
        && p == project.name
        && b.metadata.deletion_timestamp.is_none()
        && project_counts(project, cluster)
        && owner::belongs(&b.metadata, PROJECT_UID_ANNOTATION, project)
}

/// The cluster of the project `b` binds in, when its project id is well formed.
pub(crate) fn prtb_cluster(b: &ProjectRoleTemplateBinding) -> Option<&str> {
    project_ref(&b.spec.project_name).map(|(cluster, _)| cluster)
}

/// Whether `b` names `user` and a project of `cluster` (before the project itself is looked up).
pub(crate) fn prtb_candidate(b: &ProjectRoleTemplateBinding, user: &UserInfo, cluster: &str) -> bool {
    prtb_cluster(b) == Some(cluster)
        && subject_is(user, &b.spec.user_name, &b.spec.user_principal_name, &b.spec.group_principal_name)
}

/// The rules of every global role bound to `user_id` (a binding to a deleted role grants nothing).
pub(crate) fn global_rules(
    user_id: &str,
    grbs: &[GlobalRoleBinding],
    roles: &[GlobalRole],
) -> Vec<PolicyRule> {
    let roles: HashMap<&str, &GlobalRole> = roles.iter().map(|r| (r.metadata.name.as_str(), r)).collect();
    grbs.iter()
        .filter(|b| !user_id.is_empty() && b.spec.user_name == user_id)
        .filter_map(|b| roles.get(b.spec.global_role_name.as_str()))
        .flat_map(|r| r.spec.rules.iter().cloned())
        .collect()
}

/// Everything membership in one cluster is decided from, read once.
pub(crate) struct ClusterMembers<'a> {
    /// The cluster.
    pub(crate) cluster: &'a Cluster,
    /// Cluster role template bindings (others' are ignored).
    pub(crate) crtbs: &'a [ClusterRoleTemplateBinding],
    /// Project role template bindings (others' are ignored).
    pub(crate) prtbs: &'a [ProjectRoleTemplateBinding],
    /// Projects (others' are ignored).
    pub(crate) projects: &'a [Project],
}

impl ClusterMembers<'_> {
    /// Whether `user` has a binding that counts in the cluster.
    pub(crate) fn is_member(&self, user: &UserInfo) -> bool {
        let cluster = &self.cluster.metadata;
        if self.crtbs.iter().any(|b| crtb_grants(b, user, cluster)) {
            return true;
        }
        self.prtbs.iter().filter(|b| prtb_candidate(b, user, &cluster.name)).any(|b| {
            let Some((_, p)) = project_ref(&b.spec.project_name) else { return false };
            self.projects
                .iter()
                .any(|project| project.metadata.name == p && prtb_counts(b, &project.metadata, cluster))
        })
    }

    /// Whether a PRTB renders in the cluster: its project exists now and it was made for it.
    pub(crate) fn prtb_counts(&self, b: &ProjectRoleTemplateBinding) -> bool {
        let Some((_, p)) = project_ref(&b.spec.project_name) else { return false };
        self.projects.iter().any(|project| {
            project.metadata.name == p && prtb_counts(b, &project.metadata, &self.cluster.metadata)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rancher_core::model::{
        ClusterRoleTemplateBindingSpec, ClusterSpec, ProjectRoleTemplateBindingSpec, ProjectSpec,
    };

    use super::*;

    fn user(id: &str) -> UserInfo {
        UserInfo {
            username: id.into(),
            uid: String::new(),
            groups: vec![],
            extra: BTreeMap::from([("principalid".to_owned(), vec![format!("local://{id}")])]),
        }
    }

    fn cluster(uid: &str, made: &str) -> Cluster {
        let mut c = Cluster::new("edge", ClusterSpec::default());
        c.metadata.uid = uid.into();
        c.metadata.creation_timestamp = Some(made.parse().unwrap());
        c
    }

    fn crtb(user: &str, for_cluster: &Cluster) -> ClusterRoleTemplateBinding {
        let mut b = ClusterRoleTemplateBinding::new(
            "b",
            ClusterRoleTemplateBindingSpec {
                user_name: user.into(),
                cluster_name: "edge".into(),
                role_template_name: "cluster-owner".into(),
                ..Default::default()
            },
        );
        b.metadata.namespace = Some("edge".into());
        owner::stamp(&mut b.metadata, CLUSTER_UID_ANNOTATION, &for_cluster.metadata);
        b
    }

    fn project(uid: &str, for_cluster: &Cluster) -> Project {
        let mut p = Project::new("p-web", ProjectSpec { cluster_name: "edge".into(), ..Default::default() });
        p.metadata.namespace = Some("edge".into());
        p.metadata.uid = uid.into();
        owner::stamp(&mut p.metadata, CLUSTER_UID_ANNOTATION, &for_cluster.metadata);
        p
    }

    fn prtb(user: &str, for_project: &Project) -> ProjectRoleTemplateBinding {
        let mut b = ProjectRoleTemplateBinding::new(
            "pb",
            ProjectRoleTemplateBindingSpec {
                user_name: user.into(),
                project_name: "edge:p-web".into(),
                role_template_name: "project-member".into(),
                ..Default::default()
            },
        );
        b.metadata.namespace = Some("p-web".into());
        owner::stamp(&mut b.metadata, PROJECT_UID_ANNOTATION, &for_project.metadata);
        b
    }

    #[test]
    fn bindings_of_an_earlier_cluster_or_project_of_the_same_name_grant_nothing() {
        let old = cluster("c-old", "2030-01-01T00:00:00Z");
        let new = cluster("c-new", "2030-01-01T01:00:00Z");
        let alice = user("u-alice");
        let none: [ClusterRoleTemplateBinding; 0] = [];
        let crtbs = [crtb("u-alice", &old)];
        let members = ClusterMembers { cluster: &old, crtbs: &crtbs, prtbs: &[], projects: &[] };
        assert!(members.is_member(&alice));
        let members = ClusterMembers { cluster: &new, crtbs: &crtbs, prtbs: &[], projects: &[] };
        assert!(!members.is_member(&alice), "a leftover CRTB of the old cluster");

        let p_old = project("p-old", &new);
        let prtbs = [prtb("u-alice", &p_old)];
        let projects = [p_old.clone()];
        let members = ClusterMembers { cluster: &new, crtbs: &none, prtbs: &prtbs, projects: &projects };
        assert!(members.is_member(&alice));
        assert!(!members.is_member(&user("u-bob")));
        // The project was deleted and made again under the same name: the old PRTB does not count.
        let projects = [project("p-new", &new)];
        let members = ClusterMembers { cluster: &new, crtbs: &none, prtbs: &prtbs, projects: &projects };
        assert!(!members.is_member(&alice));
        // No project at all.
        let members = ClusterMembers { cluster: &new, crtbs: &none, prtbs: &prtbs, projects: &[] };
        assert!(!members.is_member(&alice));
        // A project made for the old cluster does not carry its PRTBs into the new one.
        let projects = [p_old];
        let members = ClusterMembers { cluster: &old, crtbs: &none, prtbs: &prtbs, projects: &projects };
        assert!(!members.is_member(&alice), "the project belongs to another cluster incarnation");
    }

    #[test]
    fn a_terminating_cluster_has_no_members() {
        let mut c = cluster("c-1", "2030-01-01T00:00:00Z");
        let crtbs = [crtb("u-alice", &c)];
        c.metadata.deletion_timestamp = Some("2030-01-02T00:00:00Z".parse().unwrap());
        let members = ClusterMembers { cluster: &c, crtbs: &crtbs, prtbs: &[], projects: &[] };
        assert!(!members.is_member(&user("u-alice")));
    }
}
