//! A managed cluster as Azure has it, in the terms of its `aksConfig` (`status.aksStatus.upstreamSpec`).

use rancher_core::model::{AksConfig, AksNodePool};

use super::types::{AgentPoolProfile, ManagedCluster};

/// `have` in the terms of `config` (where it is and how it signs in are `config`'s).
pub fn upstream_spec(config: &AksConfig, have: &ManagedCluster) -> AksConfig {
    let p = &have.properties;
    AksConfig {
        azure_credential_secret: config.azure_credential_secret.clone(),
        resource_location: have.location.clone(),
        resource_group: config.resource_group.clone(),
        cluster_name: config.cluster_name.clone(),
        imported: config.imported,
        base_url: config.base_url.clone(),
        auth_base_url: config.auth_base_url.clone(),
        kubernetes_version: p.current_kubernetes_version.clone().or_else(|| p.kubernetes_version.clone()),
        dns_prefix: p.dns_prefix.clone(),
        tags: have.tags.clone(),
        node_resource_group: p.node_resource_group.clone(),
        node_pools: p.agent_pool_profiles.iter().map(upstream_pool).collect(),
        ..Default::default()
    }
}

fn upstream_pool(pool: &AgentPoolProfile) -> AksNodePool {
    let p = &pool.properties;
    AksNodePool {
        name: pool.name.clone(),
        count: p.count,
        max_pods: p.max_pods,
        vm_size: p.vm_size.clone(),
        os_disk_size_gb: p.os_disk_size_gb,
        os_disk_type: p.os_disk_type.clone(),
        mode: p.mode.clone(),
        os_type: p.os_type.clone(),
        orchestrator_version: p
            .current_orchestrator_version
            .clone()
            .or_else(|| p.orchestrator_version.clone()),
        availability_zones: p.availability_zones.clone(),
        max_surge: p.upgrade_settings.as_ref().and_then(|u| u.max_surge.clone()),
        enable_auto_scaling: p.enable_auto_scaling,
        min_count: p.min_count,
        max_count: p.max_count,
        vnet_subnet_id: p.vnet_subnet_id.clone(),
        node_labels: p.node_labels.clone(),
        node_taints: p.node_taints.clone(),
    }
}
