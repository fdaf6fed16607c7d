//! The resources a sim serves: the built-in table and those defined by stored CustomResourceDefinitions.

use std::sync::LazyLock;

use serde_json::Value;

use crate::store::Store;

/// Resource key of CustomResourceDefinitions in the store.
pub(crate) const CRD_KEY: &str = "customresourcedefinitions.apiextensions.k8s.io";

/// What kind of verbs a resource accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verbs {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    All,
    /// Only create (reviews): nothing is stored.
    CreateOnly,
}

/// One served resource (e.g. `deployments` in `apps/v1`).
#[derive(Debug, Clone)]
pub(crate) struct ResourceDef {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) plural: String,
    pub(crate) singular: String,
    pub(crate) kind: String,
    pub(crate) namespaced: bool,
    pub(crate) short_names: Vec<String>,
    pub(crate) categories: Vec<String>,
    pub(crate) verbs: Verbs,
    /// Subresources served (`status`, `scale`, `log`, `exec`, ...).
    pub(crate) subresources: Vec<&'static str>,
    /// Additional printer columns of a CRD version (JSON of `additionalPrinterColumns`).
    pub(crate) printer_columns: Option<Value>,
}

impl ResourceDef {
    /// Store key and message name: `pods`, `deployments.apps`.
    pub(crate) fn key(&self) -> String {
        crate::status::qualified(&self.group, &self.plural)
    }
    /// `v1` or `apps/v1`.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }
    pub(crate) fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }
    /// Verbs listed in discovery.
    pub(crate) fn verb_names(&self) -> Vec<&'static str> {
        match self.verbs {
            Verbs::All => {
                vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
            }
            Verbs::CreateOnly => vec!["create"],
        }
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    all: bool,
    subresources: &'static [&'static str],
}

const fn b(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    subresources: &'static [&'static str],
) -> Builtin {
    Builtin { group, version, plural, kind, namespaced, short, all: true, subresources }
}

const fn review(group: &'static str, plural: &'static str, kind: &'static str, namespaced: bool) -> Builtin {
    Builtin { group, version: "v1", plural, kind, namespaced, short: &[], all: false, subresources: &[] }
}

const BUILTINS: &[Builtin] = &[
    b("", "v1", "namespaces", "Namespace", false, &["ns"], &["status", "finalize"]),
    b("", "v1", "nodes", "Node", false, &["no"], &["status"]),
    b("", "v1", "pods", "Pod", true, &["po"], &["status", "log", "exec", "attach", "portforward", "binding"]),
    b("", "v1", "services", "Service", true, &["svc"], &["status"]),
    b("", "v1", "endpoints", "Endpoints", true, &["ep"], &[]),
    b("", "v1", "configmaps", "ConfigMap", true, &["cm"], &[]),
    b("", "v1", "secrets", "Secret", true, &[], &[]),
    b("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"], &["token"]),
    b("", "v1", "events", "Event", true, &["ev"], &[]),
    b("", "v1", "limitranges", "LimitRange", true, &["limits"], &[]),
    b("", "v1", "resourcequotas", "ResourceQuota", true, &["quota"], &["status"]),
    b("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", true, &["pvc"], &["status"]),
    b("", "v1", "persistentvolumes", "PersistentVolume", false, &["pv"], &["status"]),
    b("", "v1", "replicationcontrollers", "ReplicationController", true, &["rc"], &["status"]),
    b("apps", "v1", "deployments", "Deployment", true, &["deploy"], &["status", "scale"]),
    b("apps", "v1", "replicasets", "ReplicaSet", true, &["rs"], &["status", "scale"]),
    b("apps", "v1", "daemonsets", "DaemonSet", true, &["ds"], &["status"]),
    b("apps", "v1", "statefulsets", "StatefulSet", true, &["sts"], &["status", "scale"]),
    b("apps", "v1", "controllerrevisions", "ControllerRevision", true, &[], &[]),
    b("batch", "v1", "jobs", "Job", true, &[], &["status"]),
    b("batch", "v1", "cronjobs", "CronJob", true, &["cj"], &["status"]),
    b("coordination.k8s.io", "v1", "leases", "Lease", true, &[], &[]),
    b("events.k8s.io", "v1", "events", "Event", true, &["ev"], &[]),
    b("networking.k8s.io", "v1", "ingresses", "Ingress", true, &["ing"], &["status"]),
    b("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", true, &["netpol"], &[]),
    b("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true, &[], &[]),
    b("storage.k8s.io", "v1", "storageclasses", "StorageClass", false, &["sc"], &[]),
    b("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, &["pdb"], &["status"]),
    b("rbac.authorization.k8s.io", "v1", "roles", "Role", true, &[], &[]),
    b("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, &[], &[]),
    b("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, &[], &[]),
    b("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false, &[], &[]),
    b(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        &["status"],
    ),
    review("authorization.k8s.io", "selfsubjectaccessreviews", "SelfSubjectAccessReview", false),
    review("authorization.k8s.io", "selfsubjectrulesreviews", "SelfSubjectRulesReview", false),
    review("authorization.k8s.io", "subjectaccessreviews", "SubjectAccessReview", false),
    review("authorization.k8s.io", "localsubjectaccessreviews", "LocalSubjectAccessReview", true),
    review("authentication.k8s.io", "tokenreviews", "TokenReview", false),
    review("authentication.k8s.io", "selfsubjectreviews", "SelfSubjectReview", false),
];

static BUILTIN_DEFS: LazyLock<Vec<ResourceDef>> = LazyLock::new(|| {
    BUILTINS
        .iter()
        .map(|b| {
            let categories = match (b.group, b.plural) {
                ("", "pods" | "services" | "replicationcontrollers")
                | ("apps", "deployments" | "replicasets" | "daemonsets" | "statefulsets")
                | ("batch", "jobs" | "cronjobs") => vec!["all".to_string()],
                _ => vec![],
            };
            ResourceDef {
                group: b.group.into(),
                version: b.version.into(),
                plural: b.plural.into(),
                singular: b.kind.to_lowercase(),
                kind: b.kind.into(),
                namespaced: b.namespaced,
                short_names: b.short.iter().map(|s| s.to_string()).collect(),
                categories,
                verbs: if b.all { Verbs::All } else { Verbs::CreateOnly },
                subresources: b.subresources.to_vec(),
                printer_columns: None,
            }
        })
        .collect()
});

/// The built-in resources.
pub(crate) fn builtins() -> &'static [ResourceDef] {
    &BUILTIN_DEFS
}

/// Resources defined by stored, established CRDs.
pub(crate) fn custom(store: &Store) -> Vec<ResourceDef> {
    let (crds, _) = store.list(CRD_KEY, None);
    crds.iter().flat_map(|c| crd_resources(c)).collect()
}

/// The served versions of one CRD as resource definitions.
pub(crate) fn crd_resources(crd: &Value) -> Vec<ResourceDef> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let (Some(group), Some(plural), Some(kind)) =
        (spec["group"].as_str(), names["plural"].as_str(), names["kind"].as_str())
    else {
        return vec![];
    };
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    versions
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
        .filter_map(|v| {
            let version = v["name"].as_str()?;
            let mut subresources = vec![];
            if v["subresources"].get("status").is_some() {
                subresources.push("status");
            }
            if v["subresources"].get("scale").is_some() {
                subresources.push("scale");
            }
            Some(ResourceDef {
                group: group.into(),
                version: version.into(),
                plural: plural.into(),
                singular: names["singular"].as_str().map(String::from).unwrap_or_else(|| kind.to_lowercase()),
                kind: kind.into(),
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                short_names: crate::meta::str_list(&names["shortNames"]),
                categories: crate::meta::str_list(&names["categories"]),
                verbs: Verbs::All,
                subresources,
                printer_columns: v.get("additionalPrinterColumns").cloned(),
            })
        })
        .collect()
}

/// Every served resource: built-ins then custom ones.
pub(crate) fn all(store: &Store) -> Vec<ResourceDef> {
    let mut v = builtins().to_vec();
    v.extend(custom(store));
    v
}

/// Finds a resource by group, version and plural name.
pub(crate) fn lookup(store: &Store, group: &str, version: &str, plural: &str) -> Option<ResourceDef> {
    if let Some(d) =
        builtins().iter().find(|d| d.group == group && d.version == version && d.plural == plural)
    {
        return Some(d.clone());
    }
    if group.is_empty() || builtins().iter().any(|d| d.group == group) {
        return None;
    }
    custom(store).into_iter().find(|d| d.group == group && d.version == version && d.plural == plural)
}

/// The built-in definition of a store key (`deployments.apps`), for controllers.
pub(crate) fn builtin_by_key(key: &str) -> Option<&'static ResourceDef> {
    builtins().iter().find(|d| d.key() == key)
}
