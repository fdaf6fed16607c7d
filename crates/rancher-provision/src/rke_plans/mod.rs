//! The per-host plans that turn SSH hosts into a Kubernetes cluster, RKE-style: which certificates,
//! keys and kubeconfigs each host holds (under the cluster's prefix path) and which processes it runs
//! with which flags — etcd on etcd hosts; kube-apiserver, kube-controller-manager and kube-scheduler
//! on controlplane hosts; a kubelet everywhere; optionally the cluster agent on the first
//! controlplane host.
//!
//! ```
//! use rancher_core::model::{RkeConfig, RkeNode};
//! use rancher_provision::cluster_pki::ClusterPki;
//! use rancher_provision::rke_plans::{ComponentPaths, render_plans};
//!
//! let cfg = RkeConfig {
//!     nodes: vec![RkeNode {
//!         address: "10.0.0.5".into(),
//!         role: vec!["etcd".into(), "controlplane".into(), "worker".into()],
//!         ..Default::default()
//!     }],
//!     ..Default::default()
//! };
//! let mut pki = ClusterPki::new();
//! assert!(pki.ensure(&cfg).unwrap());
//! let plans = render_plans(&cfg, &pki, &ComponentPaths::under("/opt/rke/bin")).unwrap();
//! let names: Vec<&str> = plans["10.0.0.5"].processes.iter().map(|p| p.name.as_str()).collect();
//! assert_eq!(names, ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"]);
//! ```

mod files;
pub(crate) mod hosts;
mod services;

use std::collections::BTreeMap;

use rancher_core::model::RkeConfig;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::cluster_pki::{self, ClusterPki};
use crate::plan::NodePlan;
use files::HostFiles;

/// The port every kube-apiserver listens on.
pub const APISERVER_PORT: u16 = 6443;

/// `https://<address>:6443` of the first controlplane host (its `address`, as the hosts' users reach
/// it): the server of the admin's kubeconfig. `None` when `cfg` has no controlplane host.
pub fn admin_server_url(cfg: &RkeConfig) -> Option<String> {
    let node = cfg.nodes.iter().find(|n| n.role.iter().any(|r| r == crate::rke::ROLE_CONTROLPLANE))?;
    let address = node.address.trim();
    if address.is_empty() {
        return None;
    }
    Some(files::https_url(address, APISERVER_PORT))
}

/// Where the component binaries are on every host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentPaths {
    /// etcd (3.4).
    pub etcd: String,
    /// kube-apiserver.
    pub kube_apiserver: String,
    /// kube-controller-manager.
    pub kube_controller_manager: String,
    /// kube-scheduler.
    pub kube_scheduler: String,
    /// The kubelet: a `rancher-sim` binary, run as `<kubelet> kubelet <flags>`.
    pub kubelet: String,
    /// When set, the first controlplane host also runs the cluster agent.
    pub cluster_agent: Option<ClusterAgent>,
    /// Default flags by component (`etcd`, `kube-apiserver`, …; name without dashes → value), as a
    /// bundle gives them: over the provisioner's defaults, under `services.*.extra_args`.
    pub args: BTreeMap<String, BTreeMap<String, String>>,
}

impl ComponentPaths {
    /// Every binary in `dir` under its usual name (`etcd`, `kube-apiserver`, …, `rancher-sim` for the
    /// kubelet), no cluster agent.
    pub fn under(dir: &str) -> Self {
        let dir = dir.trim_end_matches('/');
        ComponentPaths {
            etcd: format!("{dir}/etcd"),
            kube_apiserver: format!("{dir}/kube-apiserver"),
            kube_controller_manager: format!("{dir}/kube-controller-manager"),
            kube_scheduler: format!("{dir}/kube-scheduler"),
            kubelet: format!("{dir}/rancher-sim"),
            cluster_agent: None,
            args: BTreeMap::new(),
        }
    }
}

/// The cluster agent (`rancher-agent`) the first controlplane host runs, and how it finds the server.
#[derive(Clone, Debug)]
pub struct ClusterAgent {
    /// The `rancher-agent` binary on the host.
    pub binary: String,
    /// `CATTLE_SERVER`: the server's URL.
    pub server_url: String,
    /// `CATTLE_CA_CHECKSUM`: SHA-256 (hex) of the server's `cacerts`; empty when the server's
    /// certificate is publicly trusted.
    pub ca_checksum: String,
    /// `CATTLE_TOKEN`: the cluster's registration token (a secret).
    pub token: SecretString,
}

impl PartialEq for ClusterAgent {
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret as _;
        self.binary == other.binary
            && self.server_url == other.server_url
            && self.ca_checksum == other.ca_checksum
            && self.token.expose_secret() == other.token.expose_secret()
    }
}

impl Eq for ClusterAgent {}

/// Why plans could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A setting is missing or malformed; `field` is its path in `rkeConfig` (or `binaries.<name>`).
    #[error("{field}: {message}")]
    Invalid {
        /// The setting's path (`nodes[1].role`, `services.kube-api.extra_args.foo`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The PKI lacks a certificate the plans need: call [`ClusterPki::ensure`] with this
    /// configuration first.
    #[error("the cluster PKI has no {0}: ensure the PKI for this configuration first")]
    MissingCertificate(String),
    /// A key of the PKI could not be read.
    #[error("the cluster PKI: {0}")]
    Pki(#[source] Box<cluster_pki::PkiError>),
    /// A plan could not be serialized to compute its revision.
    #[error("plan of {node}: {source}")]
    Serialize {
        /// The node.
        node: String,
        /// serde_json's reason.
        #[source]
        source: serde_json::Error,
    },
}

impl RenderError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        RenderError::Invalid { field: field.into(), message: message.into() }
    }
}

/// How an etcd host joined its cluster, which its `--initial-cluster` flags must keep saying for as
/// long as it runs (etcd reads them only on its first start, but a changed flag changes the plan and
/// restarts the member): the members at its join and whether the cluster was running then.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdJoin {
    /// `--initial-cluster`: `<name>=https://<internal>:2380,…` of the members at its join, itself
    /// included.
    pub initial_cluster: String,
    /// `--initial-cluster-state existing`: it was added to a running cluster through the member API.
    pub existing: bool,
}

/// `--initial-cluster` of a cluster started from `cfg` as it is: every etcd host of `cfg`.
///
/// # Errors
/// [`RenderError::Invalid`] when `cfg`'s hosts are not valid (see [`render_plans`]).
pub fn etcd_initial_cluster(cfg: &RkeConfig) -> Result<String, RenderError> {
    let hosts = hosts::hosts(cfg)?;
    let etcd: Vec<&hosts::Host<'_>> = hosts.iter().filter(|h| h.etcd).collect();
    Ok(services::initial_cluster(&etcd))
}

/// `https://<internal address>:2380` of `node`: its etcd peer URL.
pub fn etcd_peer_url(node: &rancher_core::model::RkeNode) -> String {
    services::etcd_peer_url(crate::rke::internal_address(node))
}

/// The plan of every host, by node name (`hostname_override`, else `address`).
///
/// Every file goes under the prefix path (`<prefix>/etc/kubernetes/ssl/*.pem`, kubeconfigs
/// `<prefix>/etc/kubernetes/ssl/kubecfg-<component>.yaml`, etcd's data in `<prefix>/var/lib/etcd`); a
/// host gets only the certificates its roles need, keys with mode 0600. `services.*.extra_args`
/// override or add flags (`--key=value`; an empty value renders `--key`). Each plan's `revision` is
/// the SHA-256 (hex) of its JSON with an empty revision.
///
/// # Errors
/// [`RenderError::Invalid`] naming the setting (no etcd or controlplane host, a bad extra argument, a
/// relative binary path, …); [`RenderError::MissingCertificate`] when `pki` was not
/// [ensured](ClusterPki::ensure) for `cfg`.
pub fn render_plans(
    cfg: &RkeConfig,
    pki: &ClusterPki,
    binaries: &ComponentPaths,
) -> Result<BTreeMap<String, NodePlan>, RenderError> {
    render_plans_with(cfg, pki, binaries, &BTreeMap::new())
}

/// [`render_plans`] for a cluster whose etcd hosts joined as `joins` says (node name → how it
/// joined); an etcd host without an entry starts with every etcd host of `cfg`, as a new cluster.
///
/// # Errors
/// As [`render_plans`].
pub fn render_plans_with(
    cfg: &RkeConfig,
    pki: &ClusterPki,
    binaries: &ComponentPaths,
    joins: &BTreeMap<String, EtcdJoin>,
) -> Result<BTreeMap<String, NodePlan>, RenderError> {
    check_binaries(binaries)?;
    let hosts = hosts::hosts(cfg)?;
    let prefix = hosts::prefix(cfg)?;
    let cluster = services::Cluster::new(cfg, pki, &hosts, joins)?;
    let first_cp = hosts.iter().position(|h| h.controlplane);
    let mut plans = BTreeMap::new();
    for (i, h) in hosts.iter().enumerate() {
        let mut files = HostFiles::new(pki, &prefix);
        let mut processes = vec![];
        files.ca(cluster_pki::KUBE_CA, "kube-ca")?;
        if h.etcd {
            processes.push(services::etcd(&cluster, h, &prefix, binaries, &mut files)?);
        }
        if h.controlplane {
            let cp = services::control_plane(&cluster, h, binaries, &mut files)?;
            processes.extend(cp);
        }
        processes.push(services::kubelet(&cluster, i, h, binaries, &mut files)?);
        if let (Some(agent), Some(true)) = (&binaries.cluster_agent, first_cp.map(|f| f == i)) {
            processes.push(services::cluster_agent(&cluster, h, agent, &mut files)?);
        }
        let mut plan = NodePlan { revision: String::new(), files: files.files, processes };
        let json = serde_json::to_vec(&plan)
            .map_err(|source| RenderError::Serialize { node: h.name.clone(), source })?;
        plan.revision = hex::encode(Sha256::digest(&json));
        plans.insert(h.name.clone(), plan);
    }
    Ok(plans)
}

/// The admin's kubeconfig (`kube_config_<cluster>.yml`): the admin certificate (`kube-admin`, group
/// `system:masters`) and the cluster CA embedded, for the API server at `server`
/// (`https://host:6443`).
///
/// # Errors
/// [`RenderError::MissingCertificate`] when `pki` was not ensured; [`RenderError::Invalid`] when
/// `server` is not an `https://` URL.
pub fn admin_kubeconfig(cfg: &RkeConfig, pki: &ClusterPki, server: &str) -> Result<String, RenderError> {
    let _ = cfg; // the cluster's name and settings are not in the kubeconfig (yet)
    if !server.starts_with("https://") || server.len() <= "https://".len() {
        return Err(RenderError::invalid("server", format!("{server:?} is not an https:// URL")));
    }
    // During a rotation to a new CA, both: the API servers' certificates move from one to the other.
    let ca = pki
        .trust_bundle(cluster_pki::KUBE_CA)
        .ok_or_else(|| RenderError::MissingCertificate(cluster_pki::KUBE_CA.into()))?;
    let admin = pki
        .get(cluster_pki::ADMIN)
        .ok_or_else(|| RenderError::MissingCertificate(cluster_pki::ADMIN.into()))?;
    Ok(files::kubeconfig(
        server,
        "kube-admin",
        &[("certificate-authority-data", &files::b64(&ca))],
        &[
            ("client-certificate-data", &files::b64(&admin.cert_pem)),
            ("client-key-data", &files::b64(admin.key_pem.expose())),
        ],
    ))
}

fn check_binaries(b: &ComponentPaths) -> Result<(), RenderError> {
    let mut all = vec![
        ("etcd", &b.etcd),
        ("kube_apiserver", &b.kube_apiserver),
        ("kube_controller_manager", &b.kube_controller_manager),
        ("kube_scheduler", &b.kube_scheduler),
        ("kubelet", &b.kubelet),
    ];
    if let Some(a) = &b.cluster_agent {
        all.push(("cluster_agent.binary", &a.binary));
        if !a.server_url.starts_with("https://") {
            return Err(RenderError::invalid("binaries.cluster_agent.server_url", "must be an https:// URL"));
        }
        let hex = a.ca_checksum.len() == 64 && a.ca_checksum.bytes().all(|c| c.is_ascii_hexdigit());
        if !(a.ca_checksum.is_empty() || hex) {
            return Err(RenderError::invalid(
                "binaries.cluster_agent.ca_checksum",
                "must be a SHA-256 in hex (64 characters), or empty for a server with a public certificate",
            ));
        }
    }
    for (name, path) in all {
        if !path.starts_with('/') {
            return Err(RenderError::invalid(
                format!("binaries.{name}"),
                format!("{path:?} is not an absolute path"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
