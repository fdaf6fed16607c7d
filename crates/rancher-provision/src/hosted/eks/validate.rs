//! Checking an `eksConfig` before any AWS call: EKS's naming rules (CreateCluster / CreateNodegroup
//! API reference), regions, subnet / security-group / IAM-role identifiers, tags, endpoint access,
//! log types, versions and node-group sizes. Fields are named as JSON paths from the cluster
//! (`spec.eksConfig.nodeGroups[1].maxSize`).
//!
//! Creating the network or the IAM roles is not implemented (Rancher's eks-operator does it with
//! CloudFormation): a cluster to create names existing `subnets`, `serviceRole` and each node
//! group's `nodeRole`, and the refusal says so.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rancher_core::model::{EksConfig, EksNodeGroup};

use crate::ProvisionError;
use crate::rke::Cidr;
use crate::rke::names::{label_key, label_value};

const ROOT: &str = "spec.eksConfig";

/// The control-plane log types EKS sends to CloudWatch.
pub const LOG_TYPES: [&str; 5] = ["api", "audit", "authenticator", "controllerManager", "scheduler"];
/// EKS's longest cluster name.
pub const MAX_CLUSTER_NAME_LEN: usize = 100;
/// EKS's longest node-group name.
pub const MAX_NODEGROUP_NAME_LEN: usize = 63;
/// The most nodes one managed node group may have (this crate's limit; AWS's quota is lower).
pub const MAX_NODEGROUP_SIZE: i64 = 1000;
/// How many minor versions nodes may run behind the control plane.
pub const MAX_NODE_VERSION_SKEW: u32 = 3;

fn bad(field: impl AsRef<str>, message: impl Into<String>) -> ProvisionError {
    ProvisionError::invalid_spec(format!("{ROOT}.{}", field.as_ref()), message)
}

/// Checks `config` as EKS would, without calling it.
///
/// # Errors
/// [`ProvisionError::InvalidSpec`] naming the first bad field, e.g.
/// `spec.eksConfig.nodeGroups[1].maxSize: 1 is less than minSize 2`.
pub fn validate(config: &EksConfig) -> Result<(), ProvisionError> {
    if config.amazon_credential_secret.trim().is_empty() {
        return Err(bad(
            "amazonCredentialSecret",
            "is required: the name of a CloudCredential holding AWS access keys",
        ));
    }
    region(&config.region).map_err(|m| bad("region", m))?;
    eks_name(&config.display_name, MAX_CLUSTER_NAME_LEN).map_err(|m| bad("displayName", m))?;
    let create = !config.imported;
    let master = match &config.kubernetes_version {
        Some(v) => Some(version(v).map_err(|m| bad("kubernetesVersion", m))?),
        None => None,
    };
    tags(&config.tags, "tags")?;
    if config.public_access == Some(false) && config.private_access == Some(false) {
        return Err(bad(
            "privateAccess",
            "the API server needs public or private access: both are false (publicAccess too)",
        ));
    }
    if config.public_access_sources.len() > 40 {
        return Err(bad("publicAccessSources", "at most 40 CIDR blocks"));
    }
    for (i, s) in config.public_access_sources.iter().enumerate() {
        public_cidr(s).map_err(|m| bad(format!("publicAccessSources[{i}]"), m))?;
    }
    for (i, t) in config.logging_types.iter().enumerate() {
        if !LOG_TYPES.contains(&t.as_str()) {
            return Err(bad(
                format!("loggingTypes[{i}]"),
                format!("{t:?} is not a log type: one of {}", LOG_TYPES.join(", ")),
            ));
        }
        if config.logging_types[..i].contains(t) {
            return Err(bad(format!("loggingTypes[{i}]"), format!("{t:?} is listed twice")));
        }
    }
    ids(&config.subnets, "subnets", "subnet")?;
    ids(&config.security_groups, "securityGroups", "sg")?;
    if config.security_groups.len() > 5 {
        return Err(bad("securityGroups", "at most 5 security groups"));
    }
    if create && config.subnets.len() < 2 {
        return Err(bad(
            "subnets",
            "creating a cluster needs at least two existing subnets in different availability zones \
             (creating a VPC is not implemented)",
        ));
    }
    match config.service_role.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(r) => role_arn(r).map_err(|m| bad("serviceRole", m))?,
        None if create => {
            return Err(bad(
                "serviceRole",
                "creating a cluster needs an existing IAM role's ARN for EKS (creating the role is not implemented)",
            ));
        }
        None => {}
    }
    let mut seen = BTreeMap::new();
    for (i, ng) in config.node_groups.iter().enumerate() {
        let at = format!("nodeGroups[{i}]");
        eks_name(&ng.nodegroup_name, MAX_NODEGROUP_NAME_LEN)
            .map_err(|m| bad(format!("{at}.nodegroupName"), m))?;
        if let Some(first) = seen.insert(ng.nodegroup_name.as_str(), i) {
            return Err(bad(
                format!("{at}.nodegroupName"),
                format!("{:?} is also nodeGroups[{first}]'s name", ng.nodegroup_name),
            ));
        }
        node_group(ng, &at, master, create)?;
    }
    Ok(())
}

fn node_group(
    ng: &EksNodeGroup,
    at: &str,
    master: Option<(u32, u32)>,
    create: bool,
) -> Result<(), ProvisionError> {
    match ng.instance_type.as_deref() {
        Some(t) => instance_type(t).map_err(|m| bad(format!("{at}.instanceType"), m))?,
        None if create => return Err(bad(format!("{at}.instanceType"), "is required (e.g. t3.medium)")),
        None => {}
    }
    if let Some(d) = ng.disk_size
        && !(1..=16_384).contains(&d)
    {
        return Err(bad(format!("{at}.diskSize"), "must be between 1 and 16384 (GiB)"));
    }
    for (field, n) in [("minSize", ng.min_size), ("maxSize", ng.max_size), ("desiredSize", ng.desired_size)] {
        if n.is_some_and(|n| n > MAX_NODEGROUP_SIZE) {
            return Err(bad(format!("{at}.{field}"), format!("at most {MAX_NODEGROUP_SIZE} nodes")));
        }
    }
    if let Some(min) = ng.min_size
        && min < 0
    {
        return Err(bad(format!("{at}.minSize"), "must be 0 or more"));
    }
    if let Some(max) = ng.max_size
        && max < 1
    {
        return Err(bad(format!("{at}.maxSize"), "must be at least 1"));
    }
    if let Some(d) = ng.desired_size
        && d < 0
    {
        return Err(bad(format!("{at}.desiredSize"), "must be 0 or more"));
    }
    if let (Some(min), Some(max)) = (ng.min_size, ng.max_size)
        && max < min
    {
        return Err(bad(format!("{at}.maxSize"), format!("{max} is less than minSize {min}")));
    }
    if let (Some(d), Some(max)) = (ng.desired_size, ng.max_size)
        && d > max
    {
        return Err(bad(format!("{at}.desiredSize"), format!("{d} is more than maxSize {max}")));
    }
    if let (Some(d), Some(min)) = (ng.desired_size, ng.min_size)
        && d < min
    {
        return Err(bad(format!("{at}.desiredSize"), format!("{d} is less than minSize {min}")));
    }
    if let Some(v) = &ng.version {
        let mine = version(v).map_err(|m| bad(format!("{at}.version"), m))?;
        if let Some(master) = master {
            if mine > master {
                return Err(bad(
                    format!("{at}.version"),
                    format!(
                        "{v:?} is newer than the cluster's kubernetesVersion: nodes may not run ahead of the control plane"
                    ),
                ));
            }
            if mine.0 == master.0 && master.1 - mine.1 > MAX_NODE_VERSION_SKEW {
                return Err(bad(
                    format!("{at}.version"),
                    format!(
                        "{v:?} is more than {MAX_NODE_VERSION_SKEW} minor versions behind the cluster's kubernetesVersion"
                    ),
                ));
            }
        }
    }
    for (k, v) in &ng.labels {
        label_key(k).map_err(|m| bad(format!("{at}.labels"), format!("{k:?}: {m}")))?;
        label_value(v).map_err(|m| bad(format!("{at}.labels.{k}"), m))?;
    }
    tags(&ng.tags, &format!("{at}.tags"))?;
    match ng.node_role.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(r) => role_arn(r).map_err(|m| bad(format!("{at}.nodeRole"), m))?,
        None if create => {
            return Err(bad(
                format!("{at}.nodeRole"),
                "creating a node group needs an existing IAM role's ARN for the nodes (creating the role is not implemented)",
            ));
        }
        None => {}
    }
    ids(&ng.subnets, &format!("{at}.subnets"), "subnet")
}

/// An AWS region name: `us-west-2`, `eu-central-1`, `us-gov-west-1`, `cn-north-1`.
pub fn region(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Err("is required (e.g. us-west-2)".into());
    }
    let parts: Vec<&str> = r.split('-').collect();
    let ok = parts.len() >= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts[0].len() == 2
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    if ok { Ok(()) } else { Err(format!("{r:?} is not an AWS region (e.g. us-west-2)")) }
}

/// EKS's cluster and node-group names: letters, digits, `-` and `_`, starting with a letter or digit.
pub fn eks_name(name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("is required".into());
    }
    let ok = name.len() <= max
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an EKS name: up to {max} letters, digits, '-' and '_', starting with a letter or digit"
        ))
    }
}

/// A Kubernetes version as EKS takes it: `major.minor` (`1.30`).
pub fn version(v: &str) -> Result<(u32, u32), String> {
    let parsed = v.split_once('.').and_then(|(a, b)| {
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        (all_digits(a) && all_digits(b)).then(|| Some((a.parse().ok()?, b.parse().ok()?))).flatten()
    });
    parsed.ok_or_else(|| format!("{v:?} is not an EKS Kubernetes version: major.minor, e.g. 1.30"))
}

/// An instance type: `family.size` (`t3.medium`, `m6g.2xlarge`).
fn instance_type(t: &str) -> Result<(), String> {
    let ok = t.split_once('.').is_some_and(|(f, s)| {
        let part = |p: &str| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        part(f) && part(s)
    });
    if ok { Ok(()) } else { Err(format!("{t:?} is not an EC2 instance type (e.g. t3.medium)")) }
}

/// `subnet-0abc…` / `sg-0abc…`: the prefix, then 8 or 17 hexadecimal digits.
fn ids(list: &[String], field: &str, prefix: &str) -> Result<(), ProvisionError> {
    for (i, id) in list.iter().enumerate() {
        let ok = id.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')).is_some_and(|h| {
            matches!(h.len(), 8 | 17) && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if !ok {
            return Err(bad(
                format!("{field}[{i}]"),
                format!("{id:?} is not a {prefix} id ({prefix}- and 8 or 17 hexadecimal digits)"),
            ));
        }
        if list[..i].contains(id) {
            return Err(bad(format!("{field}[{i}]"), format!("{id:?} is listed twice")));
        }
    }
    Ok(())
}

/// An IAM role ARN: `arn:<partition>:iam::<12-digit account>:role/<path/name>`.
fn role_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("role/").is_some_and(|n| {
            !n.is_empty()
                && n.len() <= 512
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{arn:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>); looking a role up by name is not implemented"
        ))
    }
}

/// An IPv4 CIDR for the public endpoint's allow list.
fn public_cidr(s: &str) -> Result<(), String> {
    let cidr: Cidr = s.parse().map_err(|e| format!("{e}"))?;
    if !matches!(cidr.network(), IpAddr::V4(_)) {
        return Err(format!("{s:?} is not an IPv4 CIDR"));
    }
    Ok(())
}

/// AWS tags: at most 50, keys 1–128 characters and not `aws:`-prefixed, values up to 256.
fn tags(tags: &BTreeMap<String, String>, field: &str) -> Result<(), ProvisionError> {
    if tags.len() > 50 {
        return Err(bad(field, "at most 50 tags"));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(bad(field, format!("{k:?} is not a tag key: 1 to 128 characters")));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(bad(field, format!("{k:?}: the aws: prefix is reserved for AWS")));
        }
        if v.chars().count() > 256 {
            return Err(bad(format!("{field}.{k}"), "a tag value is at most 256 characters"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
