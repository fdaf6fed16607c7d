//! The management model: the kinds the server stores, in the `management.cattle.io/v3` group.
//!
//! Every kind is a Kubernetes-style object (`apiVersion`, `kind`, `metadata`, `spec`, `status`). Field
//! names follow Rancher's (`displayName`, `clusterName`, `roleTemplateName`, …) so that people who know
//! Rancher's API find what they expect. One difference: Rancher keeps some kinds' fields at the top
//! level (User, Token, GlobalRole); here every kind has `spec` and `status`, so one code path reads them.

mod aks;
mod cluster;
mod credential;
mod credential_checks;
mod eks;
mod gke;
mod node;
mod rbac;
mod rke;
mod server;
mod user;

pub use aks::*;
pub use cluster::*;
pub use credential::*;
pub use eks::*;
pub use gke::*;
pub use node::*;
pub use rbac::*;
pub use rke::*;
pub use server::*;
pub use user::*;

/// The API group and version of every management kind.
pub const MANAGEMENT_API_VERSION: &str = "management.cattle.io/v3";

/// Defines a management kind: the struct with `apiVersion`, `kind`, `metadata`, `spec`, `status`, a
/// constructor, and its [`Resource`](crate::Resource) impl.
macro_rules! management_kind {
    ($(#[$doc:meta])* $kind:ident, $plural:literal, namespaced = $ns:literal, $spec:ty, $status:ty) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
        #[serde(rename_all = "camelCase")]
        pub struct $kind {
            /// Always `management.cattle.io/v3`.
            #[serde(default = "crate::model::api_version")]
            pub api_version: String,
            /// The kind's name.
            #[serde(default)]
            pub kind: String,
            /// Standard object metadata.
            #[serde(default)]
            pub metadata: crate::ObjectMeta,
            /// What the user wants.
            #[serde(default)]
            pub spec: $spec,
            /// What the controllers observed.
            #[serde(default)]
            pub status: $status,
        }

        impl $kind {
            /// A new object with the given name and spec, and an empty status.
            pub fn new(name: &str, spec: $spec) -> Self {
                $kind {
                    api_version: crate::model::MANAGEMENT_API_VERSION.to_owned(),
                    kind: stringify!($kind).to_owned(),
                    metadata: crate::ObjectMeta { name: name.to_owned(), ..Default::default() },
                    spec,
                    status: Default::default(),
                }
            }
        }

        impl crate::Resource for $kind {
            const API_VERSION: &'static str = crate::model::MANAGEMENT_API_VERSION;
            const KIND: &'static str = stringify!($kind);
            const PLURAL: &'static str = $plural;
            const NAMESPACED: bool = $ns;
            fn meta(&self) -> &crate::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut crate::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use management_kind;

pub(crate) fn api_version() -> String {
    MANAGEMENT_API_VERSION.to_owned()
}

/// A status holding only conditions, for kinds whose controllers report nothing else.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConditionsOnly {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<crate::Condition>,
}

/// The names (`kind`, plural) of every management kind, for routing and validation.
pub const KINDS: &[(&str, &str)] = &[
    ("Cluster", "clusters"),
    ("Project", "projects"),
    ("User", "users"),
    ("Token", "tokens"),
    ("GlobalRole", "globalroles"),
    ("GlobalRoleBinding", "globalrolebindings"),
    ("RoleTemplate", "roletemplates"),
    ("ClusterRoleTemplateBinding", "clusterroletemplatebindings"),
    ("ProjectRoleTemplateBinding", "projectroletemplatebindings"),
    ("ClusterRegistrationToken", "clusterregistrationtokens"),
    ("Node", "nodes"),
    ("NodePool", "nodepools"),
    ("CloudCredential", "cloudcredentials"),
    ("ServerSecret", "serversecrets"),
    ("Lease", "leases"),
];
