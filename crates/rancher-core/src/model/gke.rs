//! `spec.gkeConfig`: a cluster that Google Kubernetes Engine runs (driver `GKE`).
//!
//! The keys are Rancher gke-operator's (`googleCredentialSecret`, `projectID`, `nodePools[].config`),
//! so a cluster written for Rancher reads the same here. Validation lives with the provisioner
//! (`rancher_provision::hosted::gke::validate`); these types only carry the shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A GKE cluster: where it runs, its network, and its node pools. With `imported: true` it names an
/// existing cluster to register instead of one to create.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GkeConfig {
    /// The CloudCredential (a Google service-account key) the provisioner signs in with.
    #[serde(default)]
    pub google_credential_secret: String,
    /// The Google Cloud project that holds the cluster.
    #[serde(default, rename = "projectID")]
    pub project_id: String,
    /// The region of a regional cluster (`us-central1`); exactly one of `region` and `zone` is set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// The zone of a zonal cluster (`us-central1-a`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zone: String,
    /// The cluster's name in GKE.
    #[serde(default)]
    pub cluster_name: String,
    /// Registers an existing cluster instead of creating one; it is never deleted from GKE.
    #[serde(default)]
    pub imported: bool,
    /// The control plane's Kubernetes version (`1.29`, `1.29.4-gke.1043002`, `latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// The cluster's resource labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The VPC network the cluster joins (`default` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The subnetwork of `network` the nodes join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnetwork: Option<String>,
    /// The pods' address range (a CIDR) of a routes-based cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ipv4_cidr: Option<String>,
    /// The pods' and services' ranges of a VPC-native (alias IP) cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_allocation_policy: Option<GkeIpAllocationPolicy>,
    /// Private nodes and a private control-plane endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_cluster_config: Option<GkePrivateClusterConfig>,
    /// Which networks may reach the control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_authorized_networks: Option<GkeMasterAuthorizedNetworks>,
    /// Where logs go (`logging.googleapis.com/kubernetes`, `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging_service: Option<String>,
    /// Where metrics go (`monitoring.googleapis.com/kubernetes`, `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring_service: Option<String>,
    /// The zones the nodes run in (a regional cluster's default is three of its region's zones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
    /// The node pools.
    #[serde(default)]
    pub node_pools: Vec<GkeNodePool>,
}

impl GkeConfig {
    /// The GKE location: the region of a regional cluster, else the zone.
    pub fn location(&self) -> &str {
        if self.region.is_empty() { &self.zone } else { &self.region }
    }
}

/// A VPC-native cluster's address ranges: given as CIDRs, or as the names of the subnetwork's
/// secondary ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GkeIpAllocationPolicy {
    /// Pods get alias IPs (a VPC-native cluster).
    #[serde(default)]
    pub use_ip_aliases: bool,
    /// The pods' range as a CIDR (`10.96.0.0/14`) or a prefix length (`/14`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_ipv4_cidr_block: String,
    /// The services' range as a CIDR or a prefix length.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub services_ipv4_cidr_block: String,
    /// The subnetwork's secondary range for pods.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_secondary_range_name: String,
    /// The subnetwork's secondary range for services.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub services_secondary_range_name: String,
}

/// Private nodes (no external addresses) and optionally a private control-plane endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GkePrivateClusterConfig {
    /// The control plane is reachable only at its private address (the server then needs the
    /// agent to dial out: the cluster waits for the import command to be applied).
    #[serde(default)]
    pub enable_private_endpoint: bool,
    /// Nodes have internal addresses only.
    #[serde(default)]
    pub enable_private_nodes: bool,
    /// The control plane's private range, a `/28`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub master_ipv4_cidr_block: String,
}

/// The networks allowed to reach the control plane.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GkeMasterAuthorizedNetworks {
    /// Only the listed networks may reach the control plane.
    #[serde(default)]
    pub enabled: bool,
    /// The allowed networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidr_blocks: Vec<GkeCidrBlock>,
}

/// One network allowed to reach the control plane.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GkeCidrBlock {
    /// The network, a CIDR.
    #[serde(default)]
    pub cidr_block: String,
    /// A name for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
}

/// A GKE node pool: identical machines, one Kubernetes version, a size or an autoscaling range.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GkeNodePool {
    /// The pool's name, unique in the cluster.
    #[serde(default)]
    pub name: String,
    /// The nodes' Kubernetes version (the control plane's when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The number of nodes (per zone of the cluster's locations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_node_count: Option<i64>,
    /// The most pods a node runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pods_constraint: Option<i64>,
    /// Let GKE size the pool within a range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<GkeNodePoolAutoscaling>,
    /// The nodes' machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<GkeNodeConfig>,
    /// Whether GKE repairs and upgrades the nodes by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management: Option<GkeNodePoolManagement>,
}

/// A node pool's autoscaling range.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GkeNodePoolAutoscaling {
    /// GKE sizes the pool between the two bounds.
    #[serde(default)]
    pub enabled: bool,
    /// The fewest nodes (per zone).
    #[serde(default)]
    pub min_node_count: i64,
    /// The most nodes (per zone).
    #[serde(default)]
    pub max_node_count: i64,
}

/// The machines of a node pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GkeNodeConfig {
    /// The Compute Engine machine type (`e2-medium`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub machine_type: String,
    /// The boot disk's size in GB (at least 10).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub disk_size_gb: i64,
    /// The boot disk's type (`pd-standard`, `pd-ssd`, `pd-balanced`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub disk_type: String,
    /// The node image (`COS_CONTAINERD`, `UBUNTU_CONTAINERD`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_type: String,
    /// Kubernetes labels on every node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Kubernetes taints on every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<GkeNodeTaint>,
    /// The OAuth scopes the nodes' service account gets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oauth_scopes: Vec<String>,
    /// Preemptible VMs (cheaper, stopped at any time).
    #[serde(default)]
    pub preemptible: bool,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A Kubernetes taint on a pool's nodes, with GKE's effect names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GkeNodeTaint {
    /// The taint's key.
    #[serde(default)]
    pub key: String,
    /// The taint's value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// `NO_SCHEDULE`, `PREFER_NO_SCHEDULE` or `NO_EXECUTE`.
    #[serde(default)]
    pub effect: String,
}

/// Whether GKE repairs and upgrades a pool's nodes by itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GkeNodePoolManagement {
    /// Unhealthy nodes are recreated.
    #[serde(default)]
    pub auto_repair: bool,
    /// Nodes follow the control plane's version.
    #[serde(default)]
    pub auto_upgrade: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rancher_gke_operator_field_names() {
        let c: GkeConfig = serde_json::from_value(serde_json::json!({
            "googleCredentialSecret": "cc-gcp",
            "projectID": "proj-1",
            "zone": "us-central1-a",
            "clusterName": "gke-one",
            "kubernetesVersion": "1.29.4-gke.1043002",
            "labels": {"team": "a"},
            "clusterIpv4Cidr": "10.96.0.0/14",
            "ipAllocationPolicy": {"useIpAliases": true, "servicesIpv4CidrBlock": "10.100.0.0/20"},
            "privateClusterConfig": {"enablePrivateNodes": true, "masterIpv4CidrBlock": "172.16.0.0/28"},
            "masterAuthorizedNetworks": {"enabled": true, "cidrBlocks": [{"cidrBlock": "1.2.3.0/24", "displayName": "office"}]},
            "nodePools": [{
                "name": "np-1", "initialNodeCount": 3, "maxPodsConstraint": 110,
                "autoscaling": {"enabled": true, "minNodeCount": 1, "maxNodeCount": 5},
                "config": {"machineType": "e2-medium", "diskSizeGb": 100, "oauthScopes": ["s"],
                           "taints": [{"key": "k", "value": "v", "effect": "NO_SCHEDULE"}]},
                "management": {"autoRepair": true, "autoUpgrade": false}
            }]
        }))
        .unwrap();
        assert_eq!(c.project_id, "proj-1");
        assert_eq!(c.location(), "us-central1-a");
        assert_eq!(c.cluster_ipv4_cidr.as_deref(), Some("10.96.0.0/14"));
        assert!(c.ip_allocation_policy.as_ref().unwrap().use_ip_aliases);
        assert_eq!(c.master_authorized_networks.as_ref().unwrap().cidr_blocks[0].display_name, "office");
        let pool = &c.node_pools[0];
        assert_eq!((pool.initial_node_count, pool.max_pods_constraint), (Some(3), Some(110)));
        assert_eq!(pool.autoscaling.as_ref().unwrap().max_node_count, 5);
        let cfg = pool.config.as_ref().unwrap();
        assert_eq!((cfg.machine_type.as_str(), cfg.disk_size_gb), ("e2-medium", 100));
        assert_eq!(cfg.taints[0].effect, "NO_SCHEDULE");
        assert!(pool.management.as_ref().unwrap().auto_repair);

        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["projectID"], "proj-1");
        assert_eq!(back["nodePools"][0]["config"]["diskSizeGb"], 100);
        assert!(back.get("region").is_none(), "unset region is left out: {back}");
        assert_eq!(serde_json::from_value::<GkeConfig>(back).unwrap(), c);
    }

    #[test]
    fn a_regional_cluster_is_located_in_its_region() {
        let c = GkeConfig { region: "europe-west1".into(), ..Default::default() };
        assert_eq!(c.location(), "europe-west1");
    }
}
