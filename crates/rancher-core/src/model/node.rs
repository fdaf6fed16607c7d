//! Node (a machine in a cluster) and NodePool.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ConditionsOnly, management_kind};
use crate::Condition;

management_kind!(
    /// A machine of a downstream cluster, as the management plane knows it. Namespaced by the cluster id.
    Node, "nodes", namespaced = true, NodeSpec, NodeStatus
);

/// What the user wants of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    /// Runs etcd.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub etcd: bool,
    /// Runs the control plane.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub control_plane: bool,
    /// Runs workloads.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub worker: bool,
    /// The pool that made it, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_pool_name: String,
    /// The machine template it was made from, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_template_name: String,
    /// How to reach a custom (SSH) node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_config: Option<CustomConfig>,
    /// True when the node was found in an imported cluster rather than made by us.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub imported: bool,
    /// The hostname asked for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requested_hostname: String,
}

/// How to reach a node over SSH.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CustomConfig {
    /// Public address.
    #[serde(default)]
    pub address: String,
    /// Address inside the cluster network.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub internal_address: String,
    /// SSH user.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// The name of the secret holding the SSH private key (never the key itself).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ssh_key_secret_name: String,
    /// Labels for the Kubernetes node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label: BTreeMap<String, String>,
}

/// What was observed of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The Kubernetes node's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    /// Capacity.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, String>,
    /// Allocatable.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: BTreeMap<String, String>,
    /// Kubelet version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubelet_version: String,
}

management_kind!(
    /// A set of nodes made alike from one template, kept at `quantity`. Namespaced by the cluster id.
    NodePool, "nodepools", namespaced = true, NodePoolSpec, ConditionsOnly
);

/// What the user wants of a node pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    /// The cluster.
    #[serde(default)]
    pub cluster_name: String,
    /// Nodes run etcd.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub etcd: bool,
    /// Nodes run the control plane.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub control_plane: bool,
    /// Nodes run workloads.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub worker: bool,
    /// The machine template.
    #[serde(default)]
    pub node_template_name: String,
    /// Node names are this prefix plus a number.
    #[serde(default)]
    pub hostname_prefix: String,
    /// How many nodes.
    #[serde(default)]
    pub quantity: u32,
    /// Drain a node before deleting it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drain_before_delete: bool,
    /// Labels for the Kubernetes nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_labels: BTreeMap<String, String>,
    /// Replace a node that stays NotReady this long (0 = never).
    #[serde(default)]
    pub delete_not_ready_after_secs: u64,
}
