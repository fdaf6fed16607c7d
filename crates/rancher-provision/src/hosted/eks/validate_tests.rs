use rancher_core::model::{EksConfig, EksNodeGroup};

use super::*;

const NODE_ROLE: &str = "arn:aws:iam::123456789012:role/eks-nodes";

fn group(name: &str) -> EksNodeGroup {
    EksNodeGroup {
        nodegroup_name: name.into(),
        instance_type: Some("t3.medium".into()),
        disk_size: Some(20),
        desired_size: Some(2),
        min_size: Some(1),
        max_size: Some(3),
        node_role: Some(NODE_ROLE.into()),
        ..Default::default()
    }
}

fn good() -> EksConfig {
    EksConfig {
        amazon_credential_secret: "cc-aws".into(),
        display_name: "eks-one".into(),
        region: "us-west-2".into(),
        kubernetes_version: Some("1.30".into()),
        subnets: vec!["subnet-0a1b2c3d".into(), "subnet-0123456789abcdef0".into()],
        service_role: Some("arn:aws:iam::123456789012:role/eks-service".into()),
        node_groups: vec![group("ng-a"), group("ng-b")],
        ..Default::default()
    }
}

/// The field and message `change` makes `validate` name.
fn refused(change: impl FnOnce(&mut EksConfig)) -> (String, String) {
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
    c.region = "us-gov-west-1".into();
    c.tags.insert("team".into(), "platform".into());
    c.public_access = Some(false);
    c.private_access = Some(true);
    c.public_access_sources = vec!["203.0.113.0/24".into()];
    c.logging_types = vec!["api".into(), "controllerManager".into()];
    c.security_groups = vec!["sg-0123abcd".into()];
    c.node_groups[1].version = Some("1.27".into());
    c.node_groups[1].labels.insert("pool".into(), "b".into());
    c.node_groups[1].subnets = vec!["subnet-0a1b2c3d".into()];
    validate(&c).unwrap();
}

#[test]
fn an_imported_cluster_needs_only_where_it_is() {
    let c = EksConfig {
        amazon_credential_secret: "cc-aws".into(),
        display_name: "existing".into(),
        region: "eu-central-1".into(),
        imported: true,
        ..Default::default()
    };
    validate(&c).unwrap();
}

#[test]
fn the_credential_region_and_name_are_required() {
    assert_eq!(refused(|c| c.amazon_credential_secret.clear()).0, "spec.eksConfig.amazonCredentialSecret");
    let (f, m) = refused(|c| c.region = "Oregon".into());
    assert_eq!(
        (f.as_str(), m.as_str()),
        ("spec.eksConfig.region", "\"Oregon\" is not an AWS region (e.g. us-west-2)")
    );
    assert_eq!(refused(|c| c.region.clear()).0, "spec.eksConfig.region");
    let (f, m) = refused(|c| c.display_name = "-eks".into());
    assert_eq!(f, "spec.eksConfig.displayName");
    assert!(m.contains("starting with a letter or digit"), "{m}");
    assert_eq!(refused(|c| c.display_name = "a".repeat(101)).0, "spec.eksConfig.displayName");
    assert_eq!(refused(|c| c.display_name = "eks one".into()).0, "spec.eksConfig.displayName");
}

#[test]
fn creating_needs_existing_subnets_and_roles_and_says_creating_them_is_not_implemented() {
    let (f, m) = refused(|c| c.subnets.truncate(1));
    assert_eq!(f, "spec.eksConfig.subnets");
    assert!(m.contains("creating a VPC is not implemented"), "{m}");
    let (f, m) = refused(|c| c.service_role = None);
    assert_eq!(f, "spec.eksConfig.serviceRole");
    assert!(m.contains("creating the role is not implemented"), "{m}");
    let (f, m) = refused(|c| c.node_groups[1].node_role = Some(" ".into()));
    assert_eq!(f, "spec.eksConfig.nodeGroups[1].nodeRole");
    assert!(m.contains("creating the role is not implemented"), "{m}");
    let (f, m) = refused(|c| c.service_role = Some("eks-service".into()));
    assert_eq!(f, "spec.eksConfig.serviceRole");
    assert!(m.contains("not an IAM role ARN") && m.contains("by name is not implemented"), "{m}");
    assert_eq!(
        refused(|c| c.node_groups[0].node_role = Some("arn:aws:iam::1234:role/x".into())).0,
        "spec.eksConfig.nodeGroups[0].nodeRole"
    );
}

#[test]
fn identifiers_are_checked() {
    let (f, m) = refused(|c| c.subnets[1] = "vpc-0a1b2c3d".into());
    assert_eq!(f, "spec.eksConfig.subnets[1]");
    assert!(m.contains("not a subnet id"), "{m}");
    assert_eq!(refused(|c| c.subnets[1] = c.subnets[0].clone()).0, "spec.eksConfig.subnets[1]");
    assert_eq!(refused(|c| c.security_groups = vec!["sg-XYZ".into()]).0, "spec.eksConfig.securityGroups[0]");
    assert_eq!(
        refused(|c| c.node_groups[1].subnets = vec!["subnet-1".into()]).0,
        "spec.eksConfig.nodeGroups[1].subnets[0]"
    );
}

#[test]
fn endpoint_access_and_logs_follow_eks() {
    let (f, m) = refused(|c| {
        c.public_access = Some(false);
        c.private_access = Some(false);
    });
    assert_eq!(f, "spec.eksConfig.privateAccess");
    assert!(m.contains("public or private access"), "{m}");
    assert_eq!(
        refused(|c| c.public_access_sources = vec!["0.0.0.0/0".into(), "10.0.0.300/8".into()]).0,
        "spec.eksConfig.publicAccessSources[1]"
    );
    let (f, m) = refused(|c| c.logging_types = vec!["api".into(), "kubelet".into()]);
    assert_eq!(f, "spec.eksConfig.loggingTypes[1]");
    assert!(m.contains("one of api, audit"), "{m}");
    assert_eq!(
        refused(|c| c.logging_types = vec!["api".into(), "api".into()]).0,
        "spec.eksConfig.loggingTypes[1]"
    );
}

#[test]
fn versions_are_major_minor_and_nodes_never_lead() {
    let (f, m) = refused(|c| c.kubernetes_version = Some("v1.30.2".into()));
    assert_eq!(f, "spec.eksConfig.kubernetesVersion");
    assert!(m.contains("major.minor"), "{m}");
    let (f, m) = refused(|c| c.node_groups[1].version = Some("1.31".into()));
    assert_eq!(f, "spec.eksConfig.nodeGroups[1].version");
    assert!(m.contains("newer than the cluster"), "{m}");
    assert_eq!(
        refused(|c| c.node_groups[0].version = Some("1.26".into())).0,
        "spec.eksConfig.nodeGroups[0].version"
    );
}

#[test]
fn node_group_sizes_are_consistent() {
    let (f, m) = refused(|c| {
        c.node_groups[1].min_size = Some(2);
        c.node_groups[1].max_size = Some(1);
    });
    assert_eq!(
        (f.as_str(), m.as_str()),
        ("spec.eksConfig.nodeGroups[1].maxSize", "1 is less than minSize 2")
    );
    let (f, m) = refused(|c| c.node_groups[0].desired_size = Some(4));
    assert_eq!(
        (f.as_str(), m.as_str()),
        ("spec.eksConfig.nodeGroups[0].desiredSize", "4 is more than maxSize 3")
    );
    assert_eq!(
        refused(|c| c.node_groups[0].desired_size = Some(0)).0,
        "spec.eksConfig.nodeGroups[0].desiredSize"
    );
    assert_eq!(refused(|c| c.node_groups[0].min_size = Some(-1)).0, "spec.eksConfig.nodeGroups[0].minSize");
    assert_eq!(refused(|c| c.node_groups[0].max_size = Some(0)).0, "spec.eksConfig.nodeGroups[0].maxSize");
    assert_eq!(refused(|c| c.node_groups[0].disk_size = Some(0)).0, "spec.eksConfig.nodeGroups[0].diskSize");
}

#[test]
fn node_groups_are_named_uniquely_and_typed() {
    let (f, m) = refused(|c| c.node_groups[1].nodegroup_name = "ng-a".into());
    assert_eq!(f, "spec.eksConfig.nodeGroups[1].nodegroupName");
    assert!(m.contains("nodeGroups[0]"), "{m}");
    assert_eq!(
        refused(|c| c.node_groups[0].nodegroup_name.clear()).0,
        "spec.eksConfig.nodeGroups[0].nodegroupName"
    );
    assert_eq!(
        refused(|c| c.node_groups[1].instance_type = None).0,
        "spec.eksConfig.nodeGroups[1].instanceType"
    );
    assert_eq!(
        refused(|c| c.node_groups[1].instance_type = Some("T3 Medium".into())).0,
        "spec.eksConfig.nodeGroups[1].instanceType"
    );
}

#[test]
fn labels_and_tags_follow_kubernetes_and_aws() {
    let (f, _) = refused(|c| {
        c.node_groups[1].labels.insert("pool".into(), "not ok".into());
    });
    assert_eq!(f, "spec.eksConfig.nodeGroups[1].labels.pool");
    assert_eq!(
        refused(|c| {
            c.node_groups[0].labels.insert("-bad".into(), "v".into());
        })
        .0,
        "spec.eksConfig.nodeGroups[0].labels"
    );
    let (f, m) = refused(|c| {
        c.tags.insert("aws:owner".into(), "me".into());
    });
    assert_eq!(f, "spec.eksConfig.tags");
    assert!(m.contains("reserved"), "{m}");
    assert_eq!(
        refused(|c| {
            c.node_groups[1].tags.insert("k".into(), "v".repeat(257));
        })
        .0,
        "spec.eksConfig.nodeGroups[1].tags.k"
    );
}
