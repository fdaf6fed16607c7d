//! `spec.rkeConfig`: a cluster built on SSH hosts, RKE-style — Rancher's `cluster.yml` shape.
//!
//! The keys are `cluster.yml`'s (snake_case, `kube-api`, `kube-controller`), so a user's file and the
//! `/v3` field are the same document. Keys rancher-rs does not implement are kept in `unsupported`
//! (validation warns about them) instead of failing the parse, so an existing `cluster.yml` loads.
//!
//! Validation lives with the provisioner (`rancher_provision::rke`); these types only carry the shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What Debug shows of a secret (an SSH private key, an S3 secret key): whether there is one, never
/// its text.
fn key_shown(key: &str) -> &'static str {
    if key.is_empty() { "" } else { "[redacted]" }
}

impl std::fmt::Debug for RkeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RkeConfig")
            .field("nodes", &self.nodes)
            .field("kubernetes_version", &self.kubernetes_version)
            .field("services", &self.services)
            .field("network", &self.network)
            .field("authentication", &self.authentication)
            .field("bastion_host", &self.bastion_host)
            .field("upgrade_strategy", &self.upgrade_strategy)
            .field("rotate_certificates", &self.rotate_certificates)
            .field("restore", &self.restore)
            .field("prefix_path", &self.prefix_path)
            .field("ssh_key", &key_shown(&self.ssh_key))
            .field("ssh_key_path", &self.ssh_key_path)
            .field("user", &self.user)
            .field("unsupported", &self.unsupported.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl std::fmt::Debug for RkeNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RkeNode")
            .field("address", &self.address)
            .field("port", &self.port)
            .field("internal_address", &self.internal_address)
            .field("user", &self.user)
            .field("ssh_key", &key_shown(&self.ssh_key))
            .field("ssh_key_path", &self.ssh_key_path)
            .field("role", &self.role)
            .field("hostname_override", &self.hostname_override)
            .field("labels", &self.labels)
            .field("taints", &self.taints)
            .finish()
    }
}

impl std::fmt::Debug for RkeBastionHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RkeBastionHost")
            .field("address", &self.address)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("ssh_key", &key_shown(&self.ssh_key))
            .field("ssh_key_path", &self.ssh_key_path)
            .finish()
    }
}

/// A cluster built on SSH hosts: the hosts with their roles, and how to run Kubernetes on them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeConfig {
    /// The hosts and their roles.
    #[serde(default)]
    pub nodes: Vec<RkeNode>,
    /// The Kubernetes version, which selects the component bundle (`v1.20.2`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubernetes_version: String,
    /// Per-service settings.
    #[serde(default)]
    pub services: RkeServices,
    /// The cluster network.
    #[serde(default)]
    pub network: RkeNetwork,
    /// How clients authenticate to the API server.
    #[serde(default)]
    pub authentication: RkeAuthentication,
    /// A host every SSH connection goes through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bastion_host: Option<RkeBastionHost>,
    /// How day-two changes roll over the hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_strategy: Option<RkeUpgradeStrategy>,
    /// A certificate rotation asked for (Rancher's `rotateCertificates`; set by the cluster's
    /// `rotateCertificates` action): carried out once per `requested_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_certificates: Option<RkeRotateCertificates>,
    /// A restore of etcd from one of the cluster's snapshots (Rancher's `restore`; set by the
    /// cluster's `restoreFromEtcdBackup` action): carried out once per `requested_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RkeRestore>,
    /// The directory on every host under which the provisioner puts its files (default `/`, so
    /// `/etc/kubernetes`, `/var/lib/etcd`, `/opt/rke`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix_path: String,
    /// The SSH private key (PEM or OpenSSH) for nodes that name none; a secret.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ssh_key: String,
    /// A file holding the SSH private key for nodes that name none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ssh_key_path: String,
    /// The SSH user for nodes that name none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Keys of `cluster.yml` that rancher-rs does not implement (`addons`, `ingress`, …): kept so an
    /// existing file loads, and named in a validation warning.
    #[serde(flatten)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub unsupported: BTreeMap<String, serde_json::Value>,
}

/// One host of an RKE-style cluster.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeNode {
    /// Where SSH (and, unless `internal_address` is set, the other hosts) reach it.
    #[serde(default)]
    pub address: String,
    /// SSH port; empty means 22. A string, as in `cluster.yml`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub port: String,
    /// The address the cluster's components use between hosts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub internal_address: String,
    /// SSH user; empty means the cluster's `user`, then `root`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// SSH private key (a secret); empty means the cluster's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ssh_key: String,
    /// File holding the SSH private key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ssh_key_path: String,
    /// `etcd`, `controlplane`, `worker` (any combination).
    #[serde(default)]
    pub role: Vec<String>,
    /// The Node's name; empty means the address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname_override: String,
    /// Labels of the Node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Taints of the Node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<RkeTaint>,
}

/// A taint put on a Node when its kubelet registers it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeTaint {
    /// Taint key.
    pub key: String,
    /// Taint value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// Settings of each Kubernetes service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeServices {
    /// etcd, and its snapshots.
    #[serde(default)]
    pub etcd: RkeEtcd,
    /// kube-apiserver.
    #[serde(default, rename = "kube-api")]
    pub kube_api: RkeKubeApi,
    /// kube-controller-manager.
    #[serde(default, rename = "kube-controller")]
    pub kube_controller: RkeKubeController,
    /// kube-scheduler.
    #[serde(default)]
    pub scheduler: RkeService,
    /// kubelet.
    #[serde(default)]
    pub kubelet: RkeKubelet,
    /// Services `cluster.yml` names that rancher-rs does not run (`kubeproxy`).
    #[serde(flatten)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub unsupported: BTreeMap<String, serde_json::Value>,
}

/// A service with only extra arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeService {
    /// `--flag=value` arguments added to (or overriding) the defaults, without the dashes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_args: BTreeMap<String, String>,
}

/// etcd settings: extra arguments and the snapshot schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeEtcd {
    /// `--flag=value` arguments added to (or overriding) the defaults, without the dashes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_args: BTreeMap<String, String>,
    /// Recurring snapshots, kept on the hosts and optionally in S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_config: Option<RkeBackupConfig>,
    /// etcd keys of `cluster.yml` that rancher-rs does not implement (`snapshot`, `creation`,
    /// `external_urls`, …): kept, and named in a validation warning.
    #[serde(flatten)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub unsupported: BTreeMap<String, serde_json::Value>,
}

fn yes() -> bool {
    true
}

fn twelve() -> u32 {
    12
}

fn six() -> u32 {
    6
}

/// Recurring etcd snapshots (`services.etcd.backup_config`), Rancher's defaults when a key is left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeBackupConfig {
    /// Take snapshots on the schedule (default `true`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Hours between snapshots (default 12, at least 1).
    #[serde(default = "twelve")]
    pub interval_hours: u32,
    /// How many recurring snapshots are kept (default 6, at least 1); older ones are deleted.
    #[serde(default = "six")]
    pub retention: u32,
    /// Where snapshots are also uploaded. `cluster.yml` spells the key `s3backupconfig`;
    /// `s3_backup_config` is accepted too.
    #[serde(
        default,
        rename = "s3backupconfig",
        alias = "s3_backup_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_backup_config: Option<RkeS3BackupConfig>,
    /// Keys rancher-rs does not implement (`safe_timestamp`, `timeout`): kept, and named in a
    /// validation warning.
    #[serde(flatten)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub unsupported: BTreeMap<String, serde_json::Value>,
}

impl Default for RkeBackupConfig {
    fn default() -> Self {
        RkeBackupConfig {
            enabled: true,
            interval_hours: 12,
            retention: 6,
            s3_backup_config: None,
            unsupported: BTreeMap::new(),
        }
    }
}

/// An S3-compatible bucket for etcd snapshots (Rancher's `s3BackupConfig`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeS3BackupConfig {
    /// The access key id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub access_key: String,
    /// The secret access key; a secret (sealed at rest, `"[sealed]"` in responses).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret_key: String,
    /// The bucket.
    #[serde(default)]
    pub bucket_name: String,
    /// The region (default `us-east-1`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// `host[:port]` (HTTPS) or a URL (`http://` only when written so); empty means AWS.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// The key prefix snapshots go under.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub folder: String,
    /// PEM CA certificate(s) for a private endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub custom_ca: String,
}

impl std::fmt::Debug for RkeS3BackupConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RkeS3BackupConfig")
            .field("access_key", &self.access_key)
            .field("secret_key", &key_shown(&self.secret_key))
            .field("bucket_name", &self.bucket_name)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("folder", &self.folder)
            .field("custom_ca", &if self.custom_ca.is_empty() { "" } else { "[PEM]" })
            .finish()
    }
}

/// kube-apiserver settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeKubeApi {
    /// Extra arguments.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_args: BTreeMap<String, String>,
    /// Services' virtual IP range (default `10.43.0.0/16`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_cluster_ip_range: String,
    /// NodePort range (default `30000-32767`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_node_port_range: String,
}

/// kube-controller-manager settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeKubeController {
    /// Extra arguments.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_args: BTreeMap<String, String>,
    /// Pods' IP range (default `10.42.0.0/16`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_cidr: String,
    /// Must equal `kube-api.service_cluster_ip_range` when set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_cluster_ip_range: String,
}

/// kubelet settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeKubelet {
    /// Extra arguments.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_args: BTreeMap<String, String>,
    /// Cluster DNS domain (default `cluster.local`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_domain: String,
    /// Cluster DNS service IP (default `10.43.0.10`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_dns_server: String,
}

/// The cluster network (the CIDRs live in `services`, as in `cluster.yml`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeNetwork {
    /// The network plugin; rancher-rs runs none (simulated pods get addresses from `cluster_cidr`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub plugin: String,
    /// Plugin options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// How clients authenticate to the API server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeAuthentication {
    /// `x509` (the only strategy; empty means it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub strategy: String,
    /// Extra names and addresses in the API server's serving certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
}

/// The host SSH connections go through.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeBastionHost {
    /// Its address.
    pub address: String,
    /// Its SSH port; empty means 22.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub port: String,
    /// SSH user.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// SSH private key (a secret).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ssh_key: String,
    /// File holding the SSH private key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ssh_key_path: String,
}

/// How changes roll over the hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeUpgradeStrategy {
    /// Workers changed at once: a count or a percentage (default `10%`, at least 1).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_unavailable_worker: String,
    /// Control-plane hosts changed at once (default `1`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_unavailable_controlplane: String,
    /// Drain workers before changing them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drain: bool,
}

/// A certificate rotation: every certificate or some services' ones, optionally with new CAs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeRotateCertificates {
    /// New CAs too, and so every certificate (then `services` stays empty).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ca_certificates: bool,
    /// The services whose certificates are issued again (`etcd`, `kube-apiserver`,
    /// `kube-controller-manager`, `kube-scheduler`, `kubelet`); empty means all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// When it was asked for (RFC 3339): the request's identity, so each request is carried out
    /// once; a new request has a new time.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requested_at: String,
}

/// A restore of etcd from a snapshot: every member restored from it, the cluster back with the
/// snapshot's objects and nothing newer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RkeRestore {
    /// Restore (`false`: nothing to do; the rest is kept for the record).
    #[serde(default)]
    pub restore: bool,
    /// The snapshot's name, as the cluster's `status.etcdSnapshots` lists it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub snapshot_name: String,
    /// When it was asked for (RFC 3339): the request's identity, so each request is carried out
    /// once; a new request has a new time.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requested_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_config_reads_cluster_yml_keys_with_rancher_s_defaults() {
        let yml: RkeServices = serde_json::from_value(serde_json::json!({
            "etcd": {
                "extra_args": {"quota-backend-bytes": "1"},
                "snapshot": true,
                "backup_config": {
                    "interval_hours": 6,
                    "timeout": 300,
                    "s3backupconfig": {"bucket_name": "b", "secret_key": "s", "folder": "f"}
                }
            }
        }))
        .unwrap();
        let b = yml.etcd.backup_config.as_ref().unwrap();
        assert_eq!((b.enabled, b.interval_hours, b.retention), (true, 6, 6));
        assert_eq!(b.unsupported.keys().collect::<Vec<_>>(), ["timeout"]);
        assert_eq!(yml.etcd.unsupported.keys().collect::<Vec<_>>(), ["snapshot"]);
        let s3 = b.s3_backup_config.as_ref().unwrap();
        assert_eq!((s3.bucket_name.as_str(), s3.folder.as_str()), ("b", "f"));
        let back = serde_json::to_value(&yml).unwrap();
        assert_eq!(back["etcd"]["backup_config"]["s3backupconfig"]["bucket_name"], "b");
        assert_eq!(back["etcd"]["backup_config"]["retention"], 6);

        let alias: RkeBackupConfig = serde_json::from_value(
            serde_json::json!({"enabled": false, "s3_backup_config": {"bucket_name": "x"}}),
        )
        .unwrap();
        assert!(!alias.enabled && alias.s3_backup_config.is_some());
        assert_eq!(RkeBackupConfig::default(), serde_json::from_value(serde_json::json!({})).unwrap());
    }

    #[test]
    fn debug_output_never_holds_an_ssh_key() {
        let key =
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----";
        let cfg = RkeConfig {
            nodes: vec![RkeNode { address: "10.0.0.1".into(), ssh_key: key.into(), ..Default::default() }],
            bastion_host: Some(RkeBastionHost {
                address: "bastion".into(),
                ssh_key: key.into(),
                ..Default::default()
            }),
            ssh_key: key.into(),
            services: RkeServices {
                etcd: RkeEtcd {
                    backup_config: Some(RkeBackupConfig {
                        s3_backup_config: Some(RkeS3BackupConfig {
                            bucket_name: "snapshots".into(),
                            secret_key: "wJalrXUtnFEMI/K7MDENG".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        };
        let shown = format!("{cfg:?} {cfg:#?}");
        assert!(!shown.contains("wJalrXUtnFEMI") && shown.contains("snapshots"), "{shown}");
        assert!(!shown.contains("b3BlbnNzaC1rZXktdjE") && !shown.contains("PRIVATE KEY"), "{shown}");
        assert!(shown.contains("[redacted]") && shown.contains("10.0.0.1") && shown.contains("bastion"));
    }
}
