//! The cluster as the PKI and the plans see it: each host's name, addresses and roles, and the
//! cluster-wide settings with [`crate::rke`]'s defaults applied.

use std::net::IpAddr;

use rancher_core::model::{RkeConfig, RkeNode};

use super::RenderError;
use crate::rke;

/// NodePort range when `services.kube-api.service_node_port_range` is empty.
pub(crate) const DEFAULT_NODE_PORT_RANGE: &str = "30000-32767";

/// One host with its defaults applied.
#[derive(Clone, Debug)]
pub(crate) struct Host<'a> {
    /// The Node's name: `hostname_override`, else `address`.
    pub(crate) name: String,
    /// Where other hosts and outside clients reach it.
    pub(crate) address: &'a str,
    /// Where the cluster's components reach it: `internal_address`, else `address`.
    pub(crate) internal: &'a str,
    pub(crate) etcd: bool,
    pub(crate) controlplane: bool,
    pub(crate) worker: bool,
    pub(crate) node: &'a RkeNode,
}

impl<'a> Host<'a> {
    fn new(node: &'a RkeNode) -> Self {
        let (name, internal) = (rke::node_name(node), rke::internal_address(node));
        let has = |r: &str| node.role.iter().any(|x| x == r);
        Host {
            name,
            address: &node.address,
            internal,
            etcd: has("etcd"),
            controlplane: has("controlplane"),
            worker: has("worker"),
            node,
        }
    }

    /// Whether the host's internal address is a loopback address (several "hosts" on one machine, as in
    /// tests): then nothing of it listens on 127.0.0.1, which the others would claim too.
    pub(crate) fn internal_is_loopback(&self) -> bool {
        self.internal.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// The hosts of `cfg`, checked for what the PKI and the plans rely on: every host has an address and
/// a role, names are unique, there is at least one etcd and one controlplane host.
pub(crate) fn hosts(cfg: &RkeConfig) -> Result<Vec<Host<'_>>, RenderError> {
    let hosts: Vec<Host<'_>> = cfg.nodes.iter().map(Host::new).collect();
    for (i, h) in hosts.iter().enumerate() {
        if h.address.trim().is_empty() {
            return Err(RenderError::invalid(format!("nodes[{i}].address"), "must not be empty"));
        }
        if !(h.etcd || h.controlplane || h.worker) {
            return Err(RenderError::invalid(
                format!("nodes[{i}].role"),
                "needs at least one of etcd, controlplane, worker",
            ));
        }
        if let Some(r) =
            h.node.role.iter().find(|r| !["etcd", "controlplane", "worker"].contains(&r.as_str()))
        {
            return Err(RenderError::invalid(format!("nodes[{i}].role"), format!("unknown role {r:?}")));
        }
        if hosts[..i].iter().any(|o| o.name == h.name) {
            return Err(RenderError::invalid(
                format!("nodes[{i}]"),
                format!("node name {:?} is used by another node", h.name),
            ));
        }
    }
    if !hosts.iter().any(|h| h.etcd) {
        return Err(RenderError::invalid("nodes", "no node has the etcd role"));
    }
    if !hosts.iter().any(|h| h.controlplane) {
        return Err(RenderError::invalid("nodes", "no node has the controlplane role"));
    }
    Ok(hosts)
}

fn or<'a>(v: &'a str, default: &'a str) -> &'a str {
    if v.is_empty() { default } else { v }
}

/// The services' virtual IP range.
pub(crate) fn service_range(cfg: &RkeConfig) -> &str {
    or(&cfg.services.kube_api.service_cluster_ip_range, rke::DEFAULT_SERVICE_CIDR)
}

/// The pods' IP range.
pub(crate) fn cluster_cidr(cfg: &RkeConfig) -> &str {
    or(&cfg.services.kube_controller.cluster_cidr, rke::DEFAULT_CLUSTER_CIDR)
}

/// The cluster DNS domain.
pub(crate) fn cluster_domain(cfg: &RkeConfig) -> &str {
    rke::cluster_domain(cfg)
}

/// The cluster DNS service IP.
pub(crate) fn cluster_dns(cfg: &RkeConfig) -> &str {
    or(&cfg.services.kubelet.cluster_dns_server, rke::DEFAULT_DNS_SERVER)
}

/// The NodePort range.
pub(crate) fn node_port_range(cfg: &RkeConfig) -> &str {
    or(&cfg.services.kube_api.service_node_port_range, DEFAULT_NODE_PORT_RANGE)
}

/// The first address of the service range: the `kubernetes` Service's IP ([`rke::kubernetes_service_ip`]).
pub(crate) fn kubernetes_service_ip(cfg: &RkeConfig) -> Result<IpAddr, RenderError> {
    rke::kubernetes_service_ip(cfg).map_err(|e| match e {
        crate::ProvisionError::InvalidSpec { field, message } => RenderError::invalid(field, message),
        other => RenderError::invalid("services.kube-api.service_cluster_ip_range", other.to_string()),
    })
}

/// The effective prefix path: `prefix_path`, else `/`, without a trailing slash (`""` for `/`), so
/// `format!("{prefix}/etc/kubernetes")` is always right.
pub(crate) fn prefix(cfg: &RkeConfig) -> Result<String, RenderError> {
    let p = rke::prefix_path(cfg);
    if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
        return Err(RenderError::invalid(
            "prefix_path",
            format!("{p:?} must be an absolute path without `..`"),
        ));
    }
    Ok(p.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(range: &str) -> RkeConfig {
        let mut c = RkeConfig::default();
        c.services.kube_api.service_cluster_ip_range = range.into();
        c
    }

    #[test]
    fn the_kubernetes_service_ip_is_the_first_of_the_range() {
        assert_eq!(kubernetes_service_ip(&cfg("")).unwrap().to_string(), "10.43.0.1");
        assert_eq!(kubernetes_service_ip(&cfg("172.20.0.0/20")).unwrap().to_string(), "172.20.0.1");
        // Host bits set: refused as the config's validation refuses it.
        assert!(kubernetes_service_ip(&cfg("172.20.5.7/20")).is_err());
        assert_eq!(kubernetes_service_ip(&cfg("fd00:43::/112")).unwrap().to_string(), "fd00:43::1");
        let err = kubernetes_service_ip(&cfg("10.43.0.0")).unwrap_err().to_string();
        assert!(err.contains("service_cluster_ip_range") && err.contains("CIDR"), "{err}");
        assert!(kubernetes_service_ip(&cfg("10.0.0.0/32")).is_err());
    }

    #[test]
    fn the_prefix_is_absolute_and_has_no_trailing_slash() {
        let mut c = RkeConfig::default();
        assert_eq!(prefix(&c).unwrap(), "");
        c.prefix_path = "/opt/rke/".into();
        assert_eq!(prefix(&c).unwrap(), "/opt/rke");
        c.prefix_path = "opt".into();
        assert!(prefix(&c).unwrap_err().to_string().starts_with("prefix_path:"));
        c.prefix_path = "/a/../etc".into();
        assert!(prefix(&c).is_err());
    }
}
