//! Clusters on SSH hosts, RKE-style: reading and checking their `cluster.yml` ([`RkeConfig`]), and what
//! it means where it says nothing (defaults: node names, SSH settings, networks, DNS).
//!
//! The CLI runs the same [`parse_cluster_yml`] and [`validate`] as the server, so a bad file fails
//! before any request. Fields are named as JSON paths from `rkeConfig` (`rkeConfig.nodes[2].role[0]`).
//!
//! ```
//! use rancher_provision::rke;
//! let cfg = rke::parse_cluster_yml(r#"
//! nodes:
//!   - address: 10.0.0.1
//!     role: [etcd, controlplane, worker]
//! ssh_key_path: /root/.ssh/id_ed25519
//! "#)?;
//! let warnings = rke::validate(&cfg)?;
//! assert_eq!(warnings.len(), 1, "one host holding every role is not the recommended topology");
//! assert_eq!(rke::kubernetes_service_ip(&cfg)?.to_string(), "10.43.0.1");
//! # Ok::<(), rancher_provision::ProvisionError>(())
//! ```
//!
//! [`RkeConfig`]: rancher_core::model::RkeConfig

mod cidr;
mod defaults;
pub(crate) mod names;
mod nodes;
mod parse;
#[cfg(test)]
mod tests;
pub(crate) mod validate;

pub use cidr::{Cidr, CidrError};

/// The cluster annotation naming the hosts (node names, comma-separated; `*` for all) that are gone
/// for good: removing them (or the cluster) does not wait to drain or clean them when they cannot
/// be reached. `rancherctl cluster node rm --force` and `cluster rm --force` set it.
pub const ABANDON_HOSTS_ANNOTATION: &str = "rke.cattle.io/abandon-hosts";

/// Whether `annotations` abandon the host `node` (see [`ABANDON_HOSTS_ANNOTATION`]).
pub fn is_abandoned(annotations: &std::collections::BTreeMap<String, String>, node: &str) -> bool {
    annotations
        .get(ABANDON_HOSTS_ANNOTATION)
        .is_some_and(|v| v.split(',').map(str::trim).any(|n| n == "*" || n == node))
}
pub use defaults::{
    DEFAULT_CLUSTER_CIDR, DEFAULT_CLUSTER_DOMAIN, DEFAULT_DNS_SERVER, DEFAULT_MAX_UNAVAILABLE_CONTROLPLANE,
    DEFAULT_MAX_UNAVAILABLE_WORKER, DEFAULT_PREFIX_PATH, DEFAULT_SERVICE_CIDR, DEFAULT_SSH_PORT,
    DEFAULT_SSH_USER, SshKeySource, bastion_key_source, cluster_cidr, cluster_dns_server, cluster_domain,
    internal_address, kubernetes_service_ip, max_unavailable, node_name, prefix_path, service_cidr,
    ssh_key_source, ssh_port, ssh_user,
};
pub use parse::{MAX_CLUSTER_YML_BYTES, parse_cluster_yml};
pub use validate::{s3_config, validate};

/// The driver name of clusters built from an `rkeConfig`.
pub const DRIVER: &str = "rke";

/// The etcd role.
pub const ROLE_ETCD: &str = "etcd";
/// The control-plane role (kube-apiserver, kube-controller-manager, kube-scheduler).
pub const ROLE_CONTROLPLANE: &str = "controlplane";
/// The worker role (kubelet).
pub const ROLE_WORKER: &str = "worker";
/// Every role a node may have.
pub const ROLES: [&str; 3] = [ROLE_ETCD, ROLE_CONTROLPLANE, ROLE_WORKER];
