//! The checks of a cluster.yml, one bad config at a time, and the warnings.

use rancher_core::model::{
    RkeBackupConfig, RkeBastionHost, RkeConfig, RkeNode, RkeS3BackupConfig, RkeTaint, RkeUpgradeStrategy,
};

use super::*;
use crate::ProvisionError;

fn node(address: &str, roles: &[&str]) -> RkeNode {
    RkeNode {
        address: address.into(),
        role: roles.iter().map(|r| (*r).to_owned()).collect(),
        ..Default::default()
    }
}

/// The recommended split: 3 etcd, 2 controlplane, 1 worker; no warnings.
fn good() -> RkeConfig {
    RkeConfig {
        nodes: vec![
            node("10.0.0.1", &["etcd"]),
            node("10.0.0.2", &["etcd"]),
            node("10.0.0.3", &["etcd"]),
            node("10.0.0.4", &["controlplane"]),
            node("10.0.0.5", &["controlplane"]),
            node("10.0.0.6", &["worker"]),
        ],
        ssh_key_path: "/root/.ssh/id_ed25519".into(),
        kubernetes_version: "v1.20.2".into(),
        ..Default::default()
    }
}

fn invalid(cfg: &RkeConfig) -> (String, String) {
    match validate(cfg) {
        Err(ProvisionError::InvalidSpec { field, message }) => (field, message),
        other => panic!("expected an invalid spec, got {other:?}"),
    }
}

#[test]
fn the_recommended_topology_has_no_warnings() {
    assert_eq!(validate(&good()).unwrap(), Vec::<String>::new());
}

#[test]
fn each_bad_config_names_its_field_and_what_is_wrong() {
    type Change = fn(&mut RkeConfig);
    let cases: Vec<(&str, Change, &str, &str)> = vec![
        ("no nodes", |c| c.nodes.clear(), "rkeConfig.nodes", "at least one node"),
        ("empty address", |c| c.nodes[1].address.clear(), "rkeConfig.nodes[1].address", "required"),
        (
            "bad address",
            |c| c.nodes[1].address = "10.0.0.1:22".into(),
            "rkeConfig.nodes[1].address",
            "neither an IP",
        ),
        (
            "bad internal address",
            |c| c.nodes[0].internal_address = "a b".into(),
            "rkeConfig.nodes[0].internal_address",
            "neither",
        ),
        (
            "duplicate address",
            |c| c.nodes[2].address = "10.0.0.1".into(),
            "rkeConfig.nodes[2].address",
            "10.0.0.1:22 is also the address of nodes[0]",
        ),
        (
            "duplicate name",
            |c| {
                c.nodes[0].hostname_override = "n1".into();
                c.nodes[4].hostname_override = "n1".into();
            },
            "rkeConfig.nodes[4].hostname_override",
            "\"n1\" is also that of nodes[0]",
        ),
        (
            "override equal to another's address",
            |c| c.nodes[3].hostname_override = "10.0.0.1".into(),
            "rkeConfig.nodes[3].hostname_override",
            "the node name \"10.0.0.1\" is also that of nodes[0]",
        ),
        (
            "unknown role",
            |c| c.nodes[2].role = vec!["etcd".into(), "master".into()],
            "rkeConfig.nodes[2].role[1]",
            "\"master\" is not a role: the roles are etcd, controlplane, worker",
        ),
        ("no role", |c| c.nodes[5].role.clear(), "rkeConfig.nodes[5].role", "at least one role"),
        (
            "no etcd",
            |c| {
                for n in &mut c.nodes[..3] {
                    n.role = vec!["worker".into()]
                }
            },
            "rkeConfig.nodes",
            "no node has the etcd role",
        ),
        (
            "no controlplane",
            |c| {
                for n in &mut c.nodes[3..5] {
                    n.role = vec!["worker".into()]
                }
            },
            "rkeConfig.nodes",
            "no node has the controlplane role",
        ),
        (
            "no worker",
            |c| c.nodes[5].role = vec!["controlplane".into()],
            "rkeConfig.nodes",
            "no node has the worker role",
        ),
        (
            "port 0",
            |c| c.nodes[3].port = "0".into(),
            "rkeConfig.nodes[3].port",
            "\"0\" is not a port: a number from 1 to 65535",
        ),
        ("port too high", |c| c.nodes[3].port = "70000".into(), "rkeConfig.nodes[3].port", "not a port"),
        (
            "bad hostname",
            |c| c.nodes[0].hostname_override = "Node_1".into(),
            "rkeConfig.nodes[0].hostname_override",
            "DNS-1123 subdomain",
        ),
        (
            "bad taint effect",
            |c| {
                c.nodes[5].taints =
                    vec![RkeTaint { key: "k".into(), value: String::new(), effect: "Never".into() }]
            },
            "rkeConfig.nodes[5].taints[0].effect",
            "\"Never\" is not a taint effect: use NoSchedule, PreferNoSchedule, NoExecute",
        ),
        (
            "bad taint key",
            |c| {
                c.nodes[5].taints =
                    vec![RkeTaint { key: "-k".into(), value: String::new(), effect: "NoSchedule".into() }]
            },
            "rkeConfig.nodes[5].taints[0].key",
            "not a label key",
        ),
        (
            "bad label key",
            |c| {
                c.nodes[0].labels.insert("a b".into(), "x".into());
            },
            "rkeConfig.nodes[0].labels.a b",
            "not a label key",
        ),
        (
            "bad label value",
            |c| {
                c.nodes[0].labels.insert("tier".into(), "-x".into());
            },
            "rkeConfig.nodes[0].labels.tier",
            "not a label value",
        ),
        ("no ssh key", |c| c.ssh_key_path.clear(), "rkeConfig.nodes[0].ssh_key", "no SSH key for this node"),
        (
            "relative node key path",
            |c| c.nodes[1].ssh_key_path = "id_rsa".into(),
            "rkeConfig.nodes[1].ssh_key_path",
            "not an absolute path: the server reads it",
        ),
        (
            "relative cluster key path",
            |c| c.ssh_key_path = "~/.ssh/id_rsa".into(),
            "rkeConfig.ssh_key_path",
            "not an absolute path",
        ),
        (
            "bastion without key",
            |c| {
                c.ssh_key_path.clear();
                for n in &mut c.nodes {
                    n.ssh_key = "k".into()
                }
                c.bastion_host = Some(RkeBastionHost { address: "10.0.1.1".into(), ..Default::default() });
            },
            "rkeConfig.bastion_host.ssh_key",
            "no SSH key for the bastion host",
        ),
        (
            "bastion bad port",
            |c| {
                c.bastion_host =
                    Some(RkeBastionHost { address: "b".into(), port: "x".into(), ..Default::default() })
            },
            "rkeConfig.bastion_host.port",
            "not a port",
        ),
        (
            "service cidr",
            |c| c.services.kube_api.service_cluster_ip_range = "10.43.0.0".into(),
            "rkeConfig.services.kube-api.service_cluster_ip_range",
            "not a network in CIDR notation",
        ),
        (
            "cluster cidr",
            |c| c.services.kube_controller.cluster_cidr = "10.42.0.1/16".into(),
            "rkeConfig.services.kube-controller.cluster_cidr",
            "host bits set",
        ),
        (
            "overlap",
            |c| c.services.kube_controller.cluster_cidr = "10.0.0.0/8".into(),
            "rkeConfig.services.kube-controller.cluster_cidr",
            "the pod network 10.0.0.0/8 overlaps the service network 10.43.0.0/16",
        ),
        (
            "controller service range",
            |c| c.services.kube_controller.service_cluster_ip_range = "10.44.0.0/16".into(),
            "rkeConfig.services.kube-controller.service_cluster_ip_range",
            "differs from kube-api's",
        ),
        (
            "dns outside",
            |c| c.services.kubelet.cluster_dns_server = "10.42.0.10".into(),
            "rkeConfig.services.kubelet.cluster_dns_server",
            "10.42.0.10 is outside the service network 10.43.0.0/16",
        ),
        (
            "dns default outside a custom range",
            |c| c.services.kube_api.service_cluster_ip_range = "172.20.0.0/16".into(),
            "rkeConfig.services.kubelet.cluster_dns_server",
            "10.43.0.10 is outside",
        ),
        (
            "dns not an ip",
            |c| c.services.kubelet.cluster_dns_server = "dns".into(),
            "rkeConfig.services.kubelet.cluster_dns_server",
            "not an IP address",
        ),
        (
            "node port range",
            |c| c.services.kube_api.service_node_port_range = "32767-30000".into(),
            "rkeConfig.services.kube-api.service_node_port_range",
            "not a port range",
        ),
        (
            "relative prefix",
            |c| c.prefix_path = "opt/rke".into(),
            "rkeConfig.prefix_path",
            "absolute path without '..'",
        ),
        ("prefix with ..", |c| c.prefix_path = "/opt/../etc".into(), "rkeConfig.prefix_path", "without '..'"),
        (
            "version",
            |c| c.kubernetes_version = "1.20.2".into(),
            "rkeConfig.kubernetes_version",
            "not a version like v1.20.2",
        ),
        (
            "auth strategy",
            |c| c.authentication.strategy = "webhook".into(),
            "rkeConfig.authentication.strategy",
            "the only strategy is x509",
        ),
        (
            "upgrade strategy",
            |c| {
                c.upgrade_strategy =
                    Some(RkeUpgradeStrategy { max_unavailable_worker: "ten".into(), ..Default::default() })
            },
            "rkeConfig.upgrade_strategy.max_unavailable_worker",
            "neither a count (2) nor a percentage",
        ),
        (
            "extra arg dash",
            |c| {
                c.services.kube_api.extra_args.insert("--v".into(), "2".into());
            },
            "rkeConfig.services.kube-api.extra_args.--v",
            "not a flag name",
        ),
        (
            "extra arg equals",
            |c| {
                c.services.etcd.extra_args.insert("a=b".into(), "2".into());
            },
            "rkeConfig.services.etcd.extra_args.a=b",
            "not a flag name",
        ),
        (
            "extra arg space",
            |c| {
                c.services.kubelet.extra_args.insert("a b".into(), "2".into());
            },
            "rkeConfig.services.kubelet.extra_args.a b",
            "not a flag name",
        ),
        (
            "extra arg value newline",
            |c| {
                c.services.scheduler.extra_args.insert("v".into(), "2\n--x=y".into());
            },
            "rkeConfig.services.scheduler.extra_args.v",
            "must not contain a newline",
        ),
    ];
    for (what, change, field, message) in cases {
        let mut cfg = good();
        change(&mut cfg);
        let (f, m) = invalid(&cfg);
        assert_eq!(f, field, "{what}: {m}");
        assert!(m.contains(message), "{what}: {m:?} does not say {message:?}");
    }
}

#[test]
fn one_host_with_every_role_is_accepted_with_a_warning() {
    let cfg = RkeConfig {
        nodes: vec![node("10.0.0.1", &["etcd", "controlplane", "worker"])],
        ssh_key: "-----BEGIN OPENSSH PRIVATE KEY-----".into(),
        ..Default::default()
    };
    let warnings = validate(&cfg).unwrap();
    assert_eq!(
        warnings,
        ["the cluster has 1 etcd, 1 controlplane and 1 worker node(s), 1 worker(s) also holding etcd or \
          controlplane; recommended: 3 etcd and 2 controlplane nodes, and at least 1 worker node holding \
          no other role"]
    );
}

#[test]
fn five_hosts_sharing_roles_are_accepted_with_a_warning() {
    let mut cfg = good();
    cfg.nodes = (1..=5).map(|i| node(&format!("10.0.0.{i}"), &["etcd", "controlplane", "worker"])).collect();
    let warnings = validate(&cfg).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("the cluster has 5 etcd, 5 controlplane and 5 worker node(s), 5 worker(s)")
    );
    assert!(warnings[0].contains("recommended: 3 etcd and 2 controlplane"));
}

/// A cluster.yml as Rancher documents it (its "minimal" example plus the usual sections).
const RANCHER_CLUSTER_YML: &str = r#"
# Rancher's example cluster.yml
nodes:
  - address: 1.1.1.1
    user: ubuntu
    role:
      - controlplane
      - etcd
    ssh_key_path: /home/user/.ssh/id_rsa
    port: 2222
  - address: 2.2.2.2
    user: ubuntu
    role:
      - worker
    ssh_key: |-
      -----BEGIN RSA PRIVATE KEY-----
      MIIEpAIBAAKCAQEAxx
      -----END RSA PRIVATE KEY-----
  - address: example.com
    user: ubuntu
    role:
      - worker
    hostname_override: node3
    internal_address: 192.168.1.6
    labels:
      app: ingress
    taints:
      - key: test-key
        value: test-value
        effect: NoSchedule

cluster_name: mycluster
ignore_docker_version: true
kubernetes_version: v1.20.2-rancher1-1
prefix_path: /opt/custom_path
ssh_key_path: ~/.ssh/test
ssh_agent_auth: true

bastion_host:
  address: x.x.x.x
  user: ubuntu
  port: 22
  ssh_key_path: /home/user/.ssh/bastion_rsa

services:
  etcd:
    snapshot: true
    creation: 6h
    retention: 24h
  kube-api:
    service_cluster_ip_range: 10.43.0.0/16
    service_node_port_range: 30000-32767
    pod_security_policy: false
    extra_args:
      watch-cache: true
  kube-controller:
    cluster_cidr: 10.42.0.0/16
    service_cluster_ip_range: 10.43.0.0/16
  kubelet:
    cluster_domain: cluster.local
    cluster_dns_server: 10.43.0.10
    fail_swap_on: false
  kubeproxy:
    extra_args:
      proxy-mode: ipvs

network:
  plugin: canal
  options:
    canal_iface: eth1

authentication:
  strategy: x509
  sans:
    - "10.18.160.10"
    - "my-loadbalancer-1234567890.us-west-2.elb.amazonaws.com"

addons: |-
  ---
  apiVersion: v1
  kind: Pod
  metadata:
    name: my-nginx
    namespace: default
addons_include:
  - https://raw.githubusercontent.com/rook/rook/master/cluster/examples/kubernetes/rook-operator.yaml

ingress:
  provider: nginx

upgrade_strategy:
  max_unavailable_worker: 10%
  max_unavailable_controlplane: 1
  drain: true
"#;

#[test]
fn rancher_s_documented_cluster_yml_parses() {
    let cfg = parse_cluster_yml(RANCHER_CLUSTER_YML).unwrap();
    assert_eq!(cfg.nodes.len(), 3);
    assert_eq!(cfg.nodes[0].port, "2222", "a numeric port is read as cluster.yml's string");
    assert_eq!(cfg.nodes[0].role, ["controlplane", "etcd"]);
    assert!(cfg.nodes[1].ssh_key.starts_with("-----BEGIN RSA PRIVATE KEY-----\nMIIE"));
    assert_eq!(node_name(&cfg.nodes[2]), "node3");
    assert_eq!(internal_address(&cfg.nodes[2]), "192.168.1.6");
    assert_eq!(cfg.nodes[2].taints[0].effect, "NoSchedule");
    assert_eq!(cfg.services.kube_api.extra_args["watch-cache"], "true");
    assert_eq!(cfg.services.kubelet.cluster_dns_server, "10.43.0.10");
    assert_eq!(cfg.network.plugin, "canal");
    assert_eq!(cfg.upgrade_strategy.as_ref().unwrap().max_unavailable_worker, "10%");
    let ignored: Vec<&str> = cfg.unsupported.keys().map(String::as_str).collect();
    assert_eq!(
        ignored,
        ["addons", "addons_include", "cluster_name", "ignore_docker_version", "ingress", "ssh_agent_auth"]
    );
    assert_eq!(cfg.services.unsupported.keys().collect::<Vec<_>>(), ["kubeproxy"]);
    // The cluster-level key path is `~/…`: fine for rke on a workstation, not for the server.
    let (field, _) = invalid(&cfg);
    assert_eq!(field, "rkeConfig.ssh_key_path");
    let mut cfg = cfg;
    cfg.ssh_key_path = "/root/.ssh/test".into();
    cfg.bastion_host.as_mut().unwrap().address = "10.0.9.9".into();
    let warnings = validate(&cfg).unwrap();
    assert!(
        warnings[0].starts_with("the cluster has 1 etcd, 1 controlplane and 2 worker node(s);"),
        "{warnings:?}"
    );
    for w in ["rkeConfig.addons is not", "rkeConfig.ingress is not", "rkeConfig.services.kubeproxy is not"] {
        assert!(warnings.iter().any(|x| x.starts_with(w)), "{w}: {warnings:?}");
    }
    assert!(warnings.last().unwrap().contains("\"canal\" is not run"), "{warnings:?}");
}

#[test]
fn parse_errors_name_the_line_and_never_quote_the_input() {
    let err = parse_cluster_yml("nodes:\n  - address: 10.0.0.1\n    role: etcd\n    ssh_key: SECRET\n")
        .unwrap_err();
    let ProvisionError::InvalidSpec { field, message } = err else { panic!() };
    assert_eq!(field, "rkeConfig");
    assert!(message.starts_with("the cluster.yml does not parse: line 3 column 11"), "{message}");
    assert!(!message.contains("SECRET"), "{message}");
    let big = "#".repeat(MAX_CLUSTER_YML_BYTES + 1);
    let err = parse_cluster_yml(&big).unwrap_err().to_string();
    assert!(err.contains("at most 1048576"), "{err}");
}

#[test]
fn max_unavailable_is_a_count_or_a_share_rounded_down_and_always_at_least_one() {
    use crate::rke::{DEFAULT_MAX_UNAVAILABLE_WORKER, max_unavailable};
    // Rancher's default: 10 % of the workers, at least one.
    assert_eq!(max_unavailable("", DEFAULT_MAX_UNAVAILABLE_WORKER, 2), 1);
    assert_eq!(max_unavailable("", DEFAULT_MAX_UNAVAILABLE_WORKER, 25), 2);
    assert_eq!(max_unavailable("50%", "1", 5), 2);
    assert_eq!(max_unavailable("3", "1", 10), 3);
    // Never more than there are, never zero.
    assert_eq!(max_unavailable("9", "1", 2), 2);
    assert_eq!(max_unavailable("0", "1", 4), 1);
    assert_eq!(max_unavailable("100%", "1", 0), 1);
}

fn with_backup(s3: Option<RkeS3BackupConfig>) -> RkeConfig {
    let mut cfg = good();
    cfg.services.etcd.backup_config = Some(RkeBackupConfig { s3_backup_config: s3, ..Default::default() });
    cfg
}

fn s3() -> RkeS3BackupConfig {
    RkeS3BackupConfig {
        access_key: "AKIDEXAMPLE".into(),
        secret_key: "secret".into(),
        bucket_name: "etcd-snapshots".into(),
        endpoint: "minio.example:9000".into(),
        folder: "prod".into(),
        ..Default::default()
    }
}

#[test]
fn backup_config_is_checked_field_by_field() {
    assert!(validate(&with_backup(None)).unwrap().is_empty());
    assert!(validate(&with_backup(Some(s3()))).unwrap().is_empty());
    const B: &str = "rkeConfig.services.etcd.backup_config";
    type Change = fn(&mut RkeBackupConfig);
    let cases: [(Change, &str, &str); 8] = [
        (|b| b.interval_hours = 0, "interval_hours", "at least 1"),
        (|b| b.retention = 0, "retention", "at least 1"),
        (
            |b| b.s3_backup_config.as_mut().unwrap().endpoint = "ftp://x".into(),
            "s3backupconfig.endpoint",
            "scheme",
        ),
        (
            |b| b.s3_backup_config.as_mut().unwrap().endpoint = "https://x/path".into(),
            "s3backupconfig.endpoint",
            "no path",
        ),
        (
            |b| b.s3_backup_config.as_mut().unwrap().bucket_name = "Bad_Bucket".into(),
            "s3backupconfig.bucket_name",
            "'B'",
        ),
        (|b| b.s3_backup_config.as_mut().unwrap().bucket_name.clear(), "s3backupconfig.bucket_name", "empty"),
        (|b| b.s3_backup_config.as_mut().unwrap().secret_key.clear(), "s3backupconfig.secret_key", "empty"),
        (
            |b| b.s3_backup_config.as_mut().unwrap().custom_ca = "junk".into(),
            "s3backupconfig.custom_ca",
            "PEM",
        ),
    ];
    for (change, field, message) in cases {
        let mut cfg = with_backup(Some(s3()));
        change(cfg.services.etcd.backup_config.as_mut().unwrap());
        let (f, m) = invalid(&cfg);
        assert_eq!(f, format!("{B}.{field}"), "{m}");
        assert!(m.contains(message), "{f}: {m:?} does not say {message:?}");
    }
    let mut cfg = with_backup(Some(s3()));
    cfg.services
        .etcd
        .backup_config
        .as_mut()
        .unwrap()
        .unsupported
        .insert("safe_timestamp".into(), true.into());
    cfg.services.etcd.unsupported.insert("snapshot".into(), true.into());
    assert_eq!(
        validate(&cfg).unwrap(),
        [
            "rkeConfig.services.etcd.snapshot is not supported by rancher-rs and is ignored",
            "rkeConfig.services.etcd.backup_config.safe_timestamp is not supported by rancher-rs and is ignored",
        ]
    );
}

#[test]
fn an_even_number_of_etcd_members_is_allowed_with_a_warning() {
    // Replacing an etcd host adds a member before the old one leaves: four for a while.
    let mut c = RkeConfig {
        nodes: (1..=5)
            .map(|i| RkeNode {
                address: format!("10.0.0.{i}"),
                role: vec![if i <= 4 { "etcd" } else { "controlplane" }.into(), "worker".into()],
                ..Default::default()
            })
            .collect(),
        ssh_key_path: "/root/.ssh/id".into(),
        ..Default::default()
    };
    let warnings = crate::rke::validate(&c).unwrap();
    assert!(
        warnings.iter().any(|w| w.starts_with("4 nodes have the etcd role: an even number")),
        "{warnings:?}"
    );
    c.nodes[3].role = vec!["worker".into()];
    let warnings = crate::rke::validate(&c).unwrap();
    assert!(!warnings.iter().any(|w| w.contains("even number")), "{warnings:?}");
}
