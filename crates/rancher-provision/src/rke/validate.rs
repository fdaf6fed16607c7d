//! [`validate`]: every check of a cluster.yml, the first error naming its field, and the warnings about
//! what is accepted but not as recommended (or not run at all).

use std::path::{Component, Path};

use rancher_core::model::{RkeConfig, RkeS3BackupConfig};
use secrecy::SecretString;

use super::defaults::{self, CLUSTER_CIDR_FIELD, DNS_SERVER_FIELD};
use super::names::{dns1123_subdomain, host_address};
use super::nodes::{self, Topology};
use crate::ProvisionError;
use crate::s3::S3Config;

/// Checks a cluster's config; on success returns warnings (each a sentence for the user) about what is
/// accepted but not recommended or not implemented.
///
/// ```
/// let cfg = rancher_provision::rke::parse_cluster_yml(
///     "nodes:\n  - address: 10.0.0.1\n    role: [etcd, controlplane, worker]\nssh_key_path: /root/.ssh/id_ed25519\n",
/// ).unwrap();
/// let warnings = rancher_provision::rke::validate(&cfg).unwrap();
/// assert!(warnings[0].contains("recommended"));
/// ```
///
/// # Errors
/// [`ProvisionError::InvalidSpec`] for the first problem found, its field a path like
/// `rkeConfig.nodes[2].role[0]` (the server prefixes `spec.`).
pub fn validate(cfg: &RkeConfig) -> Result<Vec<String>, ProvisionError> {
    let topology = nodes::check(cfg)?;
    check_bastion(cfg)?;
    if !cfg.ssh_key_path.is_empty() {
        absolute_key_path(&cfg.ssh_key_path, "rkeConfig.ssh_key_path")?;
    }
    check_networks(cfg)?;
    check_cluster(cfg)?;
    check_extra_args(cfg)?;
    check_rotation(cfg)?;
    check_restore(cfg)?;
    check_backup(cfg)?;
    Ok(warnings(cfg, topology))
}

/// `rotate_certificates`: known services, not with new CAs, and the request's time.
fn check_rotation(cfg: &RkeConfig) -> Result<(), ProvisionError> {
    let Some(r) = &cfg.rotate_certificates else { return Ok(()) };
    let field = "rkeConfig.rotate_certificates";
    for (i, service) in r.services.iter().enumerate() {
        if let Err(e) = crate::cluster_pki::check_services(std::slice::from_ref(service)) {
            return Err(invalid(&format!("{field}.services[{i}]"), e.to_string()));
        }
    }
    if r.ca_certificates && !r.services.is_empty() {
        return Err(invalid(
            &format!("{field}.services"),
            "new CA certificates re-issue every certificate: leave services empty with ca_certificates",
        ));
    }
    if r.requested_at.parse::<jiff::Timestamp>().is_err() {
        return Err(invalid(
            &format!("{field}.requested_at"),
            format!(
                "{:?} is not an RFC 3339 time: it identifies the request (the rotateCertificates action \
                 sets it; a new request needs a new time)",
                r.requested_at
            ),
        ));
    }
    Ok(())
}

/// `restore`: a snapshot name that can be a file on the hosts, and the request's time.
fn check_restore(cfg: &RkeConfig) -> Result<(), ProvisionError> {
    let Some(r) = cfg.restore.as_ref().filter(|r| r.restore) else { return Ok(()) };
    let field = "rkeConfig.restore";
    if r.snapshot_name.is_empty() {
        return Err(invalid(
            &format!("{field}.snapshot_name"),
            "is empty: name the snapshot to restore (rancherctl cluster snapshot ls lists them)",
        ));
    }
    crate::etcd_snapshots::check_name(&r.snapshot_name)
        .map_err(|e| invalid(&format!("{field}.snapshot_name"), e.to_string()))?;
    if r.requested_at.parse::<jiff::Timestamp>().is_err() {
        return Err(invalid(
            &format!("{field}.requested_at"),
            format!(
                "{:?} is not an RFC 3339 time: it identifies the request (the restoreFromEtcdBackup \
                 action sets it; a new request needs a new time)",
                r.requested_at
            ),
        ));
    }
    Ok(())
}

fn invalid(field: &str, message: impl Into<String>) -> ProvisionError {
    ProvisionError::invalid_spec(field, message)
}

/// An `ssh_key_path`: absolute, as it is read on the server's filesystem.
pub(crate) fn absolute_key_path(path: &str, field: &str) -> Result<(), ProvisionError> {
    if !Path::new(path).is_absolute() {
        return Err(invalid(
            field,
            format!(
                "{path:?} is not an absolute path: the server reads it from its own filesystem (rancherctl \
                 sends the contents of a file it can read instead)"
            ),
        ));
    }
    Ok(())
}

fn check_bastion(cfg: &RkeConfig) -> Result<(), ProvisionError> {
    let Some(b) = &cfg.bastion_host else { return Ok(()) };
    host_address(&b.address).map_err(|m| invalid("rkeConfig.bastion_host.address", m))?;
    defaults::ssh_port(&b.port).map_err(|m| invalid("rkeConfig.bastion_host.port", m))?;
    if !b.ssh_key_path.is_empty() {
        absolute_key_path(&b.ssh_key_path, "rkeConfig.bastion_host.ssh_key_path")?;
    }
    if defaults::bastion_key_source(cfg, b).is_none() {
        return Err(invalid(
            "rkeConfig.bastion_host.ssh_key",
            "no SSH key for the bastion host: set ssh_key or ssh_key_path on it, or on the cluster",
        ));
    }
    Ok(())
}

fn check_networks(cfg: &RkeConfig) -> Result<(), ProvisionError> {
    let services = defaults::service_cidr(cfg)?;
    let pods = defaults::cluster_cidr(cfg)?;
    if services.overlaps(&pods) {
        return Err(invalid(
            CLUSTER_CIDR_FIELD,
            format!("the pod network {pods} overlaps the service network {services}: they must be disjoint"),
        ));
    }
    let controller_range = &cfg.services.kube_controller.service_cluster_ip_range;
    if !controller_range.is_empty() {
        let field = "rkeConfig.services.kube-controller.service_cluster_ip_range";
        let parsed: super::Cidr =
            controller_range.parse().map_err(|e: super::cidr::CidrError| invalid(field, e.to_string()))?;
        if parsed != services {
            return Err(invalid(
                field,
                format!(
                    "{parsed} differs from kube-api's service_cluster_ip_range {services}: leave it empty or make them equal"
                ),
            ));
        }
    }
    let dns = defaults::cluster_dns_server(cfg)?;
    if !services.contains(dns) {
        return Err(invalid(DNS_SERVER_FIELD, format!("{dns} is outside the service network {services}")));
    }
    if Some(dns) == services.nth(1) {
        return Err(invalid(DNS_SERVER_FIELD, format!("{dns} is the kubernetes service's address")));
    }
    if !cfg.services.kubelet.cluster_domain.is_empty() {
        dns1123_subdomain(&cfg.services.kubelet.cluster_domain)
            .map_err(|m| invalid("rkeConfig.services.kubelet.cluster_domain", m))?;
    }
    let range = &cfg.services.kube_api.service_node_port_range;
    if !range.is_empty() {
        let ports =
            range.split_once('-').and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)));
        if !matches!(ports, Some((a, b)) if a > 0 && a <= b) {
            return Err(invalid(
                "rkeConfig.services.kube-api.service_node_port_range",
                format!("{range:?} is not a port range like 30000-32767"),
            ));
        }
    }
    Ok(())
}

/// `vX.Y.Z`, optionally with a suffix (`v1.20.2-rancher1-1`).
pub(crate) fn version_like(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else { return false };
    let (core, suffix) = rest.split_once(['-', '+']).map_or((rest, None), |(c, s)| (c, Some(s)));
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && suffix.is_none_or(|s| {
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.+".contains(&b))
        })
}

/// A count (`2`) or a percentage (`10%`, at most 100).
fn count_or_percent(v: &str) -> bool {
    match v.strip_suffix('%') {
        Some(p) => p.parse::<u8>().is_ok_and(|p| p <= 100),
        None => v.parse::<u32>().is_ok(),
    }
}

fn check_cluster(cfg: &RkeConfig) -> Result<(), ProvisionError> {
    if !cfg.prefix_path.is_empty() {
        let p = Path::new(&cfg.prefix_path);
        if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
            return Err(invalid(
                "rkeConfig.prefix_path",
                format!("{:?} must be an absolute path without '..'", cfg.prefix_path),
            ));
        }
    }
    if !cfg.kubernetes_version.is_empty() && !version_like(&cfg.kubernetes_version) {
        return Err(invalid(
            "rkeConfig.kubernetes_version",
            format!("{:?} is not a version like v1.20.2", cfg.kubernetes_version),
        ));
    }
    if !matches!(cfg.authentication.strategy.as_str(), "" | "x509") {
        return Err(invalid(
            "rkeConfig.authentication.strategy",
            format!("{:?} is not supported: the only strategy is x509", cfg.authentication.strategy),
        ));
    }
    for (k, san) in cfg.authentication.sans.iter().enumerate() {
        host_address(san).map_err(|m| invalid(&format!("rkeConfig.authentication.sans[{k}]"), m))?;
    }
    if let Some(u) = &cfg.upgrade_strategy {
        for (name, v) in [
            ("max_unavailable_worker", &u.max_unavailable_worker),
            ("max_unavailable_controlplane", &u.max_unavailable_controlplane),
        ] {
            if !v.is_empty() && !count_or_percent(v) {
                return Err(invalid(
                    &format!("rkeConfig.upgrade_strategy.{name}"),
                    format!("{v:?} is neither a count (2) nor a percentage (10%)"),
                ));
            }
        }
    }
    Ok(())
}

fn check_extra_args(cfg: &RkeConfig) -> Result<(), ProvisionError> {
    let s = &cfg.services;
    let all = [
        ("etcd", &s.etcd.extra_args),
        ("kube-api", &s.kube_api.extra_args),
        ("kube-controller", &s.kube_controller.extra_args),
        ("scheduler", &s.scheduler.extra_args),
        ("kubelet", &s.kubelet.extra_args),
    ];
    for (service, args) in all {
        for (key, value) in args {
            let field = format!("rkeConfig.services.{service}.extra_args.{key}");
            let bad_key = key.is_empty()
                || key.starts_with('-')
                || key.chars().any(|c| c == '=' || c.is_whitespace() || c.is_control());
            if bad_key {
                return Err(invalid(
                    &field,
                    format!("{key:?} is not a flag name: no leading '-', no '=', no spaces or newlines"),
                ));
            }
            if value.chars().any(|c| c == '\n' || c == '\r' || c == '\0') {
                return Err(invalid(&field, "the value must not contain a newline"));
            }
        }
    }
    Ok(())
}

/// The S3 settings of `backup_config` as [`S3Client`](crate::s3::S3Client) takes them, with the secret
/// key opened by the caller (it is sealed at rest).
pub fn s3_config(s3: &RkeS3BackupConfig, secret_key: SecretString) -> S3Config {
    S3Config {
        endpoint: s3.endpoint.clone(),
        bucket_name: s3.bucket_name.clone(),
        region: s3.region.clone(),
        folder: s3.folder.clone(),
        access_key: s3.access_key.clone(),
        secret_key,
        custom_ca: (!s3.custom_ca.is_empty()).then(|| s3.custom_ca.clone()),
    }
}

fn check_backup(cfg: &RkeConfig) -> Result<(), ProvisionError> {
    let Some(b) = &cfg.services.etcd.backup_config else { return Ok(()) };
    const FIELD: &str = "rkeConfig.services.etcd.backup_config";
    if b.interval_hours < 1 {
        return Err(invalid(
            &format!("{FIELD}.interval_hours"),
            "must be at least 1 (hours between snapshots)",
        ));
    }
    if b.retention < 1 {
        return Err(invalid(&format!("{FIELD}.retention"), "must be at least 1 (snapshots kept)"));
    }
    if let Some(s3) = &b.s3_backup_config {
        // Plain on create, sealed once stored: here only its presence matters.
        s3_config(s3, SecretString::from(s3.secret_key.clone()))
            .check()
            .map_err(|e| invalid(&format!("{FIELD}.s3backupconfig.{}", e.field), e.reason))?;
    }
    Ok(())
}

fn warnings(cfg: &RkeConfig, t: Topology) -> Vec<String> {
    let mut out = Vec::new();
    if (t.etcd, t.controlplane) != (3, 2) || t.shared_workers > 0 {
        let mut w = format!(
            "the cluster has {} etcd, {} controlplane and {} worker node(s)",
            t.etcd, t.controlplane, t.worker
        );
        if t.shared_workers > 0 {
            w.push_str(&format!(", {} worker(s) also holding etcd or controlplane", t.shared_workers));
        }
        w.push_str(
            "; recommended: 3 etcd and 2 controlplane nodes, and at least 1 worker node holding no other role",
        );
        out.push(w);
    }
    if t.etcd.is_multiple_of(2) {
        // Allowed: a member is added before another leaves when a host is replaced.
        out.push(format!(
            "{} nodes have the etcd role: an even number keeps quorum through no more failures than one \
             member fewer (1, 3, 5 are the sizes to run)",
            t.etcd
        ));
    }
    for key in cfg.unsupported.keys() {
        out.push(format!("rkeConfig.{key} is not supported by rancher-rs and is ignored"));
    }
    for key in cfg.services.unsupported.keys() {
        out.push(format!("rkeConfig.services.{key} is not supported by rancher-rs and is ignored"));
    }
    for key in cfg.services.etcd.unsupported.keys() {
        out.push(format!("rkeConfig.services.etcd.{key} is not supported by rancher-rs and is ignored"));
    }
    if let Some(b) = &cfg.services.etcd.backup_config {
        for key in b.unsupported.keys() {
            out.push(format!(
                "rkeConfig.services.etcd.backup_config.{key} is not supported by rancher-rs and is ignored"
            ));
        }
    }
    if !matches!(cfg.network.plugin.as_str(), "" | "none") {
        out.push(format!(
            "rkeConfig.network.plugin: {:?} is not run: rancher-rs runs no network plugin (pods get \
             addresses from cluster_cidr)",
            cfg.network.plugin
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_strategies() {
        for ok in ["v1.20.2", "v1.20.2-rancher1-1", "v10.0.0"] {
            assert!(version_like(ok), "{ok}");
        }
        for bad in ["1.20.2", "v1.20", "v1.20.x", "v1.20.2-", "v1.20.2-a b"] {
            assert!(!version_like(bad), "{bad}");
        }
        assert!(count_or_percent("1") && count_or_percent("10%") && count_or_percent("100%"));
        assert!(!count_or_percent("101%") && !count_or_percent("-1") && !count_or_percent("x%"));
    }

    #[test]
    fn a_rotation_names_known_services_and_its_request_time() {
        use rancher_core::model::{RkeNode, RkeRotateCertificates};
        let mut cfg = RkeConfig {
            nodes: vec![RkeNode {
                address: "10.0.0.1".into(),
                role: vec!["etcd".into(), "controlplane".into(), "worker".into()],
                ..Default::default()
            }],
            ssh_key_path: "/root/.ssh/id".into(),
            ..Default::default()
        };
        let rotate = |services: &[&str], ca: bool, at: &str| RkeRotateCertificates {
            ca_certificates: ca,
            services: services.iter().map(|s| (*s).to_owned()).collect(),
            requested_at: at.into(),
        };
        let at = "2024-05-01T10:00:00Z";
        for ok in [rotate(&[], false, at), rotate(&["etcd", "kubelet"], false, at), rotate(&[], true, at)] {
            cfg.rotate_certificates = Some(ok);
            validate(&cfg).unwrap();
        }
        cfg.rotate_certificates = Some(rotate(&["etcd", "kube-dns"], false, at));
        assert_eq!(
            validate(&cfg).unwrap_err().to_string(),
            "rkeConfig.rotate_certificates.services[1]: unknown service \"kube-dns\" to rotate certificates \
             of (known: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet)"
        );
        cfg.rotate_certificates = Some(rotate(&["etcd"], true, at));
        let err = validate(&cfg).unwrap_err().to_string();
        assert!(err.starts_with("rkeConfig.rotate_certificates.services: new CA"), "{err}");
        cfg.rotate_certificates = Some(rotate(&[], false, ""));
        let err = validate(&cfg).unwrap_err().to_string();
        assert!(
            err.starts_with("rkeConfig.rotate_certificates.requested_at: \"\" is not an RFC 3339"),
            "{err}"
        );
    }

    #[test]
    fn a_restore_names_a_snapshot_file_and_its_request_time() {
        use rancher_core::model::{RkeNode, RkeRestore};
        let mut cfg = RkeConfig {
            nodes: vec![RkeNode {
                address: "10.0.0.1".into(),
                role: vec!["etcd".into(), "controlplane".into(), "worker".into()],
                ..Default::default()
            }],
            ssh_key_path: "/root/.ssh/id".into(),
            ..Default::default()
        };
        let restore = |on: bool, name: &str, at: &str| {
            Some(RkeRestore { restore: on, snapshot_name: name.into(), requested_at: at.into() })
        };
        let at = "2024-05-01T10:00:00Z";
        cfg.restore = restore(true, "c1-manual-20240501095959", at);
        validate(&cfg).unwrap();
        // Not asked for: whatever is left there is only a record.
        cfg.restore = restore(false, "", "");
        validate(&cfg).unwrap();
        let cases = [
            (restore(true, "", at), "rkeConfig.restore.snapshot_name: is empty"),
            (restore(true, "../etc/passwd", at), "rkeConfig.restore.snapshot_name: \"../etc/passwd\" is not"),
            (
                restore(true, "c1-manual-1", "yesterday"),
                "rkeConfig.restore.requested_at: \"yesterday\" is not",
            ),
        ];
        for (r, want) in cases {
            cfg.restore = r;
            let err = validate(&cfg).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err}");
        }
    }
}
