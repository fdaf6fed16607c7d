//! Rendering role templates and their bindings into the Kubernetes RBAC objects of one downstream
//! cluster. Pure functions: the caller reads the management objects and the cluster's namespaces,
//! calls [`render_cluster`], and makes the cluster look like the result.
//!
//! # Naming (where we differ from Rancher)
//! * A role template `T` renders to the ClusterRole **`cattle-rt-T`** holding `T`'s rules and the
//!   rules of every template it inherits (`roleTemplateNames`, followed transitively, each template
//!   once, so cycles are harmless). Rancher names the ClusterRole `T` itself; the prefix keeps us from
//!   ever overwriting a ClusterRole someone made by hand (`admin`, `edit`, …).
//! * An `external` template renders nothing: its bindings reference the existing ClusterRole named
//!   `T` — also when it is reached through inheritance.
//! * A ClusterRoleTemplateBinding renders one ClusterRoleBinding per ClusterRole it references,
//!   named `cattle-crtb-<hash>`; a ProjectRoleTemplateBinding renders one RoleBinding per
//!   ClusterRole in every namespace of its project (annotation `field.cattle.io/projectId:
//!   <cluster>:<project>`), named `cattle-prtb-<hash>`. The hash covers the binding's key and the
//!   ClusterRole, so a name never has to change its (immutable) `roleRef`.
//!
//! Everything rendered carries [`MANAGED_BY_LABEL`]`=`[`MANAGED_BY_VALUE`]; bindings also carry
//! [`BINDING_LABEL`] (a hash of the owning binding's key) and the readable key in
//! [`BINDING_ANNOTATION`]. A controller must only ever update or delete objects with the managed-by
//! label, so RBAC a user did not get through us is never touched.
//!
//! ```
//! use rancher_auth::rbac_render::{render_cluster, NamespaceInfo, Inputs};
//! use rancher_core::model::*;
//!
//! let member = RoleTemplate::new("project-member", RoleTemplateSpec {
//!     context: "project".into(),
//!     rules: vec![PolicyRule { verbs: vec!["get".into(), "list".into()], api_groups: vec!["".into()],
//!                              resources: vec!["pods".into()], ..Default::default() }],
//!     ..Default::default()
//! });
//! let prtb = ProjectRoleTemplateBinding::new("prtb-1", ProjectRoleTemplateBindingSpec {
//!     user_name: "u-alice".into(), project_name: "c-1:p-1".into(),
//!     role_template_name: "project-member".into(), ..Default::default()
//! });
//! let namespaces = [NamespaceInfo::new("shop", Some("c-1:p-1")), NamespaceInfo::new("other", None)];
//! let out = render_cluster(&Inputs {
//!     cluster: "c-1", templates: &[member], crtbs: &[], prtbs: &[prtb], namespaces: &namespaces,
//! });
//! assert!(out.cluster_roles.contains_key("cattle-rt-project-member"));
//! assert_eq!(out.role_bindings.keys().map(|(ns, _)| ns.as_str()).collect::<Vec<_>>(), ["shop"]);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rancher_core::model::{ClusterRoleTemplateBinding, PolicyRule, ProjectRoleTemplateBinding, RoleTemplate};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The label every object we render carries.
pub const MANAGED_BY_LABEL: &str = "management.cattle.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "rancher-rs";
/// On rendered bindings: a hash of the owning binding's key (see [`binding_key_hash`]).
pub const BINDING_LABEL: &str = "management.cattle.io/binding";
/// On rendered bindings: the owning binding's readable key, `crtb:<ns>/<name>` or `prtb:<ns>/<name>`.
pub const BINDING_ANNOTATION: &str = "management.cattle.io/binding-key";
/// On rendered ClusterRoles: the role template (as a label value; hashed when too long).
pub const ROLE_TEMPLATE_LABEL: &str = "management.cattle.io/role-template";
/// The namespace annotation that puts a namespace in a project: `<cluster>:<project>`.
pub const PROJECT_ID_ANNOTATION: &str = "field.cattle.io/projectId";
/// The prefix of the ClusterRoles we render.
pub const CLUSTER_ROLE_PREFIX: &str = "cattle-rt-";

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const RBAC_VERSION: &str = "rbac.authorization.k8s.io/v1";

/// Why a binding or role template cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The binding names a role template that does not exist (or one it inherits does not).
    #[error("role template {0:?} does not exist")]
    MissingTemplate(String),
    /// The role template's context does not fit the binding (a cluster binding needs `cluster`, a
    /// project binding `project`).
    #[error("role template {template:?} has context {context:?}; this binding needs {wanted:?}")]
    WrongContext {
        /// The template.
        template: String,
        /// Its context.
        context: String,
        /// The context the binding needs.
        wanted: &'static str,
    },
    /// The binding names no subject, more than one, or one we cannot express downstream.
    #[error("binding subject: {0}")]
    Subject(String),
    /// The binding's project is not `<cluster>:<project>`.
    #[error("projectName {0:?} is not <cluster>:<project>")]
    ProjectName(String),
}

/// A downstream namespace and the project it is in (its `field.cattle.io/projectId` annotation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// The namespace's name.
    pub name: String,
    /// The annotation's value, `<cluster>:<project>`, when present.
    pub project_id: Option<String>,
}

impl NamespaceInfo {
    /// A namespace, in the project `project_id` or in none.
    pub fn new(name: &str, project_id: Option<&str>) -> Self {
        NamespaceInfo { name: name.to_owned(), project_id: project_id.map(str::to_owned) }
    }
}

/// Everything [`render_cluster`] reads.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The cluster's id; bindings of other clusters are ignored.
    pub cluster: &'a str,
    /// Every role template.
    pub templates: &'a [RoleTemplate],
    /// Cluster role template bindings (those of other clusters are ignored).
    pub crtbs: &'a [ClusterRoleTemplateBinding],
    /// Project role template bindings (those of other clusters' projects are ignored).
    pub prtbs: &'a [ProjectRoleTemplateBinding],
    /// The cluster's namespaces.
    pub namespaces: &'a [NamespaceInfo],
}

/// A binding that rendered nothing, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// `crtb:<ns>/<name>` or `prtb:<ns>/<name>`.
    pub binding: String,
    /// Why.
    pub error: RenderError,
}

/// The RBAC objects one cluster should hold, as Kubernetes JSON.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DesiredRbac {
    /// ClusterRoles by name.
    pub cluster_roles: BTreeMap<String, Value>,
    /// ClusterRoleBindings by name.
    pub cluster_role_bindings: BTreeMap<String, Value>,
    /// RoleBindings by (namespace, name).
    pub role_bindings: BTreeMap<(String, String), Value>,
    /// Bindings that could not be rendered (they get nothing: failing closed).
    pub skipped: Vec<Skipped>,
}

/// A role template with its inheritance resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flattened {
    /// Rules of the template and every non-external template it inherits, without duplicates, in
    /// first-seen order.
    pub rules: Vec<PolicyRule>,
    /// Existing ClusterRoles to reference: the names of the external templates reached.
    pub external: Vec<String>,
}

/// Resolves `name`'s inheritance: its rules plus those of every template in `roleTemplateNames`,
/// transitively. Each template is visited once, so a cycle ends instead of looping.
///
/// # Errors
/// [`RenderError::MissingTemplate`] when `name` or a template it inherits does not exist.
pub fn flatten(name: &str, templates: &HashMap<&str, &RoleTemplate>) -> Result<Flattened, RenderError> {
    let mut out = Flattened::default();
    let mut seen = BTreeSet::new();
    let mut stack = vec![name.to_owned()];
    while let Some(current) = stack.pop() {
        if !seen.insert(current.clone()) {
            continue;
        }
        let t =
            templates.get(current.as_str()).ok_or_else(|| RenderError::MissingTemplate(current.clone()))?;
        if t.spec.external {
            out.external.push(current.clone());
        } else {
            for r in &t.spec.rules {
                if !out.rules.contains(r) {
                    out.rules.push(r.clone());
                }
            }
        }
        // Reverse so that inherited templates are visited in the order they are listed.
        stack.extend(t.spec.role_template_names.iter().rev().cloned());
    }
    Ok(out)
}

/// The ClusterRole we render for role template `template`.
pub fn cluster_role_name(template: &str) -> String {
    format!("{CLUSTER_ROLE_PREFIX}{template}")
}

/// The value of [`BINDING_LABEL`] for a binding key: 16 hex digits of its SHA-256.
pub fn binding_key_hash(key: &str) -> String {
    short_hash(&[key])
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..8])
}

/// `s` when it is a valid label value, otherwise a hash of it.
fn label_value(s: &str) -> String {
    let ok = s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_none_or(|c| c.is_ascii_alphanumeric());
    if ok { s.to_owned() } else { format!("h-{}", short_hash(&[s])) }
}

fn metadata(name: &str, namespace: Option<&str>, labels: Value, annotations: Value) -> Value {
    let mut m = json!({"name": name, "labels": labels});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        m["annotations"] = annotations;
    }
    m
}

fn subject(
    user_name: &str,
    user_principal_name: &str,
    group_principal_name: &str,
    group_name: &str,
    service_account: &str,
) -> Result<Value, RenderError> {
    let group = if group_principal_name.is_empty() { group_name } else { group_principal_name };
    let set = [!user_name.is_empty(), !group.is_empty(), !service_account.is_empty()];
    match set {
        [true, false, false] => Ok(json!({"kind": "User", "apiGroup": RBAC_GROUP, "name": user_name})),
        [false, true, false] => Ok(json!({"kind": "Group", "apiGroup": RBAC_GROUP, "name": group})),
        [false, false, true] => {
            let (ns, name) = service_account
                .split_once(':')
                .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
                .ok_or_else(|| {
                    RenderError::Subject(format!("serviceAccount {service_account:?} is not namespace:name"))
                })?;
            Ok(json!({"kind": "ServiceAccount", "name": name, "namespace": ns}))
        }
        [false, false, false] if !user_principal_name.is_empty() => Err(RenderError::Subject(
            "userPrincipalName without userName: the user's id is needed downstream".into(),
        )),
        [false, false, false] => Err(RenderError::Subject("no user, group or service account".into())),
        _ => Err(RenderError::Subject("more than one of user, group and service account".into())),
    }
}

struct Renderer<'a> {
    by_name: HashMap<&'a str, &'a RoleTemplate>,
    out: DesiredRbac,
}

impl<'a> Renderer<'a> {
    /// The ClusterRoles a binding to `template` references, rendering ours on the way.
    fn role_refs(&mut self, template: &str, wanted: &'static str) -> Result<Vec<String>, RenderError> {
        let t =
            self.by_name.get(template).ok_or_else(|| RenderError::MissingTemplate(template.to_owned()))?;
        if t.spec.context != wanted {
            return Err(RenderError::WrongContext {
                template: template.to_owned(),
                context: t.spec.context.clone(),
                wanted,
            });
        }
        let flat = flatten(template, &self.by_name)?;
        let mut refs = Vec::new();
        if !t.spec.external || !flat.rules.is_empty() {
            let name = cluster_role_name(template);
            self.out.cluster_roles.entry(name.clone()).or_insert_with(|| {
                let labels = json!({
                    MANAGED_BY_LABEL: MANAGED_BY_VALUE,
                    ROLE_TEMPLATE_LABEL: label_value(template),
                });
                json!({
                    "apiVersion": RBAC_VERSION,
                    "kind": "ClusterRole",
                    "metadata": metadata(&name, None, labels, json!({})),
                    "rules": flat.rules,
                })
            });
            refs.push(name);
        }
        refs.extend(flat.external);
        Ok(refs)
    }

    fn crtb(&mut self, b: &ClusterRoleTemplateBinding) -> Result<(), RenderError> {
        let s = &b.spec;
        let subject =
            subject(&s.user_name, &s.user_principal_name, &s.group_principal_name, &s.group_name, "")?;
        let key = binding_key("crtb", b.metadata.namespace.as_deref(), &b.metadata.name);
        for role in self.role_refs(&s.role_template_name, "cluster")? {
            let name = format!("cattle-crtb-{}", short_hash(&[&key, &role]));
            let obj = binding_object("ClusterRoleBinding", &name, None, &key, &role, &subject);
            self.out.cluster_role_bindings.insert(name, obj);
        }
        Ok(())
    }

    fn prtb(&mut self, b: &ProjectRoleTemplateBinding, namespaces: &[&str]) -> Result<(), RenderError> {
        let s = &b.spec;
        let subject = subject(
            &s.user_name,
            &s.user_principal_name,
            &s.group_principal_name,
            &s.group_name,
            &s.service_account,
        )?;
        let key = binding_key("prtb", b.metadata.namespace.as_deref(), &b.metadata.name);
        for role in self.role_refs(&s.role_template_name, "project")? {
            let name = format!("cattle-prtb-{}", short_hash(&[&key, &role]));
            for ns in namespaces {
                let obj = binding_object("RoleBinding", &name, Some(ns), &key, &role, &subject);
                self.out.role_bindings.insert(((*ns).to_owned(), name.clone()), obj);
            }
        }
        Ok(())
    }
}

fn binding_key(kind: &str, namespace: Option<&str>, name: &str) -> String {
    format!("{kind}:{}/{name}", namespace.unwrap_or_default())
}

fn binding_object(
    kind: &str,
    name: &str,
    namespace: Option<&str>,
    key: &str,
    role: &str,
    subject: &Value,
) -> Value {
    let labels = json!({MANAGED_BY_LABEL: MANAGED_BY_VALUE, BINDING_LABEL: binding_key_hash(key)});
    json!({
        "apiVersion": RBAC_VERSION,
        "kind": kind,
        "metadata": metadata(name, namespace, labels, json!({BINDING_ANNOTATION: key})),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [subject],
    })
}

/// The cluster part of a project id `<cluster>:<project>`.
///
/// # Errors
/// [`RenderError::ProjectName`] when it is not of that form.
pub fn project_cluster(project_id: &str) -> Result<&str, RenderError> {
    match project_id.split_once(':') {
        Some((c, p)) if !c.is_empty() && !p.is_empty() && !p.contains(':') => Ok(c),
        _ => Err(RenderError::ProjectName(project_id.to_owned())),
    }
}

/// Renders every binding of `inputs.cluster` into the RBAC objects that cluster should hold.
/// Bindings that cannot be rendered are listed in [`DesiredRbac::skipped`] and get nothing.
pub fn render_cluster(inputs: &Inputs<'_>) -> DesiredRbac {
    let mut r = Renderer {
        by_name: inputs.templates.iter().map(|t| (t.metadata.name.as_str(), t)).collect(),
        out: DesiredRbac::default(),
    };
    let mut skipped = Vec::new();
    for b in inputs.crtbs {
        let in_cluster = if b.spec.cluster_name.is_empty() {
            b.metadata.namespace.as_deref() == Some(inputs.cluster)
        } else {
            b.spec.cluster_name == inputs.cluster
        };
        if !in_cluster {
            continue;
        }
        if let Err(error) = r.crtb(b) {
            skipped.push(Skipped {
                binding: binding_key("crtb", b.metadata.namespace.as_deref(), &b.metadata.name),
                error,
            });
        }
    }
    for b in inputs.prtbs {
        let key = binding_key("prtb", b.metadata.namespace.as_deref(), &b.metadata.name);
        match project_cluster(&b.spec.project_name) {
            Ok(c) if c != inputs.cluster => continue,
            Ok(_) => {}
            Err(error) => {
                skipped.push(Skipped { binding: key, error });
                continue;
            }
        }
        let namespaces: Vec<&str> = inputs
            .namespaces
            .iter()
            .filter(|n| n.project_id.as_deref() == Some(b.spec.project_name.as_str()))
            .map(|n| n.name.as_str())
            .collect();
        if let Err(error) = r.prtb(b, &namespaces) {
            skipped.push(Skipped { binding: key, error });
        }
    }
    r.out.skipped = skipped;
    r.out
}

/// Whether `live` (as read from the cluster) differs from `desired` in anything we manage: our
/// labels and annotations, `rules`, `subjects` or `roleRef`. Fields the API server adds are ignored.
pub fn differs(desired: &Value, live: &Value) -> bool {
    for field in ["labels", "annotations"] {
        if let Some(want) = desired["metadata"][field].as_object()
            && want.iter().any(|(k, v)| live["metadata"][field].get(k) != Some(v))
        {
            return true;
        }
    }
    let rules = |v: &Value| serde_json::from_value::<Vec<PolicyRule>>(v["rules"].clone()).unwrap_or_default();
    if desired.get("rules").is_some() && rules(desired) != rules(live) {
        return true;
    }
    let subjects = |v: &Value| -> Vec<(String, String, String, String)> {
        v["subjects"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        let f = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                        (f("kind"), f("apiGroup"), f("name"), f("namespace"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if desired.get("subjects").is_some() && subjects(desired) != subjects(live) {
        return true;
    }
    desired.get("roleRef").is_some() && desired["roleRef"] != live["roleRef"]
}

/// Whether an object read from a cluster carries our [`MANAGED_BY_LABEL`].
pub fn is_managed(object: &Value) -> bool {
    object["metadata"]["labels"][MANAGED_BY_LABEL].as_str() == Some(MANAGED_BY_VALUE)
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{
        ClusterRoleTemplateBindingSpec, ProjectRoleTemplateBindingSpec, RoleTemplateSpec,
    };

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

    fn crtb(
        name: &str,
        cluster: &str,
        user: &str,
        group: &str,
        template: &str,
    ) -> ClusterRoleTemplateBinding {
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
        assert_eq!(
            flatten("self", &index(&[template("self", "project", vec![], &["self"])])).unwrap().rules,
            []
        );
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
                (
                    b["subjects"][0]["name"].as_str().unwrap().into(),
                    b["roleRef"]["name"].as_str().unwrap().into(),
                )
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
        assert_eq!(
            rb["subjects"][0],
            json!({"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"})
        );
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
}
