use rancher_core::model::{AksConfig, AksNodePool};

use super::validate;
use crate::ProvisionError;

type PoolEdit = fn(&mut AksNodePool);

fn pool(name: &str, mode: &str) -> AksNodePool {
    AksNodePool {
        name: name.into(),
        count: Some(1),
        vm_size: Some("Standard_DS2_v2".into()),
        mode: Some(mode.into()),
        ..Default::default()
    }
}

fn good() -> AksConfig {
    AksConfig {
        azure_credential_secret: "cc-azure".into(),
        resource_location: "eastus".into(),
        resource_group: "rg-rancher".into(),
        cluster_name: "prod_1".into(),
        kubernetes_version: Some("1.30.4".into()),
        dns_prefix: Some("prod-1".into()),
        network_plugin: Some("kubenet".into()),
        service_cidr: Some("10.0.0.0/16".into()),
        dns_service_ip: Some("10.0.0.10".into()),
        pod_cidr: Some("10.244.0.0/16".into()),
        load_balancer_sku: Some("standard".into()),
        base_url: Some("https://management.azure.com".into()),
        node_pools: vec![pool("system", "System"), pool("user1", "User")],
        ..Default::default()
    }
}

/// The field the first error names.
#[track_caller]
fn field_of(c: &AksConfig) -> String {
    match validate(c) {
        Err(ProvisionError::InvalidSpec { field, .. }) => field,
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
}

#[test]
fn a_complete_config_passes() {
    validate(&good()).unwrap();
    let imported = AksConfig { imported: true, node_pools: vec![], ..good() };
    validate(&imported).unwrap();
}

#[test]
fn required_placement_is_named() {
    assert_eq!(
        field_of(&AksConfig { azure_credential_secret: " ".into(), ..good() }),
        "spec.aksConfig.azureCredentialSecret"
    );
    assert_eq!(
        field_of(&AksConfig { resource_location: "".into(), ..good() }),
        "spec.aksConfig.resourceLocation"
    );
    assert_eq!(field_of(&AksConfig { resource_group: "".into(), ..good() }), "spec.aksConfig.resourceGroup");
    assert_eq!(
        field_of(&AksConfig { resource_group: "rg.".into(), ..good() }),
        "spec.aksConfig.resourceGroup"
    );
}

#[test]
fn cluster_names_follow_azure() {
    for bad in ["", "-a", "a-", "a b", &"x".repeat(64), "ä"] {
        assert_eq!(
            field_of(&AksConfig { cluster_name: bad.into(), ..good() }),
            "spec.aksConfig.clusterName",
            "{bad:?}"
        );
    }
    for ok in ["a", "A_b-9", &"x".repeat(63)] {
        validate(&AksConfig { cluster_name: ok.into(), ..good() }).unwrap();
    }
    assert_eq!(field_of(&AksConfig { dns_prefix: Some("a_b".into()), ..good() }), "spec.aksConfig.dnsPrefix");
}

#[test]
fn pool_names_are_short_lowercase_and_unique() {
    let mut c = good();
    c.node_pools[1].name = "User1".into();
    assert_eq!(field_of(&c), "spec.aksConfig.nodePools[1].name");
    c.node_pools[1].name = "abcdefghijklm".into(); // 13
    assert_eq!(field_of(&c), "spec.aksConfig.nodePools[1].name");
    c.node_pools[1].name = "1abc".into();
    assert_eq!(field_of(&c), "spec.aksConfig.nodePools[1].name");
    c.node_pools[1].name = "system".into();
    assert_eq!(field_of(&c), "spec.aksConfig.nodePools[1].name");
    c.node_pools[1].name = "winpool".into();
    c.node_pools[1].os_type = Some("Windows".into());
    assert_eq!(field_of(&c), "spec.aksConfig.nodePools[1].name", "Windows pools: at most 6");
    c.node_pools[1].name = "win1".into();
    validate(&c).unwrap();
}

#[test]
fn a_system_pool_is_needed_unless_imported() {
    let c = AksConfig { node_pools: vec![pool("user1", "User")], ..good() };
    assert_eq!(field_of(&c), "spec.aksConfig.nodePools");
    assert_eq!(field_of(&AksConfig { node_pools: vec![], ..good() }), "spec.aksConfig.nodePools");
    validate(&AksConfig { imported: true, ..c }).unwrap();
}

#[test]
fn pool_fields_are_checked() {
    let mut c = good();
    c.node_pools[1].vm_size = None;
    assert_eq!(field_of(&c), "spec.aksConfig.nodePools[1].vmSize");
    c.node_pools[1].vm_size = Some("Standard DS2".into());
    assert_eq!(field_of(&c), "spec.aksConfig.nodePools[1].vmSize");

    let mut c = good();
    c.node_pools[0].count = Some(0);
    assert_eq!(field_of(&c), "spec.aksConfig.nodePools[0].count", "System pools keep a node");
    c.node_pools[0].count = Some(1);
    c.node_pools[1].count = Some(0);
    validate(&c).unwrap();
    c.node_pools[1].mode = Some("Spot".into());
    assert_eq!(field_of(&c), "spec.aksConfig.nodePools[1].mode");

    let checks: [(PoolEdit, &str); 7] = [
        (|p| p.max_pods = Some(5), "maxPods"),
        (|p| p.os_disk_size_gb = Some(10), "osDiskSizeGB"),
        (|p| p.os_disk_type = Some("Premium".into()), "osDiskType"),
        (|p| p.availability_zones = Some(vec!["1".into(), "4".into()]), "availabilityZones[1]"),
        (|p| p.max_surge = Some("0".into()), "maxSurge"),
        (|p| p.vnet_subnet_id = Some("subnet-1".into()), "vnetSubnetID"),
        (|p| p.orchestrator_version = Some("1.31.0".into()), "orchestratorVersion"),
    ];
    for (change, field) in checks {
        let mut c = good();
        change(&mut c.node_pools[1]);
        assert_eq!(field_of(&c), format!("spec.aksConfig.nodePools[1].{field}"));
    }
    let mut c = good();
    c.node_pools[1].max_surge = Some("33%".into());
    c.node_pools[1].orchestrator_version = Some("1.29.9".into());
    validate(&c).unwrap();
}

#[test]
fn autoscaling_bounds() {
    let mut c = good();
    c.node_pools[1].enable_auto_scaling = Some(true);
    assert_eq!(field_of(&c), "spec.aksConfig.nodePools[1].minCount");
    c.node_pools[1].min_count = Some(3);
    c.node_pools[1].max_count = Some(2);
    assert_eq!(field_of(&c), "spec.aksConfig.nodePools[1].minCount");
    c.node_pools[1].max_count = Some(5);
    assert_eq!(field_of(&c), "spec.aksConfig.nodePools[1].count", "count 1 is below minCount 3");
    c.node_pools[1].count = Some(3);
    validate(&c).unwrap();
    c.node_pools[1].max_count = Some(1001);
    assert_eq!(field_of(&c), "spec.aksConfig.nodePools[1].maxCount");
}

#[test]
fn taints_are_key_value_effect() {
    let mut c = good();
    c.node_pools[1].node_taints = vec!["gpu=true:NoSchedule".into(), "dedicated:NoExecute".into()];
    validate(&c).unwrap();
    for bad in ["gpu=true", "gpu=true:Never", "=x:NoSchedule", "a b=c:NoSchedule"] {
        c.node_pools[1].node_taints = vec!["ok=1:NoSchedule".into(), bad.into()];
        assert_eq!(field_of(&c), "spec.aksConfig.nodePools[1].nodeTaints[1]", "{bad:?}");
    }
}

#[test]
fn network_settings() {
    let set = |f: fn(&mut AksConfig)| {
        let mut c = good();
        f(&mut c);
        field_of(&c)
    };
    assert_eq!(set(|c| c.network_plugin = Some("cilium".into())), "spec.aksConfig.networkPlugin");
    assert_eq!(set(|c| c.network_policy = Some("weave".into())), "spec.aksConfig.networkPolicy");
    assert_eq!(set(|c| c.load_balancer_sku = Some("premium".into())), "spec.aksConfig.loadBalancerSku");
    assert_eq!(set(|c| c.outbound_type = Some("nat".into())), "spec.aksConfig.outboundType");
    assert_eq!(set(|c| c.service_cidr = Some("10.0.0.0/33".into())), "spec.aksConfig.serviceCidr");
    assert_eq!(set(|c| c.pod_cidr = Some("10.0.1.0/24".into())), "spec.aksConfig.podCidr");
    assert_eq!(set(|c| c.dns_service_ip = Some("10.1.0.10".into())), "spec.aksConfig.dnsServiceIp");
    assert_eq!(set(|c| c.dns_service_ip = Some("10.0.0.1".into())), "spec.aksConfig.dnsServiceIp");
    assert_eq!(set(|c| c.dns_service_ip = Some("ten".into())), "spec.aksConfig.dnsServiceIp");
    assert_eq!(
        set(|c| {
            c.service_cidr = None;
            c.dns_service_ip = Some("172.16.0.10".into());
        }),
        "spec.aksConfig.dnsServiceIp",
        "checked against AKS's default 10.0.0.0/16"
    );
    assert_eq!(set(|c| c.virtual_network = Some("vnet".into())), "spec.aksConfig.subnet");
    assert_eq!(
        set(|c| {
            c.virtual_network = Some("vnet".into());
            c.subnet = Some("nodes".into());
        }),
        "spec.aksConfig.virtualNetworkResourceGroup"
    );
    assert_eq!(
        set(|c| c.authorized_ip_ranges = vec!["1.2.3.0/24".into(), "x".into()]),
        "spec.aksConfig.authorizedIpRanges[1]"
    );
    assert_eq!(
        set(|c| {
            c.private_cluster = true;
            c.authorized_ip_ranges = vec!["1.2.3.0/24".into()];
        }),
        "spec.aksConfig.authorizedIpRanges"
    );
}

#[test]
fn urls_versions_and_profile() {
    let set = |f: fn(&mut AksConfig)| {
        let mut c = good();
        f(&mut c);
        field_of(&c)
    };
    assert_eq!(set(|c| c.base_url = Some("http://management.azure.com".into())), "spec.aksConfig.baseUrl");
    assert_eq!(set(|c| c.auth_base_url = Some("login".into())), "spec.aksConfig.authBaseUrl");
    assert_eq!(set(|c| c.kubernetes_version = Some("v1.30".into())), "spec.aksConfig.kubernetesVersion");
    assert_eq!(set(|c| c.linux_admin_username = Some("azureuser".into())), "spec.aksConfig.sshPublicKey");
    assert_eq!(
        set(|c| {
            c.linux_admin_username = Some("azureuser".into());
            c.ssh_public_key = Some("not a key".into());
        }),
        "spec.aksConfig.sshPublicKey"
    );
    assert_eq!(set(|c| c.tags = [("a/b".to_owned(), "x".to_owned())].into()), "spec.aksConfig.tags.a/b");
    let mut c = good();
    c.linux_admin_username = Some("azureuser".into());
    c.ssh_public_key = Some("ssh-ed25519 AAAAC3Nza me@host".into());
    validate(&c).unwrap();
}
