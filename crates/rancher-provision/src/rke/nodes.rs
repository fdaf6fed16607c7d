//! Checks of `rkeConfig.nodes`: each host's address, port, name, roles, labels, taints and SSH key,
//! no two hosts alike, and a topology that can run a cluster.

use std::collections::BTreeMap;

use rancher_core::model::{RkeConfig, RkeNode};

use super::defaults::{node_name, ssh_key_source, ssh_port};
use super::names::{dns1123_subdomain, host_address, label_key, label_value};
use super::{ROLE_CONTROLPLANE, ROLE_ETCD, ROLE_WORKER, ROLES};
use crate::ProvisionError;

/// How many nodes hold each role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Topology {
    pub(crate) etcd: usize,
    pub(crate) controlplane: usize,
    pub(crate) worker: usize,
    /// Nodes with the worker role and etcd or controlplane as well.
    pub(crate) shared_workers: usize,
}

pub(crate) fn check(cfg: &RkeConfig) -> Result<Topology, ProvisionError> {
    if cfg.nodes.is_empty() {
        return Err(ProvisionError::invalid_spec("rkeConfig.nodes", "at least one node is required"));
    }
    let mut by_endpoint: BTreeMap<(String, u16), usize> = BTreeMap::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    let mut topology = Topology::default();
    for (i, node) in cfg.nodes.iter().enumerate() {
        let field = |f: &str| format!("rkeConfig.nodes[{i}].{f}");
        let invalid = |f: &str, m: String| ProvisionError::invalid_spec(field(f), m);
        host_address(&node.address).map_err(|m| invalid("address", m))?;
        if !node.internal_address.is_empty() {
            host_address(&node.internal_address).map_err(|m| invalid("internal_address", m))?;
        }
        let port = ssh_port(&node.port).map_err(|m| invalid("port", m))?;
        if let Some(first) = by_endpoint.insert((node.address.to_ascii_lowercase(), port), i) {
            return Err(invalid(
                "address",
                format!(
                    "{}:{port} is also the address of nodes[{first}]: each host is listed once",
                    node.address
                ),
            ));
        }
        if !node.hostname_override.is_empty() {
            dns1123_subdomain(&node.hostname_override).map_err(|m| invalid("hostname_override", m))?;
        }
        let name = node_name(node);
        if let Some(first) = by_name.insert(name.clone(), i) {
            let f = if node.hostname_override.is_empty() { "address" } else { "hostname_override" };
            return Err(invalid(
                f,
                format!(
                    "the node name {name:?} is also that of nodes[{first}]: give one a distinct \
                     hostname_override"
                ),
            ));
        }
        count_roles(node, i, &mut topology)?;
        check_labels(node, i)?;
        check_ssh(cfg, node, i)?;
    }
    if topology.etcd == 0 {
        return Err(ProvisionError::invalid_spec(
            "rkeConfig.nodes",
            "no node has the etcd role: at least one is required (three recommended)",
        ));
    }
    if topology.controlplane == 0 {
        return Err(ProvisionError::invalid_spec(
            "rkeConfig.nodes",
            "no node has the controlplane role: at least one is required (two recommended)",
        ));
    }
    if topology.worker == 0 {
        return Err(ProvisionError::invalid_spec(
            "rkeConfig.nodes",
            "no node has the worker role: at least one is required",
        ));
    }
    Ok(topology)
}

fn count_roles(node: &RkeNode, i: usize, topology: &mut Topology) -> Result<(), ProvisionError> {
    if node.role.is_empty() {
        return Err(ProvisionError::invalid_spec(
            format!("rkeConfig.nodes[{i}].role"),
            format!("a node needs at least one role of {}", ROLES.join(", ")),
        ));
    }
    for (k, role) in node.role.iter().enumerate() {
        if !ROLES.contains(&role.as_str()) {
            return Err(ProvisionError::invalid_spec(
                format!("rkeConfig.nodes[{i}].role[{k}]"),
                format!("{role:?} is not a role: the roles are {}", ROLES.join(", ")),
            ));
        }
    }
    let has = |r: &str| node.role.iter().any(|x| x == r);
    let (etcd, cp, worker) = (has(ROLE_ETCD), has(ROLE_CONTROLPLANE), has(ROLE_WORKER));
    topology.etcd += usize::from(etcd);
    topology.controlplane += usize::from(cp);
    topology.worker += usize::from(worker);
    topology.shared_workers += usize::from(worker && (etcd || cp));
    Ok(())
}

const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn check_labels(node: &RkeNode, i: usize) -> Result<(), ProvisionError> {
    for (key, value) in &node.labels {
        let field = format!("rkeConfig.nodes[{i}].labels.{key}");
        label_key(key).map_err(|m| ProvisionError::invalid_spec(&field, m))?;
        label_value(value).map_err(|m| ProvisionError::invalid_spec(&field, m))?;
    }
    for (k, taint) in node.taints.iter().enumerate() {
        let field = |f: &str| format!("rkeConfig.nodes[{i}].taints[{k}].{f}");
        label_key(&taint.key).map_err(|m| ProvisionError::invalid_spec(field("key"), m))?;
        label_value(&taint.value).map_err(|m| ProvisionError::invalid_spec(field("value"), m))?;
        if !TAINT_EFFECTS.contains(&taint.effect.as_str()) {
            return Err(ProvisionError::invalid_spec(
                field("effect"),
                format!("{:?} is not a taint effect: use {}", taint.effect, TAINT_EFFECTS.join(", ")),
            ));
        }
    }
    Ok(())
}

fn check_ssh(cfg: &RkeConfig, node: &RkeNode, i: usize) -> Result<(), ProvisionError> {
    if !node.ssh_key_path.is_empty() {
        super::validate::absolute_key_path(
            &node.ssh_key_path,
            &format!("rkeConfig.nodes[{i}].ssh_key_path"),
        )?;
    }
    if ssh_key_source(cfg, node).is_none() {
        return Err(ProvisionError::invalid_spec(
            format!("rkeConfig.nodes[{i}].ssh_key"),
            "no SSH key for this node: set ssh_key or ssh_key_path on the node, or on the cluster",
        ));
    }
    Ok(())
}
