//! What a `gkeConfig` asks Google for: the `Cluster` of a `clusters.create` and the `NodePool` of a
//! `nodePools.create`, with the field names mapped from Rancher's to Google's.

use rancher_core::model::{GkeConfig, GkeNodePool};

use super::types::{
    CidrBlock, Cluster, IpAllocationPolicy, MasterAuthorizedNetworksConfig, MaxPodsConstraint, NodeConfig,
    NodeManagement, NodePool, NodePoolAutoscaling, NodeTaint, PrivateClusterConfig,
};

/// Google's `int32` fields; the config's numbers were validated to fit.
fn int32(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The cluster `clusters.create` is sent for `config` (call [`validate`](super::validate) first).
pub fn cluster_for_create(config: &GkeConfig) -> Cluster {
    Cluster {
        name: config.cluster_name.clone(),
        node_pools: config.node_pools.iter().map(|p| node_pool_for_create(p, config)).collect(),
        locations: config.locations.clone(),
        resource_labels: config.labels.clone(),
        network: config.network.clone().unwrap_or_default(),
        subnetwork: config.subnetwork.clone().unwrap_or_default(),
        cluster_ipv4_cidr: config.cluster_ipv4_cidr.clone().unwrap_or_default(),
        ip_allocation_policy: config.ip_allocation_policy.as_ref().map(|p| IpAllocationPolicy {
            use_ip_aliases: p.use_ip_aliases,
            cluster_ipv4_cidr_block: p.cluster_ipv4_cidr_block.clone(),
            services_ipv4_cidr_block: p.services_ipv4_cidr_block.clone(),
            cluster_secondary_range_name: p.cluster_secondary_range_name.clone(),
            services_secondary_range_name: p.services_secondary_range_name.clone(),
        }),
        private_cluster_config: config.private_cluster_config.as_ref().map(|p| PrivateClusterConfig {
            enable_private_nodes: p.enable_private_nodes,
            enable_private_endpoint: p.enable_private_endpoint,
            master_ipv4_cidr_block: p.master_ipv4_cidr_block.clone(),
            ..Default::default()
        }),
        master_authorized_networks_config: config.master_authorized_networks.as_ref().map(|m| {
            MasterAuthorizedNetworksConfig {
                enabled: m.enabled,
                cidr_blocks: m
                    .cidr_blocks
                    .iter()
                    .map(|b| CidrBlock {
                        display_name: b.display_name.clone(),
                        cidr_block: b.cidr_block.clone(),
                    })
                    .collect(),
            }
        }),
        logging_service: config.logging_service.clone().unwrap_or_default(),
        monitoring_service: config.monitoring_service.clone().unwrap_or_default(),
        initial_cluster_version: config.kubernetes_version.clone().unwrap_or_default(),
        ..Default::default()
    }
}

/// The pool `nodePools.create` (or `clusters.create`) is sent for `pool` of `config`; a pool without
/// a version gets the cluster's.
pub fn node_pool_for_create(pool: &GkeNodePool, config: &GkeConfig) -> NodePool {
    let version = pool.version.clone().or_else(|| config.kubernetes_version.clone()).unwrap_or_default();
    NodePool {
        name: pool.name.clone(),
        config: pool.config.as_ref().map(|c| NodeConfig {
            machine_type: c.machine_type.clone(),
            disk_size_gb: int32(c.disk_size_gb),
            disk_type: c.disk_type.clone(),
            image_type: c.image_type.clone(),
            labels: c.labels.clone(),
            taints: c
                .taints
                .iter()
                .map(|t| NodeTaint { key: t.key.clone(), value: t.value.clone(), effect: t.effect.clone() })
                .collect(),
            oauth_scopes: c.oauth_scopes.clone(),
            preemptible: c.preemptible,
        }),
        initial_node_count: int32(pool.initial_node_count.unwrap_or(0)),
        version,
        autoscaling: pool.autoscaling.as_ref().map(|a| NodePoolAutoscaling {
            enabled: a.enabled,
            min_node_count: int32(a.min_node_count),
            max_node_count: int32(a.max_node_count),
        }),
        management: pool
            .management
            .as_ref()
            .map(|m| NodeManagement { auto_upgrade: m.auto_upgrade, auto_repair: m.auto_repair }),
        max_pods_constraint: pool.max_pods_constraint.map(|n| MaxPodsConstraint { max_pods_per_node: n }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{GkeNodeConfig, GkeNodeTaint, GkePrivateClusterConfig};

    use super::*;

    #[test]
    fn maps_rancher_fields_onto_google_s() {
        let config = GkeConfig {
            cluster_name: "c1".into(),
            kubernetes_version: Some("1.29".into()),
            private_cluster_config: Some(GkePrivateClusterConfig {
                enable_private_nodes: true,
                master_ipv4_cidr_block: "172.16.0.0/28".into(),
                ..Default::default()
            }),
            node_pools: vec![GkeNodePool {
                name: "p1".into(),
                initial_node_count: Some(2),
                max_pods_constraint: Some(64),
                config: Some(GkeNodeConfig {
                    machine_type: "e2-small".into(),
                    taints: vec![GkeNodeTaint {
                        key: "k".into(),
                        value: "v".into(),
                        effect: "NO_EXECUTE".into(),
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let json = serde_json::to_value(cluster_for_create(&config)).unwrap();
        assert_eq!(json["initialClusterVersion"], "1.29");
        assert_eq!(json["privateClusterConfig"]["masterIpv4CidrBlock"], "172.16.0.0/28");
        let pool = &json["nodePools"][0];
        assert_eq!(pool["version"], "1.29", "a pool without a version gets the cluster's");
        assert_eq!(pool["initialNodeCount"], 2);
        assert_eq!(pool["maxPodsConstraint"]["maxPodsPerNode"], "64");
        assert_eq!(pool["config"]["taints"][0]["effect"], "NO_EXECUTE");
        assert!(json.get("endpoint").is_none() && json["status"] == "STATUS_UNSPECIFIED");
    }
}
