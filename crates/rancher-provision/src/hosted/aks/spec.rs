//! From `spec.aksConfig` to the Resource Manager bodies: the managed cluster to PUT and each pool.
//! What aks-operator does: the nodes go in `virtualNetwork`/`subnet` when given, the cluster runs as
//! the credential's service principal unless `managedIdentity`, monitoring is the `omsagent` add-on.

use rancher_core::model::{AksConfig, AksNodePool};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::error::{AksError, Result};
use super::types::{
    AgentPool, AgentPoolProfile, AgentPoolProperties, ApiServerAccessProfile, LinuxProfile, ManagedCluster,
    ManagedClusterProperties, NetworkProfile, ServicePrincipalProfile, SshConfiguration, SshPublicKey,
    UpgradeSettings,
};

/// Who the cluster runs as.
#[derive(Clone)]
pub enum ClusterIdentity {
    /// The cloud credential's service principal (aks-operator's default).
    ServicePrincipal {
        /// The application (client) id.
        client_id: String,
        /// Its secret.
        client_secret: SecretString,
    },
    /// A system-assigned managed identity.
    SystemAssigned,
    /// A user-assigned managed identity (its resource id).
    UserAssigned(String),
}

impl std::fmt::Debug for ClusterIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClusterIdentity::ServicePrincipal { client_id, .. } => {
                f.debug_struct("ServicePrincipal").field("client_id", client_id).finish_non_exhaustive()
            }
            ClusterIdentity::SystemAssigned => f.write_str("SystemAssigned"),
            ClusterIdentity::UserAssigned(id) => f.debug_tuple("UserAssigned").field(id).finish(),
        }
    }
}

impl ClusterIdentity {
    /// The identity `config` asks for: a managed identity when `managedIdentity`, else `service_principal`.
    pub fn for_config(config: &AksConfig, service_principal: (String, SecretString)) -> ClusterIdentity {
        match (config.managed_identity, config.user_assigned_identity.as_deref().filter(|s| !s.is_empty())) {
            (Some(true), Some(id)) => ClusterIdentity::UserAssigned(id.to_owned()),
            (Some(true), None) => ClusterIdentity::SystemAssigned,
            _ => ClusterIdentity::ServicePrincipal {
                client_id: service_principal.0,
                client_secret: service_principal.1,
            },
        }
    }
}

fn opt(s: &Option<String>) -> Option<String> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// The subnet id the nodes use when the cluster names a virtual network.
fn subnet_id(config: &AksConfig, subscription_id: &str) -> Option<String> {
    let vnet = opt(&config.virtual_network)?;
    let subnet = opt(&config.subnet)?;
    let group = opt(&config.virtual_network_resource_group).unwrap_or_else(|| config.resource_group.clone());
    Some(format!(
        "/subscriptions/{subscription_id}/resourceGroups/{group}/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/{subnet}"
    ))
}

/// A pool's properties from its `nodePools[]` entry (`subnet`: the cluster's subnet id, if any).
pub fn pool_properties(pool: &AksNodePool, subnet: Option<&str>) -> AgentPoolProperties {
    AgentPoolProperties {
        count: pool.count,
        vm_size: opt(&pool.vm_size),
        os_disk_size_gb: pool.os_disk_size_gb.filter(|g| *g > 0),
        os_disk_type: opt(&pool.os_disk_type),
        vnet_subnet_id: opt(&pool.vnet_subnet_id).or_else(|| subnet.map(str::to_owned)),
        max_pods: pool.max_pods,
        os_type: opt(&pool.os_type).or_else(|| Some("Linux".into())),
        max_count: pool.max_count.filter(|_| pool.enable_auto_scaling == Some(true)),
        min_count: pool.min_count.filter(|_| pool.enable_auto_scaling == Some(true)),
        enable_auto_scaling: pool.enable_auto_scaling,
        pool_type: Some("VirtualMachineScaleSets".into()),
        mode: opt(&pool.mode).or_else(|| Some("User".into())),
        orchestrator_version: opt(&pool.orchestrator_version),
        availability_zones: pool.availability_zones.clone().filter(|z| !z.is_empty()),
        node_labels: pool.node_labels.clone(),
        node_taints: pool.node_taints.clone(),
        upgrade_settings: opt(&pool.max_surge).map(|s| UpgradeSettings { max_surge: Some(s) }),
        ..Default::default()
    }
}

/// The agent pool resource for `pool` (for [`AksClient::create_or_update_pool`](super::AksClient::create_or_update_pool)).
pub fn agent_pool(config: &AksConfig, pool: &AksNodePool, subscription_id: &str) -> AgentPool {
    let subnet = subnet_id(config, subscription_id);
    AgentPool { id: None, name: None, properties: pool_properties(pool, subnet.as_deref()) }
}

/// The managed cluster to create from `config` (validated first with [`validate`](super::validate)).
///
/// # Errors
/// [`AksError::NotImplemented`] for monitoring without a named Log Analytics workspace (aks-operator
/// would create a default workspace; this client does not manage workspaces).
pub fn managed_cluster(
    config: &AksConfig,
    identity: &ClusterIdentity,
    subscription_id: &str,
) -> Result<ManagedCluster> {
    let subnet = subnet_id(config, subscription_id);
    let mut props = ManagedClusterProperties {
        kubernetes_version: opt(&config.kubernetes_version),
        dns_prefix: opt(&config.dns_prefix).or_else(|| Some(default_dns_prefix(&config.cluster_name))),
        agent_pool_profiles: config
            .node_pools
            .iter()
            .map(|p| AgentPoolProfile {
                name: p.name.clone(),
                properties: pool_properties(p, subnet.as_deref()),
            })
            .collect(),
        node_resource_group: opt(&config.node_resource_group),
        ..Default::default()
    };
    if let (Some(user), Some(key)) = (opt(&config.linux_admin_username), opt(&config.ssh_public_key)) {
        props.linux_profile = Some(LinuxProfile {
            admin_username: user,
            ssh: SshConfiguration { public_keys: vec![SshPublicKey { key_data: key }] },
        });
    }
    let network = NetworkProfile {
        network_plugin: opt(&config.network_plugin).map(|s| s.to_ascii_lowercase()),
        network_policy: opt(&config.network_policy).map(|s| s.to_ascii_lowercase()),
        pod_cidr: opt(&config.pod_cidr),
        service_cidr: opt(&config.service_cidr),
        dns_service_ip: opt(&config.dns_service_ip),
        outbound_type: opt(&config.outbound_type),
        load_balancer_sku: opt(&config.load_balancer_sku).map(|s| s.to_ascii_lowercase()),
        extra: Default::default(),
    };
    if network != NetworkProfile::default() {
        props.network_profile = Some(network);
    }
    if config.private_cluster || !config.authorized_ip_ranges.is_empty() {
        props.api_server_access_profile = Some(ApiServerAccessProfile {
            authorized_ip_ranges: config.authorized_ip_ranges.clone(),
            enable_private_cluster: Some(config.private_cluster),
            private_dns_zone: opt(&config.private_dns_zone).filter(|_| config.private_cluster),
            extra: Default::default(),
        });
    }
    if config.monitoring == Some(true) {
        let name = opt(&config.log_analytics_workspace_name).ok_or_else(|| {
            AksError::NotImplemented(
                "monitoring without logAnalyticsWorkspaceName (creating a default Log Analytics workspace)"
                    .into(),
            )
        })?;
        let group =
            opt(&config.log_analytics_workspace_group).unwrap_or_else(|| config.resource_group.clone());
        let id = format!(
            "/subscriptions/{subscription_id}/resourceGroups/{group}/providers/Microsoft.OperationalInsights/workspaces/{name}"
        );
        props.addon_profiles.insert(
            "omsagent".into(),
            json!({"enabled": true, "config": {"logAnalyticsWorkspaceResourceID": id}}),
        );
    }
    let identity = match identity {
        ClusterIdentity::ServicePrincipal { client_id, client_secret } => {
            props.service_principal_profile = Some(ServicePrincipalProfile {
                client_id: client_id.clone(),
                secret: Some(client_secret.expose_secret().to_owned()),
            });
            None
        }
        ClusterIdentity::SystemAssigned => Some(json!({"type": "SystemAssigned"})),
        ClusterIdentity::UserAssigned(id) => {
            Some(json!({"type": "UserAssigned", "userAssignedIdentities": {id: {}}}))
        }
    };
    Ok(ManagedCluster {
        location: config.resource_location.clone(),
        tags: config.tags.clone(),
        identity,
        properties: props,
        ..Default::default()
    })
}

/// aks-operator's default DNS prefix: the cluster name with what DNS does not allow dropped.
fn default_dns_prefix(cluster_name: &str) -> String {
    let mut p: String =
        cluster_name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(45).collect();
    p = p.trim_matches('-').to_owned();
    if p.is_empty() { "aks".into() } else { format!("{p}-dns") }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn builds_the_cluster_body() {
        let config = AksConfig {
            resource_location: "eastus".into(),
            resource_group: "rg".into(),
            cluster_name: "c_1".into(),
            kubernetes_version: Some("1.30.4".into()),
            virtual_network: Some("vnet".into()),
            subnet: Some("nodes".into()),
            virtual_network_resource_group: Some("netrg".into()),
            monitoring: Some(true),
            log_analytics_workspace_name: Some("logs".into()),
            tags: BTreeMap::from([("team".into(), "a".into())]),
            node_pools: vec![AksNodePool {
                name: "system".into(),
                count: Some(2),
                mode: Some("System".into()),
                vm_size: Some("Standard_DS2_v2".into()),
                max_surge: Some("33%".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let id = ClusterIdentity::ServicePrincipal {
            client_id: "app".into(),
            client_secret: "pw".to_owned().into(),
        };
        assert!(!format!("{id:?}").contains("pw"));
        let c = managed_cluster(&config, &id, "sub").unwrap();
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["location"], "eastus");
        assert_eq!(v["properties"]["dnsPrefix"], "c1-dns");
        assert_eq!(v["properties"]["servicePrincipalProfile"]["secret"], "pw");
        let pool = &v["properties"]["agentPoolProfiles"][0];
        assert_eq!(pool["name"], "system");
        assert_eq!(pool["type"], "VirtualMachineScaleSets");
        assert_eq!(pool["upgradeSettings"]["maxSurge"], "33%");
        assert_eq!(
            pool["vnetSubnetID"],
            "/subscriptions/sub/resourceGroups/netrg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/nodes"
        );
        assert_eq!(
            v["properties"]["addonProfiles"]["omsagent"]["config"]["logAnalyticsWorkspaceResourceID"],
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/logs"
        );
        let unnamed = AksConfig { log_analytics_workspace_name: None, ..config };
        assert!(matches!(managed_cluster(&unnamed, &id, "sub"), Err(AksError::NotImplemented(_))));
    }
}
