//! The `container/v1` resources and request bodies the client sends and reads, with Google's JSON
//! field names (<https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters>,
//! `…/projects.locations.clusters.nodePools`, `…/projects.locations.operations`). Only the fields
//! rancher-rs reads or sets are here; unknown fields in answers are ignored. `int64` fields travel
//! as JSON strings, as in every Google JSON API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// A cluster's lifecycle state (`Cluster.status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterStatus {
    /// Not set (also what a create request carries).
    #[default]
    StatusUnspecified,
    /// Being created.
    Provisioning,
    /// Created and usable.
    Running,
    /// Being changed (an upgrade, a repair); usable.
    Reconciling,
    /// Being deleted.
    Stopping,
    /// Failed; `statusMessage` says why.
    Error,
    /// Usable but unhealthy.
    Degraded,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

/// A node pool's lifecycle state (`NodePool.status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodePoolStatus {
    /// Not set.
    #[default]
    StatusUnspecified,
    /// Being created.
    Provisioning,
    /// Created and usable.
    Running,
    /// Usable, with some nodes failing.
    RunningWithError,
    /// Being changed (resized, upgraded).
    Reconciling,
    /// Being deleted.
    Stopping,
    /// Failed.
    Error,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

/// A long-running operation's state (`Operation.status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationStatus {
    /// Not set.
    #[default]
    StatusUnspecified,
    /// Not started.
    Pending,
    /// In progress.
    Running,
    /// Finished (successfully unless `error` is set).
    Done,
    /// Being aborted.
    Aborting,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

/// A GKE cluster (`projects.locations.clusters`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// The cluster's name.
    #[serde(default)]
    pub name: String,
    /// A description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The node pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_pools: Vec<NodePool>,
    /// The zones the nodes run in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
    /// Resource labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_labels: BTreeMap<String, String>,
    /// The labels' fingerprint, which `setResourceLabels` must quote (output only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label_fingerprint: String,
    /// The VPC network.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    /// The subnetwork.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnetwork: String,
    /// The pods' range of a routes-based cluster.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_ipv4_cidr: String,
    /// The ranges of a VPC-native cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_allocation_policy: Option<IpAllocationPolicy>,
    /// Private nodes and endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_cluster_config: Option<PrivateClusterConfig>,
    /// Who may reach the control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_authorized_networks_config: Option<MasterAuthorizedNetworksConfig>,
    /// Where logs go.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub logging_service: String,
    /// Where metrics go.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub monitoring_service: String,
    /// The version asked for at creation (`latest`, `1.29`, `-`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub initial_cluster_version: String,
    /// The control plane's version (output only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub current_master_version: String,
    /// The oldest node version (output only, deprecated by Google in favour of the pools' versions).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub current_node_version: String,
    /// How clients authenticate to the control plane; holds its CA (output only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_auth: Option<MasterAuth>,
    /// The control plane's address, an IP without scheme or port (output only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// The lifecycle state (output only).
    #[serde(default)]
    pub status: ClusterStatus,
    /// Why it is in that state (output only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status_message: String,
    /// The region or zone (output only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub location: String,
    /// The cluster's URL (output only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub self_link: String,
    /// When it was created, RFC 3339 (output only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub create_time: String,
}

impl Cluster {
    /// The control plane's CA certificate as PEM (`masterAuth.clusterCaCertificate` is base64 of it).
    pub fn ca_pem(&self) -> Option<String> {
        use base64::Engine;
        let b64 = self.master_auth.as_ref()?.cluster_ca_certificate.as_str();
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
    }

    /// The pool named `name`.
    pub fn node_pool(&self, name: &str) -> Option<&NodePool> {
        self.node_pools.iter().find(|p| p.name == name)
    }
}

/// `Cluster.masterAuth`: only what clients of the control plane need.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MasterAuth {
    /// The control plane's CA, base64 of the PEM.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_ca_certificate: String,
}

/// `Cluster.ipAllocationPolicy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAllocationPolicy {
    /// Alias IPs (a VPC-native cluster).
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_ip_aliases: bool,
    /// The pods' CIDR or prefix length.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_ipv4_cidr_block: String,
    /// The services' CIDR or prefix length.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub services_ipv4_cidr_block: String,
    /// The subnetwork's secondary range for pods.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_secondary_range_name: String,
    /// The subnetwork's secondary range for services.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub services_secondary_range_name: String,
}

/// `Cluster.privateClusterConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateClusterConfig {
    /// Nodes have internal addresses only.
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable_private_nodes: bool,
    /// The control plane is reachable at its private address only.
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable_private_endpoint: bool,
    /// The control plane's /28.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub master_ipv4_cidr_block: String,
    /// The control plane's private address (output only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_endpoint: String,
    /// The control plane's public address (output only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub public_endpoint: String,
}

/// `Cluster.masterAuthorizedNetworksConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MasterAuthorizedNetworksConfig {
    /// Only the listed networks reach the control plane.
    #[serde(default, skip_serializing_if = "is_false")]
    pub enabled: bool,
    /// The networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidr_blocks: Vec<CidrBlock>,
}

/// One network of [`MasterAuthorizedNetworksConfig`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CidrBlock {
    /// A name for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// The CIDR.
    #[serde(default)]
    pub cidr_block: String,
}

/// A node pool (`projects.locations.clusters.nodePools`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePool {
    /// The pool's name.
    #[serde(default)]
    pub name: String,
    /// The nodes' machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<NodeConfig>,
    /// The node count asked for at creation (per zone). The stand-in, like Rancher's gke-operator
    /// reading it back, keeps it at the size last set.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub initial_node_count: i32,
    /// The zones of the pool's nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
    /// The nodes' Kubernetes version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<NodePoolAutoscaling>,
    /// Auto-repair and auto-upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management: Option<NodeManagement>,
    /// The most pods per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pods_constraint: Option<MaxPodsConstraint>,
    /// The lifecycle state (output only).
    #[serde(default)]
    pub status: NodePoolStatus,
    /// Why it is in that state (output only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status_message: String,
    /// The pool's URL (output only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub self_link: String,
}

/// `NodePool.config`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfig {
    /// The machine type.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub machine_type: String,
    /// The boot disk's size in GB.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub disk_size_gb: i32,
    /// The boot disk's type.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub disk_type: String,
    /// The node image.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_type: String,
    /// Kubernetes labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Kubernetes taints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<NodeTaint>,
    /// The nodes' OAuth scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oauth_scopes: Vec<String>,
    /// Preemptible VMs.
    #[serde(default, skip_serializing_if = "is_false")]
    pub preemptible: bool,
}

/// `NodeConfig.taints[]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeTaint {
    /// The key.
    #[serde(default)]
    pub key: String,
    /// The value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// `NO_SCHEDULE`, `PREFER_NO_SCHEDULE` or `NO_EXECUTE`.
    #[serde(default)]
    pub effect: String,
}

/// `NodePool.autoscaling`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolAutoscaling {
    /// On or off.
    #[serde(default, skip_serializing_if = "is_false")]
    pub enabled: bool,
    /// The fewest nodes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_node_count: i32,
    /// The most nodes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_node_count: i32,
}

/// `NodePool.management`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeManagement {
    /// Auto-upgrade.
    #[serde(default, skip_serializing_if = "is_false")]
    pub auto_upgrade: bool,
    /// Auto-repair.
    #[serde(default, skip_serializing_if = "is_false")]
    pub auto_repair: bool,
}

/// `NodePool.maxPodsConstraint`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MaxPodsConstraint {
    /// The most pods per node (an `int64`: a JSON string).
    #[serde(default, with = "int64")]
    pub max_pods_per_node: i64,
}

/// A long-running operation (`projects.locations.operations`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// The operation's id (`operation-1700000000000-abcd`).
    #[serde(default)]
    pub name: String,
    /// `CREATE_CLUSTER`, `DELETE_CLUSTER`, `UPGRADE_MASTER`, `UPGRADE_NODES`, `SET_NODE_POOL_SIZE`,
    /// `CREATE_NODE_POOL`, `DELETE_NODE_POOL`, `UPDATE_CLUSTER`, `SET_LABELS`, …
    #[serde(default)]
    pub operation_type: String,
    /// Its state.
    #[serde(default)]
    pub status: OperationStatus,
    /// Details (deprecated by Google in favour of `error`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status_message: String,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The operation's URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub self_link: String,
    /// The URL of the cluster or pool it works on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_link: String,
    /// The region or zone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub location: String,
    /// When it started, RFC 3339.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub start_time: String,
    /// When it ended, RFC 3339.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub end_time: String,
    /// Why it failed (`google.rpc.Status`), once it is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcStatus>,
}

impl Operation {
    /// Whether it is finished (successfully or not).
    pub fn is_done(&self) -> bool {
        self.status == OperationStatus::Done
    }

    /// Why it failed, once it is done: `error.message`, else `statusMessage`.
    pub fn failure(&self) -> Option<String> {
        if !self.is_done() {
            return None;
        }
        match &self.error {
            Some(e) if e.code != 0 || !e.message.is_empty() => {
                Some(if e.message.is_empty() { format!("error code {}", e.code) } else { e.message.clone() })
            }
            _ => None,
        }
    }
}

/// `google.rpc.Status`: an operation's error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RpcStatus {
    /// A `google.rpc.Code` (3 INVALID_ARGUMENT, 9 FAILED_PRECONDITION, 13 INTERNAL, …).
    #[serde(default)]
    pub code: i32,
    /// What went wrong.
    #[serde(default)]
    pub message: String,
}

/// `projects.locations.clusters.update`'s `update`: the desired values, each optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterUpdate {
    /// The pool that `desiredNodePoolAutoscaling` (or `desiredNodeVersion`) applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_node_pool_id: Option<String>,
    /// A pool's new autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_node_pool_autoscaling: Option<NodePoolAutoscaling>,
    /// The control plane's new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_master_version: Option<String>,
    /// The nodes' new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_node_version: Option<String>,
    /// New logging service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_logging_service: Option<String>,
    /// New monitoring service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_monitoring_service: Option<String>,
    /// New control-plane networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_master_authorized_networks_config: Option<MasterAuthorizedNetworksConfig>,
    /// New node zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_locations: Option<Vec<String>>,
}

/// `projects.locations.clusters.nodePools.update`'s body: a pool's new version and image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolUpdate {
    /// The nodes' new version (`-` for the control plane's).
    pub node_version: String,
    /// The node image (Google requires it; the pool's current one keeps it).
    pub image_type: String,
}

/// `clusters.list`'s answer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListClustersResponse {
    #[serde(default)]
    pub(crate) clusters: Vec<Cluster>,
    #[serde(default)]
    pub(crate) missing_zones: Vec<String>,
}

/// Google JSON's `int64`: written as a string, read as a string or a number.
mod int64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&n.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            S(String),
            N(i64),
        }
        match Either::deserialize(d)? {
            Either::N(n) => Ok(n),
            Either::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_google_json_with_unknown_values_and_int64_strings() {
        let c: Cluster = serde_json::from_value(serde_json::json!({
            "name": "c1", "status": "RUNNING", "endpoint": "34.1.2.3", "futureField": 1,
            "masterAuth": {"clusterCaCertificate": "LS0tLS1CRUdJTg=="},
            "nodePools": [{"name": "p", "status": "SOMETHING_NEW", "initialNodeCount": 3,
                           "maxPodsConstraint": {"maxPodsPerNode": "110"}}]
        }))
        .unwrap();
        assert_eq!(c.status, ClusterStatus::Running);
        assert_eq!(c.ca_pem().as_deref(), Some("-----BEGIN"));
        let p = c.node_pool("p").unwrap();
        assert_eq!(p.status, NodePoolStatus::Unknown);
        assert_eq!(p.max_pods_constraint.as_ref().unwrap().max_pods_per_node, 110);
        let back = serde_json::to_value(p).unwrap();
        assert_eq!(back["maxPodsConstraint"]["maxPodsPerNode"], "110");

        let op: Operation = serde_json::from_value(serde_json::json!({
            "name": "operation-1", "operationType": "CREATE_CLUSTER", "status": "DONE",
            "error": {"code": 13, "message": "zone out of resources"}
        }))
        .unwrap();
        assert_eq!(op.failure().as_deref(), Some("zone out of resources"));
        let running = Operation { status: OperationStatus::Running, ..op };
        assert_eq!(running.failure(), None);
    }
}
