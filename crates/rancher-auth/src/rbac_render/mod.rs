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

mod objects;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rancher_core::model::{ClusterRoleTemplateBinding, PolicyRule, ProjectRoleTemplateBinding, RoleTemplate};
use serde_json::{Value, json};

use objects::{RBAC_VERSION, binding_key, binding_object, label_value, metadata, short_hash, subject};
pub use objects::{binding_key_hash, differs, is_managed};

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
