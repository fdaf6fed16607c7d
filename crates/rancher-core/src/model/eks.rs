//! `spec.eksConfig`: a cluster that Amazon Elastic Kubernetes Service runs (driver `EKS`).
//!
//! The keys are Rancher eks-operator's (`EKSClusterConfigSpec`: `amazonCredentialSecret`,
//! `displayName`, `nodeGroups[].nodegroupName`), so a cluster written for Rancher reads the same here.
//! The cloud credential is named, never embedded. Rancher writes `null` for lists and maps it leaves
//! unset; those read as empty. Validation lives with the provisioner
//! (`rancher_provision::hosted::eks::validate`); these types only carry the shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// An EKS cluster: its region and name in AWS, its control plane's network and access, and its
/// managed node groups. With `imported: true` it names an existing cluster to register instead.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EksConfig {
    /// The CloudCredential (AWS access keys) the provisioner signs in with.
    #[serde(default)]
    pub amazon_credential_secret: String,
    /// The cluster's name in EKS.
    #[serde(default)]
    pub display_name: String,
    /// The AWS region (`us-west-2`).
    #[serde(default)]
    pub region: String,
    /// Registers an existing cluster instead of creating one; it is never deleted from EKS.
    #[serde(default)]
    pub imported: bool,
    /// The control plane's Kubernetes version (`1.30`); EKS's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// AWS tags on the cluster.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Whether the API server endpoint is reachable from the internet (EKS's default: yes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_access: Option<bool>,
    /// Whether the API server endpoint is reachable from inside the VPC (EKS's default: no).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_access: Option<bool>,
    /// The CIDRs allowed to reach the public endpoint (EKS's default: `0.0.0.0/0`).
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub public_access_sources: Vec<String>,
    /// The control-plane log types sent to CloudWatch (`api`, `audit`, `authenticator`,
    /// `controllerManager`, `scheduler`).
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub logging_types: Vec<String>,
    /// The VPC subnets (`subnet-…`) of the control plane's network interfaces; at least two, in
    /// different availability zones. Required to create: making a VPC is not implemented.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// Security groups (`sg-…`) for the control plane's network interfaces.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// The IAM role (ARN) EKS acts as for the control plane. Required to create: making one is not
    /// implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_role: Option<String>,
    /// The managed node groups.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub node_groups: Vec<EksNodeGroup>,
}

/// One managed node group: EC2 instances of one type in an auto-scaling group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EksNodeGroup {
    /// The node group's name.
    #[serde(default)]
    pub nodegroup_name: String,
    /// The EC2 instance type (`t3.medium`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Each node's root volume, in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<i64>,
    /// How many nodes to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_size: Option<i64>,
    /// The fewest nodes the group scales down to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<i64>,
    /// The most nodes the group scales up to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<i64>,
    /// Kubernetes labels on the nodes.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// AWS tags on the node group.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The nodes' Kubernetes version (`1.30`); the control plane's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The IAM role (ARN) the nodes run as. Required to create: making one is not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_role: Option<String>,
    /// The subnets the nodes run in; the cluster's when empty.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
}

/// `null` (as Rancher writes an unset Go slice or map) reads as the empty value.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rancher_eks_operator_field_names() {
        let c: EksConfig = serde_json::from_value(serde_json::json!({
            "amazonCredentialSecret": "cattle-global-data:cc-aws",
            "displayName": "eks-one",
            "region": "us-west-2",
            "imported": false,
            "kubernetesVersion": "1.30",
            "tags": {"team": "a"},
            "publicAccess": true,
            "privateAccess": false,
            "publicAccessSources": ["203.0.113.0/24"],
            "loggingTypes": ["api", "audit"],
            "subnets": ["subnet-0a", "subnet-0b"],
            "securityGroups": ["sg-01"],
            "serviceRole": "arn:aws:iam::123456789012:role/eks-service",
            "kmsKey": null,
            "nodeGroups": [{
                "nodegroupName": "ng-1", "instanceType": "t3.medium", "diskSize": 40,
                "desiredSize": 2, "minSize": 1, "maxSize": 3,
                "labels": {"pool": "a"}, "tags": {"owner": "ops"}, "version": "1.30",
                "nodeRole": "arn:aws:iam::123456789012:role/eks-nodes", "subnets": null,
                "launchTemplate": null
            }]
        }))
        .unwrap();
        assert_eq!((c.display_name.as_str(), c.region.as_str()), ("eks-one", "us-west-2"));
        assert_eq!(c.kubernetes_version.as_deref(), Some("1.30"));
        assert_eq!((c.public_access, c.private_access), (Some(true), Some(false)));
        assert_eq!(c.subnets, ["subnet-0a", "subnet-0b"]);
        assert_eq!(c.logging_types, ["api", "audit"]);
        let ng = &c.node_groups[0];
        assert_eq!(ng.nodegroup_name, "ng-1");
        assert_eq!(
            (ng.desired_size, ng.min_size, ng.max_size, ng.disk_size),
            (Some(2), Some(1), Some(3), Some(40))
        );
        assert!(ng.subnets.is_empty(), "null reads as empty");
        assert_eq!(ng.labels["pool"], "a");

        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["amazonCredentialSecret"], "cattle-global-data:cc-aws");
        assert_eq!(back["nodeGroups"][0]["nodegroupName"], "ng-1");
        assert_eq!(back["nodeGroups"][0]["nodeRole"], "arn:aws:iam::123456789012:role/eks-nodes");
        assert!(back["nodeGroups"][0].get("subnets").is_none(), "empty lists are left out: {back}");
        assert_eq!(serde_json::from_value::<EksConfig>(back).unwrap(), c);
    }

    #[test]
    fn rancher_s_nulls_read_as_unset() {
        let c: EksConfig = serde_json::from_value(serde_json::json!({
            "amazonCredentialSecret": "cc", "displayName": "x", "region": "eu-west-1", "imported": true,
            "kubernetesVersion": null, "tags": null, "publicAccessSources": null, "loggingTypes": null,
            "subnets": null, "securityGroups": null, "serviceRole": null, "nodeGroups": null
        }))
        .unwrap();
        assert!(c.imported && c.node_groups.is_empty() && c.subnets.is_empty() && c.service_role.is_none());
    }
}
