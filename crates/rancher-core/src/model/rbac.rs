//! GlobalRole, GlobalRoleBinding, RoleTemplate and the cluster and project role template bindings.

use serde::{Deserialize, Serialize};

use super::{ConditionsOnly, management_kind};

/// One Kubernetes RBAC rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Verbs: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `*`.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// API groups; `""` is the core group, `*` all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// Resources (`pods`, `pods/log`, `*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Object names the rule is limited to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    /// Non-resource URLs (`/healthz`).
    #[serde(default, rename = "nonResourceURLs", skip_serializing_if = "Vec::is_empty")]
    pub non_resource_urls: Vec<String>,
}

management_kind!(
    /// A role in the management plane (`admin`, `user`, `user-base`, or custom). Cluster-scoped.
    GlobalRole, "globalroles", namespaced = false, GlobalRoleSpec, ConditionsOnly
);

/// What a global role grants.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GlobalRoleSpec {
    /// The name people see.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Rules over the management API (`management.cattle.io` resources).
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    /// Given to every new user.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_user_default: bool,
    /// Shipped with the server; cannot be deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub builtin: bool,
    /// Role templates (cluster context) granted in every downstream cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inherited_cluster_roles: Vec<String>,
}

management_kind!(
    /// Gives a user or group a global role. Cluster-scoped.
    GlobalRoleBinding, "globalrolebindings", namespaced = false, GlobalRoleBindingSpec, ConditionsOnly
);

/// Who gets which global role.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GlobalRoleBindingSpec {
    /// The user's id (`u-xxxxx`), or empty for a group binding.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_name: String,
    /// A group principal, or empty for a user binding.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group_principal_name: String,
    /// The global role.
    #[serde(default)]
    pub global_role_name: String,
}

management_kind!(
    /// A reusable set of Kubernetes RBAC rules with a cluster or project context
    /// (`cluster-owner`, `project-member`, `read-only`, custom). Cluster-scoped.
    RoleTemplate, "roletemplates", namespaced = false, RoleTemplateSpec, ConditionsOnly
);

/// What a role template grants, and where it applies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RoleTemplateSpec {
    /// The name people see.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// `cluster` or `project`.
    #[serde(default)]
    pub context: String,
    /// The RBAC rules rendered downstream.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    /// Role templates whose rules this one includes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_template_names: Vec<String>,
    /// Shipped with the server; cannot be deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub builtin: bool,
    /// The rules name an existing downstream ClusterRole of this name instead of being rendered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// Hidden from pickers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
    /// No new bindings may use it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub locked: bool,
    /// Given to a cluster's creator.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster_creator_default: bool,
    /// Given to a project's creator.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub project_creator_default: bool,
}

management_kind!(
    /// Gives a user or group a role template in one cluster. Namespaced by the cluster id.
    ClusterRoleTemplateBinding, "clusterroletemplatebindings", namespaced = true,
    ClusterRoleTemplateBindingSpec, ConditionsOnly
);

/// Who gets which role template in which cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClusterRoleTemplateBindingSpec {
    /// The user's id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_name: String,
    /// The user's principal.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_principal_name: String,
    /// A group's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group_name: String,
    /// A group principal.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group_principal_name: String,
    /// The cluster.
    #[serde(default)]
    pub cluster_name: String,
    /// The role template (cluster context).
    #[serde(default)]
    pub role_template_name: String,
}

management_kind!(
    /// Gives a user or group a role template in one project. Namespaced by the project's id.
    ProjectRoleTemplateBinding, "projectroletemplatebindings", namespaced = true,
    ProjectRoleTemplateBindingSpec, ConditionsOnly
);

/// Who gets which role template in which project.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProjectRoleTemplateBindingSpec {
    /// The user's id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_name: String,
    /// The user's principal.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_principal_name: String,
    /// A group's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group_name: String,
    /// A group principal.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group_principal_name: String,
    /// `<cluster>:<project>`.
    #[serde(default)]
    pub project_name: String,
    /// The role template (project context).
    #[serde(default)]
    pub role_template_name: String,
    /// A service account, `namespace:name`, instead of a user or group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account: String,
}
