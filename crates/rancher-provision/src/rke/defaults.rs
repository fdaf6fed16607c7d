//! What a cluster.yml means where it says nothing: node names, SSH settings, the networks, the DNS
//! service, the prefix path. The other parts of the provisioner read these instead of the raw fields.

use std::fmt;
use std::net::IpAddr;

use rancher_core::model::{RkeBastionHost, RkeConfig, RkeNode};

use super::cidr::Cidr;
use crate::ProvisionError;

/// Services' virtual IP range when `services.kube-api.service_cluster_ip_range` is empty.
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";
/// Pods' IP range when `services.kube-controller.cluster_cidr` is empty.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
/// The cluster DNS service's IP when `services.kubelet.cluster_dns_server` is empty.
pub const DEFAULT_DNS_SERVER: &str = "10.43.0.10";
/// The cluster DNS domain when `services.kubelet.cluster_domain` is empty.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// The directory under which files go on every host when `prefix_path` is empty.
pub const DEFAULT_PREFIX_PATH: &str = "/";
/// The SSH user when neither the node nor the cluster names one.
pub const DEFAULT_SSH_USER: &str = "root";
/// The SSH port when a node names none.
pub const DEFAULT_SSH_PORT: u16 = 22;

/// The name of a node's Kubernetes Node: `hostname_override`, or its address.
pub fn node_name(node: &RkeNode) -> String {
    if node.hostname_override.is_empty() { node.address.clone() } else { node.hostname_override.clone() }
}

/// `max_unavailable_worker` when the upgrade strategy names none.
pub const DEFAULT_MAX_UNAVAILABLE_WORKER: &str = "10%";
/// `max_unavailable_controlplane` when the upgrade strategy names none.
pub const DEFAULT_MAX_UNAVAILABLE_CONTROLPLANE: &str = "1";

/// How many of `hosts` hosts may be updated at once under `value` (`2`, `10%`; empty means
/// `default`): a percentage rounds down, and the answer is at least 1 (a rollout always moves) and at
/// most `hosts`. A malformed value counts as 1 (validation refuses it before).
pub fn max_unavailable(value: &str, default: &str, hosts: usize) -> usize {
    let value = if value.trim().is_empty() { default } else { value.trim() };
    let n = match value.strip_suffix('%') {
        Some(p) => p.parse::<usize>().map_or(1, |p| hosts * p.min(100) / 100),
        None => value.parse::<usize>().unwrap_or(1),
    };
    n.clamp(1, hosts.max(1))
}

/// The SSH user for `node`: its own, the cluster's, then `root`.
pub fn ssh_user<'a>(cfg: &'a RkeConfig, node: &'a RkeNode) -> &'a str {
    [node.user.as_str(), cfg.user.as_str()].into_iter().find(|u| !u.is_empty()).unwrap_or(DEFAULT_SSH_USER)
}

/// A `port` field as a number: empty means 22.
///
/// # Errors
/// A message for a value that is not a number from 1 to 65535.
pub fn ssh_port(port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Ok(DEFAULT_SSH_PORT);
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{port:?} is not a port: a number from 1 to 65535")),
    }
}

/// Where the SSH private key of a node (or the bastion host) comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SshKeySource<'a> {
    /// The key itself (PEM or OpenSSH); on the server, possibly sealed (`sealed:v1:…`).
    Inline(&'a str),
    /// A file holding it, on the filesystem of whoever reads it (the server, when provisioning).
    Path(&'a str),
}

impl fmt::Debug for SshKeySource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SshKeySource::Inline(_) => f.write_str("Inline(<redacted>)"),
            SshKeySource::Path(p) => f.debug_tuple("Path").field(p).finish(),
        }
    }
}

/// The first of `key`/`path` pairs that sets either (the key before the path of the same pair).
fn first_source<'a>(pairs: [(&'a str, &'a str); 2]) -> Option<SshKeySource<'a>> {
    pairs.into_iter().find_map(|(key, path)| match (key, path) {
        ("", "") => None,
        ("", path) => Some(SshKeySource::Path(path)),
        (key, _) => Some(SshKeySource::Inline(key)),
    })
}

/// The SSH key for `node`: its own `ssh_key` or `ssh_key_path`, else the cluster's.
pub fn ssh_key_source<'a>(cfg: &'a RkeConfig, node: &'a RkeNode) -> Option<SshKeySource<'a>> {
    first_source([(&node.ssh_key, &node.ssh_key_path), (&cfg.ssh_key, &cfg.ssh_key_path)])
}

/// The SSH key for the bastion host: its own, else the cluster's.
pub fn bastion_key_source<'a>(cfg: &'a RkeConfig, bastion: &'a RkeBastionHost) -> Option<SshKeySource<'a>> {
    first_source([(&bastion.ssh_key, &bastion.ssh_key_path), (&cfg.ssh_key, &cfg.ssh_key_path)])
}

/// The address other hosts reach `node` at: `internal_address`, or its address.
pub fn internal_address(node: &RkeNode) -> &str {
    if node.internal_address.is_empty() { &node.address } else { &node.internal_address }
}

/// The field paths of the networks, as validation names them.
pub(crate) const SERVICE_CIDR_FIELD: &str = "rkeConfig.services.kube-api.service_cluster_ip_range";
pub(crate) const CLUSTER_CIDR_FIELD: &str = "rkeConfig.services.kube-controller.cluster_cidr";
pub(crate) const DNS_SERVER_FIELD: &str = "rkeConfig.services.kubelet.cluster_dns_server";

fn cidr(value: &str, default: &str, field: &str) -> Result<Cidr, ProvisionError> {
    let value = if value.is_empty() { default } else { value };
    value.parse().map_err(|e: super::cidr::CidrError| ProvisionError::invalid_spec(field, e.to_string()))
}

/// Services' virtual IP range (default 10.43.0.0/16).
///
/// # Errors
/// [`ProvisionError::InvalidSpec`] naming the field when it is not a CIDR.
pub fn service_cidr(cfg: &RkeConfig) -> Result<Cidr, ProvisionError> {
    cidr(&cfg.services.kube_api.service_cluster_ip_range, DEFAULT_SERVICE_CIDR, SERVICE_CIDR_FIELD)
}

/// Pods' IP range (default 10.42.0.0/16).
///
/// # Errors
/// [`ProvisionError::InvalidSpec`] naming the field when it is not a CIDR.
pub fn cluster_cidr(cfg: &RkeConfig) -> Result<Cidr, ProvisionError> {
    cidr(&cfg.services.kube_controller.cluster_cidr, DEFAULT_CLUSTER_CIDR, CLUSTER_CIDR_FIELD)
}

/// The cluster DNS service's IP (default 10.43.0.10).
///
/// # Errors
/// [`ProvisionError::InvalidSpec`] naming the field when it is not an IP address.
pub fn cluster_dns_server(cfg: &RkeConfig) -> Result<IpAddr, ProvisionError> {
    let value = &cfg.services.kubelet.cluster_dns_server;
    let value = if value.is_empty() { DEFAULT_DNS_SERVER } else { value };
    value.parse().map_err(|_| {
        ProvisionError::invalid_spec(DNS_SERVER_FIELD, format!("{value:?} is not an IP address"))
    })
}

/// The cluster DNS domain (default `cluster.local`).
pub fn cluster_domain(cfg: &RkeConfig) -> &str {
    let d = &cfg.services.kubelet.cluster_domain;
    if d.is_empty() { DEFAULT_CLUSTER_DOMAIN } else { d }
}

/// The `kubernetes` Service's IP: the first address of the service range (10.43.0.1 by default).
///
/// # Errors
/// As [`service_cidr`]; also when the range has no address after its network address (a /32).
pub fn kubernetes_service_ip(cfg: &RkeConfig) -> Result<IpAddr, ProvisionError> {
    let range = service_cidr(cfg)?;
    range.nth(1).ok_or_else(|| {
        ProvisionError::invalid_spec(SERVICE_CIDR_FIELD, format!("{range} is too small for any service"))
    })
}

/// The directory under which the provisioner puts its files on every host (default `/`).
pub fn prefix_path(cfg: &RkeConfig) -> &str {
    if cfg.prefix_path.is_empty() { DEFAULT_PREFIX_PATH } else { &cfg.prefix_path }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let mut cfg = RkeConfig::default();
        let mut node = RkeNode { address: "10.0.0.5".into(), ..Default::default() };
        assert_eq!(node_name(&node), "10.0.0.5");
        assert_eq!(ssh_user(&cfg, &node), "root");
        assert_eq!(ssh_key_source(&cfg, &node), None);
        assert_eq!(internal_address(&node), "10.0.0.5");
        assert_eq!(service_cidr(&cfg).unwrap().to_string(), "10.43.0.0/16");
        assert_eq!(cluster_cidr(&cfg).unwrap().to_string(), "10.42.0.0/16");
        assert_eq!(cluster_dns_server(&cfg).unwrap().to_string(), "10.43.0.10");
        assert_eq!(kubernetes_service_ip(&cfg).unwrap().to_string(), "10.43.0.1");
        assert_eq!((cluster_domain(&cfg), prefix_path(&cfg)), ("cluster.local", "/"));
        assert_eq!(ssh_port(""), Ok(22));
        assert!(ssh_port("0").is_err() && ssh_port("65536").is_err() && ssh_port("x").is_err());

        cfg.user = "ubuntu".into();
        cfg.ssh_key_path = "/root/.ssh/id_ed25519".into();
        cfg.services.kube_api.service_cluster_ip_range = "172.20.0.0/24".into();
        assert_eq!(ssh_user(&cfg, &node), "ubuntu");
        assert_eq!(ssh_key_source(&cfg, &node), Some(SshKeySource::Path("/root/.ssh/id_ed25519")));
        assert_eq!(kubernetes_service_ip(&cfg).unwrap().to_string(), "172.20.0.1");
        node.user = "admin".into();
        node.ssh_key = "-----BEGIN OPENSSH PRIVATE KEY-----".into();
        node.hostname_override = "n1".into();
        assert_eq!((node_name(&node), ssh_user(&cfg, &node)), ("n1".to_owned(), "admin"));
        let source = ssh_key_source(&cfg, &node).unwrap();
        assert_eq!(format!("{source:?}"), "Inline(<redacted>)", "a key never shows in Debug");
    }
}
