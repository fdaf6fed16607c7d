//! What the EKS client sends and reads, in the crate's own types (so a provisioner compiles without
//! the `eks` feature's SDK): what to create from an `eksConfig` ([`cluster_for_create`],
//! [`nodegroup_for_create`]), and what `DescribeCluster` / `DescribeNodegroup` / `DescribeUpdate`
//! answer.

use std::collections::BTreeMap;

use base64::Engine;
use rancher_core::model::{EksConfig, EksNodeGroup};

/// A cluster's `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClusterStatus {
    /// `CREATING`
    #[default]
    Creating,
    /// `ACTIVE`
    Active,
    /// `UPDATING`
    Updating,
    /// `DELETING`
    Deleting,
    /// `FAILED`
    Failed,
    /// `PENDING` (a connected cluster)
    Pending,
    /// Anything else AWS adds later.
    Other(String),
}

impl ClusterStatus {
    /// From AWS's word.
    pub fn parse(s: &str) -> ClusterStatus {
        match s {
            "CREATING" => ClusterStatus::Creating,
            "ACTIVE" => ClusterStatus::Active,
            "UPDATING" => ClusterStatus::Updating,
            "DELETING" => ClusterStatus::Deleting,
            "FAILED" => ClusterStatus::Failed,
            "PENDING" => ClusterStatus::Pending,
            other => ClusterStatus::Other(other.to_owned()),
        }
    }
}

/// A node group's `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NodegroupStatus {
    /// `CREATING`
    #[default]
    Creating,
    /// `ACTIVE`
    Active,
    /// `UPDATING`
    Updating,
    /// `DELETING`
    Deleting,
    /// `CREATE_FAILED`
    CreateFailed,
    /// `DELETE_FAILED`
    DeleteFailed,
    /// `DEGRADED`
    Degraded,
    /// Anything else.
    Other(String),
}

impl NodegroupStatus {
    /// From AWS's word.
    pub fn parse(s: &str) -> NodegroupStatus {
        match s {
            "CREATING" => NodegroupStatus::Creating,
            "ACTIVE" => NodegroupStatus::Active,
            "UPDATING" => NodegroupStatus::Updating,
            "DELETING" => NodegroupStatus::Deleting,
            "CREATE_FAILED" => NodegroupStatus::CreateFailed,
            "DELETE_FAILED" => NodegroupStatus::DeleteFailed,
            "DEGRADED" => NodegroupStatus::Degraded,
            other => NodegroupStatus::Other(other.to_owned()),
        }
    }
}

/// What `DescribeCluster` tells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cluster {
    /// The name.
    pub name: String,
    /// `arn:aws:eks:<region>:<account>:cluster/<name>`.
    pub arn: String,
    /// Where it is in its life.
    pub status: ClusterStatus,
    /// The control plane's Kubernetes version (`1.30`).
    pub version: Option<String>,
    /// EKS's platform version (`eks.4`).
    pub platform_version: Option<String>,
    /// The API server's URL (`https://….eks.amazonaws.com`), once there is one.
    pub endpoint: Option<String>,
    /// The cluster CA as EKS gives it: base64 of the PEM.
    pub certificate_authority_data: Option<String>,
    /// The control plane's IAM role.
    pub role_arn: Option<String>,
    /// The control plane's subnets.
    pub subnets: Vec<String>,
    /// The control plane's security groups.
    pub security_groups: Vec<String>,
    /// Whether the endpoint is public.
    pub public_access: Option<bool>,
    /// Whether the endpoint is reachable inside the VPC.
    pub private_access: Option<bool>,
    /// Who may reach the public endpoint.
    pub public_access_sources: Vec<String>,
    /// The control-plane log types switched on.
    pub logging_types: Vec<String>,
    /// The cluster's tags.
    pub tags: BTreeMap<String, String>,
}

impl Cluster {
    /// The cluster CA's PEM, decoded; `None` before EKS has one or when it is not base64.
    pub fn ca_pem(&self) -> Option<String> {
        let data = self.certificate_authority_data.as_deref()?;
        let raw = base64::engine::general_purpose::STANDARD.decode(data.trim()).ok()?;
        String::from_utf8(raw).ok()
    }
}

/// A node group's size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scaling {
    /// The fewest nodes.
    pub min_size: Option<i32>,
    /// The most nodes.
    pub max_size: Option<i32>,
    /// The nodes wanted now.
    pub desired_size: Option<i32>,
}

/// What `DescribeNodegroup` tells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nodegroup {
    /// The name.
    pub name: String,
    /// The cluster it belongs to.
    pub cluster_name: String,
    /// Where it is in its life.
    pub status: NodegroupStatus,
    /// The nodes' Kubernetes version.
    pub version: Option<String>,
    /// The AMI release version.
    pub release_version: Option<String>,
    /// The instance types.
    pub instance_types: Vec<String>,
    /// The root volume size, in GiB.
    pub disk_size: Option<i32>,
    /// Its size.
    pub scaling: Scaling,
    /// The nodes' Kubernetes labels.
    pub labels: BTreeMap<String, String>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// The nodes' IAM role.
    pub node_role: Option<String>,
    /// The nodes' subnets.
    pub subnets: Vec<String>,
    /// Health issues (`code: message`), e.g. of a `DEGRADED` group.
    pub health_issues: Vec<String>,
}

/// An update's `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateStatus {
    /// `InProgress`
    InProgress,
    /// `Successful`
    Successful,
    /// `Failed`
    Failed,
    /// `Cancelled`
    Cancelled,
    /// Anything else.
    Other(String),
}

impl UpdateStatus {
    /// From AWS's word.
    pub fn parse(s: &str) -> UpdateStatus {
        match s {
            "InProgress" => UpdateStatus::InProgress,
            "Successful" => UpdateStatus::Successful,
            "Failed" => UpdateStatus::Failed,
            "Cancelled" => UpdateStatus::Cancelled,
            other => UpdateStatus::Other(other.to_owned()),
        }
    }
}

/// An asynchronous change (`UpdateClusterVersion`, `UpdateClusterConfig`, `UpdateNodegroupConfig`,
/// `UpdateNodegroupVersion`) and how far it got (`DescribeUpdate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// The update's id.
    pub id: String,
    /// How far it got.
    pub status: UpdateStatus,
    /// `VersionUpdate`, `ConfigUpdate`, `LoggingUpdate`, `EndpointAccessUpdate`, …
    pub kind: String,
    /// Its errors (`code: message`).
    pub errors: Vec<String>,
}

/// What `CreateCluster` is asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterCreate {
    /// The name.
    pub name: String,
    /// The Kubernetes version; EKS's default when `None`.
    pub version: Option<String>,
    /// The control plane's IAM role ARN.
    pub role_arn: String,
    /// The control plane's subnets.
    pub subnets: Vec<String>,
    /// The control plane's security groups.
    pub security_groups: Vec<String>,
    /// Endpoint access (EKS's defaults when `None`).
    pub public_access: Option<bool>,
    /// Private endpoint access.
    pub private_access: Option<bool>,
    /// Who may reach the public endpoint.
    pub public_access_sources: Vec<String>,
    /// Control-plane log types to switch on.
    pub logging_types: Vec<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// What `CreateNodegroup` is asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodegroupCreate {
    /// The name.
    pub name: String,
    /// The nodes' IAM role ARN.
    pub node_role: String,
    /// The nodes' subnets.
    pub subnets: Vec<String>,
    /// The instance types.
    pub instance_types: Vec<String>,
    /// The root volume size in GiB.
    pub disk_size: Option<i32>,
    /// Its size.
    pub scaling: Scaling,
    /// The nodes' Kubernetes labels.
    pub labels: BTreeMap<String, String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// The nodes' Kubernetes version; the cluster's when `None`.
    pub version: Option<String>,
}

/// A change of endpoint access and logging (`UpdateClusterConfig`): `None` leaves a part as is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterConfigUpdate {
    /// Public endpoint access.
    pub public_access: Option<bool>,
    /// Private endpoint access.
    pub private_access: Option<bool>,
    /// Who may reach the public endpoint (sent with the access flags).
    pub public_access_sources: Option<Vec<String>>,
    /// The log types to have switched on (the others are switched off).
    pub logging_types: Option<Vec<String>>,
}

impl ClusterConfigUpdate {
    /// Whether it changes nothing (EKS refuses an empty update).
    pub fn is_empty(&self) -> bool {
        self.public_access.is_none()
            && self.private_access.is_none()
            && self.public_access_sources.is_none()
            && self.logging_types.is_none()
    }
}

fn size(n: Option<i64>) -> Option<i32> {
    n.and_then(|n| i32::try_from(n).ok())
}

/// What `CreateCluster` is asked for by a validated `eksConfig` (without its node groups).
pub fn cluster_for_create(config: &EksConfig) -> ClusterCreate {
    ClusterCreate {
        name: config.display_name.clone(),
        version: config.kubernetes_version.clone(),
        role_arn: config.service_role.clone().unwrap_or_default(),
        subnets: config.subnets.clone(),
        security_groups: config.security_groups.clone(),
        public_access: config.public_access,
        private_access: config.private_access,
        public_access_sources: config.public_access_sources.clone(),
        logging_types: config.logging_types.clone(),
        tags: config.tags.clone(),
    }
}

/// What `CreateNodegroup` is asked for by node group `ng` of a validated `eksConfig`: the
/// cluster's subnets when the group names none, the cluster's version when it names none.
pub fn nodegroup_for_create(config: &EksConfig, ng: &EksNodeGroup) -> NodegroupCreate {
    NodegroupCreate {
        name: ng.nodegroup_name.clone(),
        node_role: ng.node_role.clone().unwrap_or_default(),
        subnets: if ng.subnets.is_empty() { config.subnets.clone() } else { ng.subnets.clone() },
        instance_types: ng.instance_type.iter().cloned().collect(),
        disk_size: size(ng.disk_size),
        scaling: Scaling {
            min_size: size(ng.min_size),
            max_size: size(ng.max_size),
            desired_size: size(ng.desired_size),
        },
        labels: ng.labels.clone(),
        tags: ng.tags.clone(),
        version: ng.version.clone().or_else(|| config.kubernetes_version.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_group_inherits_the_cluster_s_subnets_and_version() {
        let config = EksConfig {
            display_name: "eks-one".into(),
            kubernetes_version: Some("1.30".into()),
            subnets: vec!["subnet-0a1b2c3d".into(), "subnet-0a1b2c3e".into()],
            service_role: Some("arn:aws:iam::123456789012:role/eks".into()),
            ..Default::default()
        };
        let ng = EksNodeGroup {
            nodegroup_name: "ng-1".into(),
            instance_type: Some("t3.large".into()),
            desired_size: Some(2),
            max_size: Some(5_000_000_000),
            ..Default::default()
        };
        let create = nodegroup_for_create(&config, &ng);
        assert_eq!(create.subnets, config.subnets);
        assert_eq!(create.version.as_deref(), Some("1.30"));
        assert_eq!(create.instance_types, ["t3.large"]);
        assert_eq!(create.scaling, Scaling { min_size: None, max_size: None, desired_size: Some(2) });
        let c = cluster_for_create(&config);
        assert_eq!((c.name.as_str(), c.role_arn.as_str()), ("eks-one", "arn:aws:iam::123456789012:role/eks"));
    }

    #[test]
    fn the_ca_is_decoded_from_base64() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let c = Cluster {
            name: "c".into(),
            arn: String::new(),
            status: ClusterStatus::parse("ACTIVE"),
            version: None,
            platform_version: None,
            endpoint: None,
            certificate_authority_data: Some(base64::engine::general_purpose::STANDARD.encode(pem)),
            role_arn: None,
            subnets: vec![],
            security_groups: vec![],
            public_access: None,
            private_access: None,
            public_access_sources: vec![],
            logging_types: vec![],
            tags: BTreeMap::new(),
        };
        assert_eq!(c.status, ClusterStatus::Active);
        assert_eq!(c.ca_pem().as_deref(), Some(pem));
        assert_eq!(NodegroupStatus::parse("DEGRADED"), NodegroupStatus::Degraded);
        assert_eq!(UpdateStatus::parse("Later"), UpdateStatus::Other("Later".into()));
    }
}
