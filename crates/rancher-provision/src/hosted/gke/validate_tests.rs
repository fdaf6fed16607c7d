use rancher_core::model::{
    GkeCidrBlock, GkeConfig, GkeIpAllocationPolicy, GkeMasterAuthorizedNetworks, GkeNodeConfig, GkeNodePool,
    GkeNodePoolAutoscaling, GkeNodeTaint, GkePrivateClusterConfig,
};

use super::*;

fn pool(name: &str) -> GkeNodePool {
    GkeNodePool {
        name: name.into(),
        initial_node_count: Some(1),
        config: Some(GkeNodeConfig { machine_type: "e2-medium".into(), ..Default::default() }),
        ..Default::default()
    }
}

fn good() -> GkeConfig {
    GkeConfig {
        google_credential_secret: "cc-gcp".into(),
        project_id: "my-project-1".into(),
        region: "us-central1".into(),
        cluster_name: "gke-one".into(),
        kubernetes_version: Some("1.29.4-gke.1043002".into()),
        node_pools: vec![pool("np-a"), pool("np-b")],
        ..Default::default()
    }
}

/// The field and message `change` makes `validate` name.
fn refused(change: impl FnOnce(&mut GkeConfig)) -> (String, String) {
    let mut c = good();
    change(&mut c);
    match validate(&c) {
        Err(ProvisionError::InvalidSpec { field, message }) => (field, message),
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
}

#[test]
fn a_complete_config_passes() {
    validate(&good()).unwrap();
    let mut c = good();
    c.region.clear();
    c.zone = "europe-west10-b".into();
    c.locations = vec!["europe-west10-a".into()];
    c.ip_allocation_policy = Some(GkeIpAllocationPolicy {
        use_ip_aliases: true,
        cluster_ipv4_cidr_block: "/14".into(),
        services_ipv4_cidr_block: "10.100.0.0/20".into(),
        ..Default::default()
    });
    c.private_cluster_config = Some(GkePrivateClusterConfig {
        enable_private_endpoint: true,
        enable_private_nodes: true,
        master_ipv4_cidr_block: "172.16.0.16/28".into(),
    });
    c.master_authorized_networks = Some(GkeMasterAuthorizedNetworks {
        enabled: true,
        cidr_blocks: vec![GkeCidrBlock {
            cidr_block: "203.0.113.0/24".into(),
            display_name: "office".into(),
        }],
    });
    c.logging_service = Some("none".into());
    c.node_pools[1].autoscaling =
        Some(GkeNodePoolAutoscaling { enabled: true, min_node_count: 0, max_node_count: 3 });
    c.node_pools[1].initial_node_count = None;
    c.node_pools[1].version = Some("1.29".into());
    validate(&c).unwrap();
}

#[test]
fn an_imported_cluster_needs_only_where_it_is() {
    let c = GkeConfig { imported: true, kubernetes_version: None, node_pools: vec![], ..good() };
    validate(&c).unwrap();
}

#[test]
fn names_follow_gke_rules() {
    let (f, m) = refused(|c| c.cluster_name = "Gke_One".into());
    assert_eq!(f, "spec.gkeConfig.clusterName");
    assert!(m.contains("lower case letters"), "{m}");
    let (f, _) = refused(|c| c.cluster_name = "a".repeat(41));
    assert_eq!(f, "spec.gkeConfig.clusterName");
    let (f, _) = refused(|c| c.cluster_name = "1abc".into());
    assert_eq!(f, "spec.gkeConfig.clusterName");
    let (f, _) = refused(|c| c.node_pools[1].name = "pool-".into());
    assert_eq!(f, "spec.gkeConfig.nodePools[1].name");
    let (f, m) = refused(|c| c.node_pools[1].name = "np-a".into());
    assert_eq!(
        (f.as_str(), m.as_str()),
        ("spec.gkeConfig.nodePools[1].name", "\"np-a\" is also nodePools[0]'s name")
    );
    let (f, _) = refused(|c| c.project_id = "proj".into());
    assert_eq!(f, "spec.gkeConfig.projectID");
    let (f, _) = refused(|c| c.google_credential_secret.clear());
    assert_eq!(f, "spec.gkeConfig.googleCredentialSecret");
}

#[test]
fn exactly_one_of_region_and_zone_and_locations_in_it() {
    let (f, _) = refused(|c| c.zone = "us-central1-a".into());
    assert_eq!(f, "spec.gkeConfig.zone");
    let (f, _) = refused(|c| c.region.clear());
    assert_eq!(f, "spec.gkeConfig.region");
    let (f, _) = refused(|c| c.region = "central".into());
    assert_eq!(f, "spec.gkeConfig.region");
    let (f, m) = refused(|c| c.locations = vec!["us-central1-a".into(), "us-east1-b".into()]);
    assert_eq!(f, "spec.gkeConfig.locations[1]");
    assert!(m.contains("not in the cluster's region"), "{m}");
}

#[test]
fn versions_are_gke_versions_and_nodes_do_not_run_ahead() {
    let (f, m) = refused(|c| c.kubernetes_version = Some("v1.29.4".into()));
    assert_eq!(f, "spec.gkeConfig.kubernetesVersion");
    assert!(m.contains("no leading 'v'"), "{m}");
    let (f, _) = refused(|c| c.kubernetes_version = None);
    assert_eq!(f, "spec.gkeConfig.kubernetesVersion");
    let (f, _) = refused(|c| c.node_pools[0].version = Some("1.29.4-eks.1".into()));
    assert_eq!(f, "spec.gkeConfig.nodePools[0].version");
    let (f, m) = refused(|c| c.node_pools[1].version = Some("1.30.1".into()));
    assert_eq!(f, "spec.gkeConfig.nodePools[1].version");
    assert!(m.contains("newer than"), "{m}");
    assert_eq!(version("1.29.4-gke.1043002"), Ok((1, 29, 4)));
    assert!(version("1.29.4.5").is_err() && version("2.0").is_err() && version("").is_err());
}

#[test]
fn counts_and_autoscaling() {
    let (f, _) = refused(|c| c.node_pools[1].initial_node_count = Some(0));
    assert_eq!(f, "spec.gkeConfig.nodePools[1].initialNodeCount");
    let (f, _) = refused(|c| c.node_pools[0].initial_node_count = None);
    assert_eq!(f, "spec.gkeConfig.nodePools[0].initialNodeCount");
    let (f, m) = refused(|c| {
        c.node_pools[1].autoscaling =
            Some(GkeNodePoolAutoscaling { enabled: true, min_node_count: 4, max_node_count: 3 })
    });
    assert_eq!(f, "spec.gkeConfig.nodePools[1].autoscaling.minNodeCount");
    assert_eq!(m, "4 is more than maxNodeCount 3");
    let (f, _) = refused(|c| {
        c.node_pools[1].autoscaling =
            Some(GkeNodePoolAutoscaling { enabled: true, min_node_count: 0, max_node_count: 2 });
        c.node_pools[1].initial_node_count = Some(5);
    });
    assert_eq!(f, "spec.gkeConfig.nodePools[1].initialNodeCount");
    let (f, _) = refused(|c| c.node_pools[0].max_pods_constraint = Some(4));
    assert_eq!(f, "spec.gkeConfig.nodePools[0].maxPodsConstraint");
    let (f, m) = refused(|c| c.node_pools.clear());
    assert_eq!(
        (f.as_str(), m.as_str()),
        ("spec.gkeConfig.nodePools", "a cluster needs at least one node pool")
    );
}

#[test]
fn node_config_machine_disk_labels_taints_scopes() {
    let (f, m) = refused(|c| c.node_pools[1].config.as_mut().unwrap().machine_type.clear());
    assert_eq!(f, "spec.gkeConfig.nodePools[1].config.machineType");
    assert!(m.starts_with("is required"), "{m}");
    let (f, _) = refused(|c| c.node_pools[1].config = None);
    assert_eq!(f, "spec.gkeConfig.nodePools[1].config.machineType");
    let (f, _) = refused(|c| c.node_pools[0].config.as_mut().unwrap().disk_size_gb = 5);
    assert_eq!(f, "spec.gkeConfig.nodePools[0].config.diskSizeGb");
    let (f, _) = refused(|c| c.node_pools[0].config.as_mut().unwrap().disk_type = "ssd".into());
    assert_eq!(f, "spec.gkeConfig.nodePools[0].config.diskType");
    let (f, _) = refused(|c| {
        c.node_pools[0].config.as_mut().unwrap().labels.insert("ok".into(), "-bad-".into());
    });
    assert_eq!(f, "spec.gkeConfig.nodePools[0].config.labels.ok");
    let (f, m) = refused(|c| {
        c.node_pools[0].config.as_mut().unwrap().taints =
            vec![GkeNodeTaint { key: "dedicated".into(), value: "gpu".into(), effect: "NoSchedule".into() }];
    });
    assert_eq!(f, "spec.gkeConfig.nodePools[0].config.taints[0].effect");
    assert_eq!(m, "must be one of NO_SCHEDULE, PREFER_NO_SCHEDULE, NO_EXECUTE");
    let (f, _) =
        refused(|c| c.node_pools[0].config.as_mut().unwrap().oauth_scopes = vec!["storage-ro".into()]);
    assert_eq!(f, "spec.gkeConfig.nodePools[0].config.oauthScopes[0]");
}

#[test]
fn networks_cidrs_and_private_clusters() {
    let (f, _) = refused(|c| c.cluster_ipv4_cidr = Some("10.96.0.1/14".into()));
    assert_eq!(f, "spec.gkeConfig.clusterIpv4Cidr");
    let (f, _) = refused(|c| c.cluster_ipv4_cidr = Some("fd00::/64".into()));
    assert_eq!(f, "spec.gkeConfig.clusterIpv4Cidr");
    let (f, _) = refused(|c| {
        c.ip_allocation_policy = Some(GkeIpAllocationPolicy {
            services_ipv4_cidr_block: "10.0.0.0/20".into(),
            ..Default::default()
        })
    });
    assert_eq!(f, "spec.gkeConfig.ipAllocationPolicy.useIpAliases");
    let (f, _) = refused(|c| {
        c.ip_allocation_policy = Some(GkeIpAllocationPolicy {
            use_ip_aliases: true,
            cluster_secondary_range_name: "pods".into(),
            ..Default::default()
        })
    });
    assert_eq!(f, "spec.gkeConfig.subnetwork");
    let (f, _) = refused(|c| c.network = Some("My Net".into()));
    assert_eq!(f, "spec.gkeConfig.network");
    let aliases = Some(GkeIpAllocationPolicy { use_ip_aliases: true, ..Default::default() });
    let (f, _) = refused(|c| {
        c.ip_allocation_policy = aliases.clone();
        c.private_cluster_config =
            Some(GkePrivateClusterConfig { enable_private_endpoint: true, ..Default::default() });
    });
    assert_eq!(f, "spec.gkeConfig.privateClusterConfig.enablePrivateNodes");
    let (f, m) = refused(|c| {
        c.ip_allocation_policy = aliases.clone();
        c.private_cluster_config = Some(GkePrivateClusterConfig {
            enable_private_nodes: true,
            master_ipv4_cidr_block: "172.16.0.0/24".into(),
            ..Default::default()
        });
    });
    assert_eq!(f, "spec.gkeConfig.privateClusterConfig.masterIpv4CidrBlock");
    assert!(m.contains("/28"), "{m}");
    let (f, _) = refused(|c| {
        c.private_cluster_config = Some(GkePrivateClusterConfig {
            enable_private_nodes: true,
            master_ipv4_cidr_block: "172.16.0.0/28".into(),
            ..Default::default()
        });
    });
    assert_eq!(f, "spec.gkeConfig.ipAllocationPolicy.useIpAliases");
    let (f, _) = refused(|c| {
        c.master_authorized_networks = Some(GkeMasterAuthorizedNetworks {
            enabled: true,
            cidr_blocks: vec![GkeCidrBlock { cidr_block: "1.2.3.4".into(), display_name: String::new() }],
        })
    });
    assert_eq!(f, "spec.gkeConfig.masterAuthorizedNetworks.cidrBlocks[0].cidrBlock");
}

#[test]
fn labels_and_services() {
    let (f, _) = refused(|c| {
        c.labels.insert("Team".into(), "a".into());
    });
    assert_eq!(f, "spec.gkeConfig.labels");
    let (f, _) = refused(|c| {
        c.labels.insert("team".into(), "A B".into());
    });
    assert_eq!(f, "spec.gkeConfig.labels.team");
    let (f, _) = refused(|c| c.monitoring_service = Some("prometheus".into()));
    assert_eq!(f, "spec.gkeConfig.monitoringService");
}
