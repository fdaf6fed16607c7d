//! The Resource Manager shapes of `Microsoft.ContainerService` managed clusters and agent pools
//! (REST reference "Managed Clusters" / "Agent Pools", api-version [`API_VERSION`](super::API_VERSION)).
//!
//! Only the fields rancher-rs reads or writes are typed; every other field Azure sends is kept in
//! `extra` so that a read-modify-write `PUT` gives it back unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A managed cluster resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedCluster {
    /// The resource id (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The cluster's name (read-only; the name is in the path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Azure region.
    #[serde(default)]
    pub location: String,
    /// Azure tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// `{"type": "SystemAssigned"}` or `{"type":"UserAssigned","userAssignedIdentities":{…}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Value>,
    /// The cluster's properties.
    #[serde(default)]
    pub properties: ManagedClusterProperties,
    /// Fields not typed here, kept for a read-modify-write.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `properties` of a managed cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedClusterProperties {
    /// `Creating`, `Updating`, `Upgrading`, `Scaling`, `Deleting`, `Succeeded`, `Failed`, `Canceled`
    /// (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// `{"code": "Running" | "Stopped"}` (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_state: Option<PowerState>,
    /// The requested control-plane version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// The version the control plane runs (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_kubernetes_version: Option<String>,
    /// The API server's DNS prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_prefix: Option<String>,
    /// The API server's public name (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// The API server's private name, for a private cluster (read-only).
    #[serde(default, rename = "privateFQDN", skip_serializing_if = "Option::is_none")]
    pub private_fqdn: Option<String>,
    /// The agent pools (on create; on read, the pools as they are).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_pool_profiles: Vec<AgentPoolProfile>,
    /// The Linux nodes' administrator and SSH key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_profile: Option<LinuxProfile>,
    /// The service principal the cluster runs as (when it has no managed identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_principal_profile: Option<ServicePrincipalProfile>,
    /// Add-ons (`omsagent` for monitoring), as Azure writes them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addon_profiles: BTreeMap<String, Value>,
    /// The resource group Azure makes for the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_resource_group: Option<String>,
    /// The network settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_profile: Option<NetworkProfile>,
    /// Who may reach the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server_access_profile: Option<ApiServerAccessProfile>,
    /// Fields not typed here.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A resource's power state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerState {
    /// `Running` or `Stopped`.
    #[serde(default)]
    pub code: String,
}

/// `linuxProfile`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxProfile {
    /// The administrator user.
    pub admin_username: String,
    /// The SSH configuration.
    pub ssh: SshConfiguration,
}

/// `linuxProfile.ssh`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshConfiguration {
    /// The public keys.
    pub public_keys: Vec<SshPublicKey>,
}

/// One SSH public key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshPublicKey {
    /// The OpenSSH public key.
    pub key_data: String,
}

/// `servicePrincipalProfile`. Azure never sends `secret` back; Debug never shows it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipalProfile {
    /// The service principal's application (client) id, or `msi` for a managed identity.
    pub client_id: String,
    /// The service principal's secret (write-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl std::fmt::Debug for ServicePrincipalProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServicePrincipalProfile")
            .field("client_id", &self.client_id)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// `networkProfile`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    /// `kubenet` or `azure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_plugin: Option<String>,
    /// `azure` or `calico`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<String>,
    /// The pod range (kubenet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    /// The service range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<String>,
    /// The cluster DNS address.
    #[serde(default, rename = "dnsServiceIP", skip_serializing_if = "Option::is_none")]
    pub dns_service_ip: Option<String>,
    /// How the nodes reach the internet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_type: Option<String>,
    /// `basic` or `standard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_sku: Option<String>,
    /// Fields not typed here.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `apiServerAccessProfile`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiServerAccessProfile {
    /// The address ranges allowed to reach the public API server.
    #[serde(default, rename = "authorizedIPRanges", skip_serializing_if = "Vec::is_empty")]
    pub authorized_ip_ranges: Vec<String>,
    /// Whether the API server has only a private address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_private_cluster: Option<bool>,
    /// The private DNS zone (`system`, `none`, or a zone id).
    #[serde(default, rename = "privateDNSZone", skip_serializing_if = "Option::is_none")]
    pub private_dns_zone: Option<String>,
    /// Fields not typed here.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An entry of `agentPoolProfiles` in a managed cluster: a pool's name with its properties.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentPoolProfile {
    /// The pool's name.
    pub name: String,
    /// The pool's properties.
    #[serde(flatten)]
    pub properties: AgentPoolProperties,
}

/// An agent pool sub-resource (`…/managedClusters/{c}/agentPools/{pool}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentPool {
    /// The resource id (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The pool's name (read-only; the name is in the path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The pool's properties.
    #[serde(default)]
    pub properties: AgentPoolProperties,
}

/// An agent pool's properties (the same in both shapes).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPoolProperties {
    /// How many nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    /// The VM size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_size: Option<String>,
    /// The OS disk size in GB.
    #[serde(default, rename = "osDiskSizeGB", skip_serializing_if = "Option::is_none")]
    pub os_disk_size_gb: Option<i32>,
    /// `Managed` or `Ephemeral`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_disk_type: Option<String>,
    /// The nodes' subnet.
    #[serde(default, rename = "vnetSubnetID", skip_serializing_if = "Option::is_none")]
    pub vnet_subnet_id: Option<String>,
    /// The most pods per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pods: Option<i32>,
    /// `Linux` or `Windows`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    /// Autoscaler maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<i32>,
    /// Autoscaler minimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_count: Option<i32>,
    /// Whether the autoscaler sizes the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_auto_scaling: Option<bool>,
    /// `VirtualMachineScaleSets`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub pool_type: Option<String>,
    /// `System` or `User`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The requested Kubernetes version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator_version: Option<String>,
    /// The version the nodes run (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_orchestrator_version: Option<String>,
    /// Availability zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zones: Option<Vec<String>>,
    /// Kubernetes labels on the nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_labels: BTreeMap<String, String>,
    /// Kubernetes taints on the nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_taints: Vec<String>,
    /// `{"maxSurge": "33%"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_settings: Option<UpgradeSettings>,
    /// The pool's provisioning state (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// The pool's power state (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_state: Option<PowerState>,
    /// Fields not typed here.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `upgradeSettings` of a pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeSettings {
    /// How many extra nodes an upgrade may add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<String>,
}

/// A resource group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceGroup {
    /// The resource id.
    #[serde(default)]
    pub id: String,
    /// The group's name.
    #[serde(default)]
    pub name: String,
    /// The group's region.
    #[serde(default)]
    pub location: String,
    /// Azure tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// A page of a list answer (`value` + `nextLink`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Page<T> {
    #[serde(default = "Vec::new")]
    pub(crate) value: Vec<T>,
    #[serde(default)]
    pub(crate) next_link: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_unknown_fields_and_hides_the_secret() {
        let doc = serde_json::json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c",
            "location": "eastus", "sku": {"name": "Base"},
            "properties": {
                "provisioningState": "Succeeded", "powerState": {"code": "Running"}, "privateFQDN": "p.example",
                "kubernetesVersion": "1.30.4", "autoUpgradeProfile": {"upgradeChannel": "none"},
                "agentPoolProfiles": [{"name": "system", "count": 3, "mode": "System", "osDiskSizeGB": 128,
                    "upgradeSettings": {"maxSurge": "33%"}, "kubeletDiskType": "OS"}],
                "servicePrincipalProfile": {"clientId": "app", "secret": "hunter2"},
                "networkProfile": {"dnsServiceIP": "10.0.0.10", "ipFamilies": ["IPv4"]}
            }
        });
        let c: ManagedCluster = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(c.properties.private_fqdn.as_deref(), Some("p.example"));
        assert_eq!(c.properties.power_state.as_ref().unwrap().code, "Running");
        let pool = &c.properties.agent_pool_profiles[0];
        assert_eq!((pool.name.as_str(), pool.properties.os_disk_size_gb), ("system", Some(128)));
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(serde_json::to_value(&c).unwrap(), doc, "a read-modify-write keeps every field");
    }
}
