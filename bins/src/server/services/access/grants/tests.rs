//! What a subject holds where, and how holdings compare, on in-memory snapshots.

use rancher_core::model::{
    ClusterRoleTemplateBindingSpec, GlobalRoleBindingSpec, GlobalRoleSpec, ProjectRoleTemplateBindingSpec,
    RoleTemplateSpec, UserSpec,
};

use super::*;

fn rule(verbs: &[&str], group: &str, resources: &[&str]) -> PolicyRule {
    let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect();
    PolicyRule {
        verbs: v(verbs),
        api_groups: vec![group.into()],
        resources: v(resources),
        ..Default::default()
    }
}

fn template(name: &str, rules: Vec<PolicyRule>, inherits: &[&str], external: bool) -> RoleTemplate {
    RoleTemplate::new(
        name,
        RoleTemplateSpec {
            context: "cluster".into(),
            rules,
            role_template_names: inherits.iter().map(|s| (*s).to_owned()).collect(),
            external,
            ..Default::default()
        },
    )
}

fn crtb(cluster: &str, user: &str, group: &str, rt: &str) -> ClusterRoleTemplateBinding {
    let mut b = ClusterRoleTemplateBinding::new(
        &format!("{user}{group}-{rt}"),
        ClusterRoleTemplateBindingSpec {
            user_name: user.into(),
            group_principal_name: group.into(),
            cluster_name: cluster.into(),
            role_template_name: rt.into(),
            ..Default::default()
        },
    );
    b.metadata.namespace = Some(cluster.into());
    b
}

fn user(id: &str, groups: &[&str]) -> User {
    let mut u =
        User::new(id, UserSpec { principal_ids: vec![format!("local://{id}")], ..Default::default() });
    u.status.group_principals = groups.iter().map(|s| (*s).to_owned()).collect();
    u
}

fn scope(cluster: &str, project: Option<&str>) -> GrantScope {
    GrantScope { cluster: cluster.into(), project: project.map(str::to_owned) }
}

fn grants() -> Grants {
    let pods = rule(&["get", "list"], "", &["pods"]);
    let owner = rule(&["*"], "*", &["*"]);
    let roles = [
        GlobalRole::new("admin", GlobalRoleSpec { rules: everything(), ..Default::default() }),
        GlobalRole::new(
            "pod-reader-everywhere",
            GlobalRoleSpec { inherited_cluster_roles: vec!["pod-reader".into()], ..Default::default() },
        ),
    ];
    Grants {
        templates: vec![
            template("pod-reader", vec![pods], &[], false),
            template("owner", vec![owner], &[], false),
            template("kube-admin", vec![], &[], true),
            template(
                "project-admin",
                vec![rule(&["*"], MANAGEMENT_GROUP, &["projectroletemplatebindings"])],
                &["kube-admin"],
                false,
            ),
            template("edit", vec![], &[], true),
        ],
        roles: roles.into_iter().map(|r| (r.metadata.name.clone(), r)).collect(),
        grbs: vec![
            GlobalRoleBinding::new(
                "b1",
                GlobalRoleBindingSpec {
                    user_name: "u-admin".into(),
                    global_role_name: "admin".into(),
                    ..Default::default()
                },
            ),
            GlobalRoleBinding::new(
                "b2",
                GlobalRoleBindingSpec {
                    user_name: "u-reader".into(),
                    global_role_name: "pod-reader-everywhere".into(),
                    ..Default::default()
                },
            ),
        ],
        crtbs: vec![crtb("c1", "u-olive", "", "owner"), crtb("c1", "", "ldap://team", "pod-reader")],
        prtbs: vec![{
            let mut b = ProjectRoleTemplateBinding::new(
                "p1",
                ProjectRoleTemplateBindingSpec {
                    user_name: "u-carol".into(),
                    project_name: "c1:shop".into(),
                    role_template_name: "project-admin".into(),
                    ..Default::default()
                },
            );
            b.metadata.namespace = Some("shop".into());
            b
        }],
    }
}

fn held(g: &Grants, u: &User, s: &GrantScope) -> Held {
    g.in_scope(&Subject::of(u), &g.global_rules(&u.metadata.name), s)
}

#[test]
fn holdings_come_from_the_bindings_of_that_cluster_or_project_only() {
    let g = grants();
    let pods = g.flatten("pod-reader", None).unwrap();
    let owner = g.flatten("owner", None).unwrap();
    let olive = user("u-olive", &[]);
    assert!(held(&g, &olive, &scope("c1", None)).covers(&owner).is_ok());
    assert!(
        held(&g, &olive, &scope("c1", Some("shop"))).covers(&owner).is_ok(),
        "cluster roles reach its projects"
    );
    assert!(held(&g, &olive, &scope("c2", None)).covers(&pods).is_err(), "nothing in another cluster");
    // Through a group the user was last seen in.
    let member = user("u-member", &["ldap://team"]);
    assert!(held(&g, &member, &scope("c1", None)).covers(&pods).is_ok());
    assert!(held(&g, &member, &scope("c1", None)).covers(&owner).is_err());
    assert!(held(&g, &user("u-other", &[]), &scope("c1", None)).covers(&pods).is_err());
    // A project binding holds in its project, not in the cluster.
    let carol = user("u-carol", &[]);
    let project_admin = g.flatten("project-admin", None).unwrap();
    assert!(held(&g, &carol, &scope("c1", Some("shop"))).covers(&project_admin).is_ok());
    assert!(held(&g, &carol, &scope("c1", None)).covers(&project_admin).is_err());
    assert!(
        held(&g, &carol, &scope("c2", Some("shop"))).covers(&project_admin).is_err(),
        "same name, other cluster"
    );
}

#[test]
fn global_roles_hold_everywhere() {
    let g = grants();
    let admin = user("u-admin", &[]);
    assert!(held(&g, &admin, &scope("any", None)).all, "a global admin holds everything in every cluster");
    let reader = user("u-reader", &[]);
    let pods = g.flatten("pod-reader", None).unwrap();
    assert!(held(&g, &reader, &scope("any", None)).covers(&pods).is_ok(), "inherited cluster roles");
    assert!(held(&g, &reader, &scope("any", None)).covers(&g.flatten("owner", None).unwrap()).is_err());
}

#[test]
fn external_cluster_roles_are_held_by_name_by_a_larger_default_role_or_by_every_rule() {
    let g = grants();
    let mut has_admin = Held::default();
    has_admin.add(Flattened { rules: vec![], external: vec!["admin".into()] });
    let wants = |name: &str| {
        let mut w = Held::default();
        w.add(Flattened { rules: vec![], external: vec![name.into()] });
        w
    };
    assert!(has_admin.covers(&wants("admin")).is_ok());
    assert!(has_admin.covers(&wants("edit")).is_ok(), "admin includes edit");
    assert!(has_admin.covers(&wants("view")).is_ok(), "and view");
    assert!(has_admin.covers(&wants("cluster-admin")).is_err());
    let mut has_edit = Held::default();
    has_edit.add(Flattened { rules: vec![], external: vec!["edit".into()] });
    let err = has_edit.covers(&wants("admin")).unwrap_err();
    assert!(err.to_string().contains("\"admin\""), "{err}");
    let owner = g.flatten("owner", None).unwrap();
    assert!(owner.covers(&wants("admin")).is_err(), "resources alone are not every URL too");
    let everything_held = Held { rules: everything(), ..Default::default() };
    assert!(everything_held.covers(&wants("cluster-admin")).is_ok());
    assert!(everything_held.covers(&Held::everything()).is_err(), "only a global admin is everything");
}

#[test]
fn a_template_being_written_is_flattened_with_its_new_rules() {
    let g = grants();
    let new = template("kube-admin", vec![rule(&["*"], "", &["secrets"])], &["pod-reader"], false);
    let f = g.flatten("project-admin", Some(&new)).unwrap();
    assert!(f.external.is_empty(), "the stand-in replaces the stored external template");
    assert!(
        f.rules.contains(&rule(&["*"], "", &["secrets"]))
            && f.rules.contains(&rule(&["get", "list"], "", &["pods"]))
    );
    assert!(matches!(g.flatten("missing", None), Err(RenderError::MissingTemplate(_))));
}

fn caller(u: User) -> Caller {
    Caller { user: u, token_name: "token-x".into(), rules: Arc::new(vec![]) }
}

#[test]
fn members_are_those_with_a_binding_there() {
    let g = grants();
    let carol = caller(user("u-carol", &[]));
    assert!(g.is_member(&carol, &scope("c1", Some("shop")), false));
    assert!(!g.is_member(&carol, &scope("c1", None), false), "a project member is no cluster member");
    assert!(g.is_member(&carol, &scope("c1", None), true), "but is in the cluster of her project");
    assert!(!g.is_member(&carol, &scope("c2", Some("shop")), false), "same name, other cluster");
    assert!(!g.is_member(&carol, &scope("c2", None), true));
    assert!(!g.is_member(&carol, &scope("c1", Some("ops")), false), "another project");
    let member = caller(user("u-member", &["ldap://team"]));
    assert!(g.is_member(&member, &scope("c1", None), false), "through a group");
    assert!(
        !g.is_member(&member, &scope("c1", Some("shop")), true),
        "a cluster binding is no project membership"
    );
    let admin = caller(user("u-admin", &[]));
    assert!(!g.is_member(&admin, &scope("c1", None), true), "global roles are no membership");
}
