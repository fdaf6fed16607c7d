//! Unit tests of the rendering.

use rancher_core::model::{ClusterRoleTemplateBindingSpec, ProjectRoleTemplateBindingSpec, RoleTemplateSpec};

use super::*;

fn rule(verb: &str, resource: &str) -> PolicyRule {
    PolicyRule {
        verbs: vec![verb.into()],
        api_groups: vec!["".into()],
        resources: vec![resource.into()],
        ..Default::default()
    }
}

fn template(name: &str, context: &str, rules: Vec<PolicyRule>, inherits: &[&str]) -> RoleTemplate {
    RoleTemplate::new(
        name,
        RoleTemplateSpec {
            context: context.into(),
            rules,
            role_template_names: inherits.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        },
    )
}

fn crtb(name: &str, cluster: &str, user: &str, group: &str, template: &str) -> ClusterRoleTemplateBinding {
    let mut b = ClusterRoleTemplateBinding::new(
        name,
        ClusterRoleTemplateBindingSpec {
            user_name: user.into(),
            group_principal_name: group.into(),
            cluster_name: cluster.into(),
            role_template_name: template.into(),
            ..Default::default()
        },
    );
    b.metadata.namespace = Some(cluster.into());
    b
}

fn prtb(name: &str, project: &str, user: &str, template: &str) -> ProjectRoleTemplateBinding {
    let mut b = ProjectRoleTemplateBinding::new(
        name,
        ProjectRoleTemplateBindingSpec {
            user_name: user.into(),
            project_name: project.into(),
            role_template_name: template.into(),
            ..Default::default()
        },
    );
    b.metadata.namespace = project.split_once(':').map(|(_, p)| p.to_owned());
    b
}

fn index(ts: &[RoleTemplate]) -> HashMap<&str, &RoleTemplate> {
    ts.iter().map(|t| (t.metadata.name.as_str(), t)).collect()
}

#[test]
fn inheritance_is_flattened_once_even_through_a_cycle() {
    let ts = vec![
        template("a", "project", vec![rule("get", "pods")], &["b"]),
        template("b", "project", vec![rule("list", "pods"), rule("get", "pods")], &["c"]),
        template("c", "project", vec![rule("watch", "pods")], &["a"]),
    ];
    let flat = flatten("a", &index(&ts)).unwrap();
    assert_eq!(flat.rules, vec![rule("get", "pods"), rule("list", "pods"), rule("watch", "pods")]);
    assert!(flat.external.is_empty());
    assert_eq!(flatten("self", &index(&[template("self", "project", vec![], &["self"])])).unwrap().rules, []);
}

#[test]
fn a_missing_inherited_template_is_an_error() {
    let ts = vec![template("a", "project", vec![rule("get", "pods")], &["gone"])];
    assert_eq!(flatten("a", &index(&ts)), Err(RenderError::MissingTemplate("gone".into())));
}

#[test]
fn external_templates_reference_the_existing_cluster_role() {
    let mut view = template("view", "project", vec![], &[]);
    view.spec.external = true;
    let ts = vec![view, template("mine", "project", vec![rule("get", "secrets")], &["view"])];
    let ns = [NamespaceInfo::new("n1", Some("c-1:p-1"))];
    let prtbs = [prtb("b1", "c-1:p-1", "u-a", "view"), prtb("b2", "c-1:p-1", "u-b", "mine")];
    let out = render_cluster(&Inputs {
        cluster: "c-1",
        templates: &ts,
        crtbs: &[],
        prtbs: &prtbs,
        namespaces: &ns,
    });
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
    // No ClusterRole of ours for the external template; `mine` gets its own plus a ref to `view`.
    assert_eq!(out.cluster_roles.keys().collect::<Vec<_>>(), ["cattle-rt-mine"]);
    let mut refs: Vec<(String, String)> = out
        .role_bindings
        .values()
        .map(|b| {
            (b["subjects"][0]["name"].as_str().unwrap().into(), b["roleRef"]["name"].as_str().unwrap().into())
        })
        .collect();
    refs.sort();
    assert_eq!(
        refs,
        [
            ("u-a".to_owned(), "view".to_owned()),
            ("u-b".into(), "cattle-rt-mine".into()),
            ("u-b".into(), "view".into())
        ]
    );
}

#[test]
fn crtb_renders_cluster_role_bindings_for_users_and_groups_of_this_cluster_only() {
    let ts = vec![template("cluster-owner", "cluster", vec![rule("*", "*")], &[])];
    let crtbs = [
        crtb("b1", "c-1", "u-a", "", "cluster-owner"),
        crtb("b2", "c-1", "", "local://g-devs", "cluster-owner"),
        crtb("b3", "c-2", "u-z", "", "cluster-owner"),
    ];
    let out = render_cluster(&Inputs {
        cluster: "c-1",
        templates: &ts,
        crtbs: &crtbs,
        prtbs: &[],
        namespaces: &[],
    });
    assert_eq!(out.cluster_role_bindings.len(), 2);
    let subjects: BTreeSet<(String, String)> = out
        .cluster_role_bindings
        .values()
        .map(|b| {
            assert_eq!(b["roleRef"]["name"], "cattle-rt-cluster-owner");
            assert_eq!(b["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY_VALUE);
            let s = &b["subjects"][0];
            (s["kind"].as_str().unwrap().into(), s["name"].as_str().unwrap().into())
        })
        .collect();
    assert_eq!(
        subjects,
        BTreeSet::from([("Group".into(), "local://g-devs".into()), ("User".into(), "u-a".into())])
    );
    let cr = &out.cluster_roles["cattle-rt-cluster-owner"];
    assert_eq!(cr["rules"][0]["verbs"], json!(["*"]));
    assert_eq!(cr["metadata"]["labels"][ROLE_TEMPLATE_LABEL], "cluster-owner");
}

#[test]
fn prtb_renders_a_role_binding_in_every_namespace_of_its_project_and_nowhere_else() {
    let ts = vec![template("project-member", "project", vec![rule("*", "pods")], &[])];
    let ns = [
        NamespaceInfo::new("a", Some("c-1:p-1")),
        NamespaceInfo::new("b", Some("c-1:p-1")),
        NamespaceInfo::new("c", Some("c-1:p-2")),
        NamespaceInfo::new("d", None),
    ];
    let prtbs =
        [prtb("m", "c-1:p-1", "u-a", "project-member"), prtb("x", "c-2:p-9", "u-b", "project-member")];
    let out = render_cluster(&Inputs {
        cluster: "c-1",
        templates: &ts,
        crtbs: &[],
        prtbs: &prtbs,
        namespaces: &ns,
    });
    let nss: Vec<&str> = out.role_bindings.keys().map(|(n, _)| n.as_str()).collect();
    assert_eq!(nss, ["a", "b"]);
    let b = out.role_bindings.values().next().unwrap();
    assert_eq!(b["metadata"]["annotations"][BINDING_ANNOTATION], "prtb:p-1/m");
    assert_eq!(b["metadata"]["labels"][BINDING_LABEL], binding_key_hash("prtb:p-1/m"));
}

#[test]
fn bad_bindings_are_skipped_with_a_reason() {
    let ts = vec![
        template("cluster-owner", "cluster", vec![rule("*", "*")], &[]),
        template("project-member", "project", vec![rule("*", "pods")], &[]),
    ];
    let mut principal_only = crtb("p", "c-1", "", "", "cluster-owner");
    principal_only.spec.user_principal_name = "local://u-a".into();
    let crtbs = [
        crtb("ctx", "c-1", "u-a", "", "project-member"),
        crtb("both", "c-1", "u-a", "g", "cluster-owner"),
        crtb("none", "c-1", "u-a", "", "no-such"),
        principal_only,
    ];
    let prtbs = [prtb("badproj", "c-1", "u-a", "project-member")];
    let out = render_cluster(&Inputs {
        cluster: "c-1",
        templates: &ts,
        crtbs: &crtbs,
        prtbs: &prtbs,
        namespaces: &[],
    });
    assert!(out.cluster_role_bindings.is_empty() && out.role_bindings.is_empty());
    let errors: BTreeMap<&str, &RenderError> =
        out.skipped.iter().map(|s| (s.binding.as_str(), &s.error)).collect();
    assert!(matches!(errors["crtb:c-1/ctx"], RenderError::WrongContext { .. }));
    assert!(matches!(errors["crtb:c-1/both"], RenderError::Subject(_)));
    assert_eq!(errors["crtb:c-1/none"], &RenderError::MissingTemplate("no-such".into()));
    assert!(matches!(errors["crtb:c-1/p"], RenderError::Subject(_)));
    assert!(matches!(errors["prtb:/badproj"], RenderError::ProjectName(_)));
}

#[test]
fn service_account_subjects_and_names_are_stable() {
    let ts = vec![template("project-member", "project", vec![rule("*", "pods")], &[])];
    let mut b = prtb("sa", "c-1:p-1", "", "project-member");
    b.spec.service_account = "ci:deployer".into();
    let ns = [NamespaceInfo::new("a", Some("c-1:p-1"))];
    let render = || {
        render_cluster(&Inputs {
            cluster: "c-1",
            templates: &ts,
            crtbs: &[],
            prtbs: std::slice::from_ref(&b),
            namespaces: &ns,
        })
    };
    let (one, two) = (render(), render());
    assert_eq!(one, two);
    let rb = one.role_bindings.values().next().unwrap();
    assert_eq!(rb["subjects"][0], json!({"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}));
}

#[test]
fn differs_ignores_server_added_fields_but_not_ours() {
    let ts = vec![template("project-member", "project", vec![rule("get", "pods")], &[])];
    let ns = [NamespaceInfo::new("a", Some("c-1:p-1"))];
    let prtbs = [prtb("m", "c-1:p-1", "u-a", "project-member")];
    let out = render_cluster(&Inputs {
        cluster: "c-1",
        templates: &ts,
        crtbs: &[],
        prtbs: &prtbs,
        namespaces: &ns,
    });
    let desired = out.role_bindings.values().next().unwrap().clone();
    let mut live = desired.clone();
    live["metadata"]["uid"] = json!("x");
    live["metadata"]["labels"]["extra"] = json!("y");
    assert!(!differs(&desired, &live));
    assert!(is_managed(&live));
    live["subjects"][0]["name"] = json!("u-other");
    assert!(differs(&desired, &live));
    let cr = out.cluster_roles.values().next().unwrap().clone();
    let mut live_cr = cr.clone();
    live_cr["rules"][0]["verbs"] = json!(["get", "delete"]);
    assert!(differs(&cr, &live_cr));
    live_cr["rules"] = cr["rules"].clone();
    live_cr["metadata"]["labels"].as_object_mut().unwrap().remove(MANAGED_BY_LABEL);
    assert!(differs(&cr, &live_cr));
    assert!(!is_managed(&live_cr));
}

#[test]
fn long_names_become_valid_label_values() {
    let long = "x".repeat(80);
    let v = label_value(&long);
    assert!(v.len() <= 63 && v.starts_with("h-"));
    assert_eq!(label_value("cluster-owner"), "cluster-owner");
}
