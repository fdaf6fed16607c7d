//! `spec.aksConfig`: a cluster that Azure Kubernetes Service runs for us (a hosted cluster).
//!
//! Field names are Rancher aks-operator's (`AKSClusterConfigSpec`), so a Rancher user's document
//! reads the same. The cloud credential is named, never embedded: `azureCredentialSecret` names a
//! CloudCredential whose client secret the server keeps sealed.
//!
//! Validation lives with the provisioner (`rancher_provision::hosted::aks::validate`); these types
//! only carry the shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An AKS cluster: where it lives in Azure, its control plane and network, and its node pools.
///
/// Optional fields left out mean "Azure's default" on create and "leave as is" on import.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AksConfig {
    /// The CloudCredential (kind Azure) to sign in with.
    #[serde(default)]
    pub azure_credential_secret: String,
    /// The Azure region (`eastus`).
    #[serde(default)]
    pub resource_location: String,
    /// The resource group that holds the cluster (created if missing).
    #[serde(default)]
    pub resource_group: String,
    /// The managed cluster's name in Azure.
    #[serde(default)]
    pub cluster_name: String,
    /// Whether the cluster already exists in Azure and is only adopted (never created or deleted).
    #[serde(default)]
    pub imported: bool,
    /// The Resource Manager endpoint (`https://management.azure.com`); empty means Azure's public cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The sign-in authority (`https://login.microsoftonline.com`); empty means Azure's public cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_base_url: Option<String>,
    /// The control plane's Kubernetes version (`1.30.4`, or `1.30` for the latest patch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// The DNS prefix of the API server's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_prefix: Option<String>,
    /// Azure tags on the managed cluster.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// `kubenet` or `azure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_plugin: Option<String>,
    /// `azure` or `calico` (network policy engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<String>,
    /// An existing virtual network for the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_network: Option<String>,
    /// The resource group of `virtualNetwork`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_network_resource_group: Option<String>,
    /// The subnet of `virtualNetwork` for the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// The cluster DNS service's address, inside `serviceCidr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_service_ip: Option<String>,
    /// The Kubernetes service address range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<String>,
    /// The pod address range (kubenet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    /// The Docker bridge range (kept for Rancher documents; AKS no longer uses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_bridge_cidr: Option<String>,
    /// `basic` or `standard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_sku: Option<String>,
    /// `loadBalancer`, `userDefinedRouting`, `managedNATGateway` or `userAssignedNATGateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_type: Option<String>,
    /// Whether the API server has only a private address.
    #[serde(default)]
    pub private_cluster: bool,
    /// The private DNS zone of a private cluster (`system`, `none` or a zone's resource id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_dns_zone: Option<String>,
    /// The address ranges allowed to reach a public API server (CIDRs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorized_ip_ranges: Vec<String>,
    /// The Linux nodes' administrator user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_admin_username: Option<String>,
    /// The OpenSSH public key for `linuxAdminUsername` (a public key: not a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_public_key: Option<String>,
    /// The resource group Azure creates for the nodes' resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_resource_group: Option<String>,
    /// Whether Azure Monitor (the `omsagent` add-on) is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<bool>,
    /// The Log Analytics workspace's resource group (monitoring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_analytics_workspace_group: Option<String>,
    /// The Log Analytics workspace's name (monitoring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_analytics_workspace_name: Option<String>,
    /// Whether the cluster runs as a managed identity instead of the credential's service principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_identity: Option<bool>,
    /// The resource id of a user-assigned identity (with `managedIdentity`); empty means system-assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_assigned_identity: Option<String>,
    /// The node pools.
    #[serde(default)]
    pub node_pools: Vec<AksNodePool>,
}

/// One AKS agent pool: a scale set of identical nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AksNodePool {
    /// The pool's name (lowercase letters and digits, at most 12 for Linux, 6 for Windows).
    #[serde(default)]
    pub name: String,
    /// How many nodes (the initial count when autoscaling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    /// The most pods per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pods: Option<i32>,
    /// The VM size (`Standard_DS2_v2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_size: Option<String>,
    /// The OS disk size in GB.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "osDiskSizeGB")]
    pub os_disk_size_gb: Option<i32>,
    /// `Managed` or `Ephemeral`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_disk_type: Option<String>,
    /// `System` (runs the cluster's own pods) or `User`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `Linux` or `Windows`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    /// The pool's Kubernetes version (at most the control plane's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator_version: Option<String>,
    /// The availability zones (`["1","2","3"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zones: Option<Vec<String>>,
    /// How many extra nodes an upgrade may add (`1`, `33%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<String>,
    /// Whether the cluster autoscaler sizes the pool between `minCount` and `maxCount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_auto_scaling: Option<bool>,
    /// The fewest nodes when autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_count: Option<i32>,
    /// The most nodes when autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<i32>,
    /// The resource id of the subnet for this pool's nodes.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "vnetSubnetID")]
    pub vnet_subnet_id: Option<String>,
    /// Kubernetes labels on the nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_labels: BTreeMap<String, String>,
    /// Kubernetes taints on the nodes (`key=value:NoSchedule`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_taints: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rancher_field_names() {
        let doc = r#"{
            "azureCredentialSecret": "cc-abc", "resourceLocation": "eastus", "resourceGroup": "rg",
            "clusterName": "c1", "dnsServiceIp": "10.0.0.10", "loadBalancerSku": "standard",
            "nodePools": [{"name": "system", "count": 3, "vmSize": "Standard_DS2_v2", "mode": "System",
                "osDiskSizeGB": 128, "vnetSubnetID": "/subscriptions/x/subnet", "nodeTaints": ["a=b:NoSchedule"]}]
        }"#;
        let c: AksConfig = serde_json::from_str(doc).unwrap();
        assert_eq!(c.azure_credential_secret, "cc-abc");
        assert_eq!(c.dns_service_ip.as_deref(), Some("10.0.0.10"));
        let p = &c.node_pools[0];
        assert_eq!((p.count, p.os_disk_size_gb), (Some(3), Some(128)));
        assert_eq!(p.vnet_subnet_id.as_deref(), Some("/subscriptions/x/subnet"));
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["nodePools"][0]["osDiskSizeGB"], 128);
        assert_eq!(back["nodePools"][0]["vnetSubnetID"], "/subscriptions/x/subnet");
        assert!(back.get("kubernetesVersion").is_none(), "unset fields stay out of the document");
    }
}
