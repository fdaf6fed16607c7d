//! What the owners of a cluster built on hosts download: its state as RKE's `cluster.rkestate` JSON
//! (desired and current config, the certificates with their keys) and the admin's kubeconfig
//! (`kube_config_<name>.yml`). Both hold the cluster's CA keys: the handler decides who may have
//! them; this module only renders them from the sealed [`RkeState`].

use rancher_core::model::{Cluster, RkeConfig};
use rancher_provision::cluster_pki::ClusterPki;
use rancher_provision::rke_plans::{self, RenderError};
use serde_json::{Map, Value, json};

use super::state::RkeState;

/// RKE's name of the service-account token signing key in a certificates bundle.
const SERVICE_ACCOUNT_KEY: &str = "kube-service-account-token";

/// Why a download cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    /// The cluster is not built on hosts.
    #[error("cluster {0} is not built on hosts (it has no spec.rkeConfig): it has no state to download")]
    NotOnHosts(String),
    /// Provisioning has not made the cluster's state yet.
    #[error("cluster {0} has no state yet: its certificates are made when provisioning starts")]
    NoStateYet(String),
    /// The config has no controlplane host to point the kubeconfig at.
    #[error("cluster {0} has no controlplane host with an address")]
    NoControlplane(String),
    /// The kubeconfig could not be rendered from the PKI.
    #[error("cluster {cluster}: rendering the admin kubeconfig: {source}")]
    Render {
        /// The cluster.
        cluster: String,
        /// What the renderer said.
        #[source]
        source: RenderError,
    },
}

/// The config as it travels in a download: the SSH keys and the S3 secret key (sealed with this
/// server's key, of no use elsewhere) left out; the key paths stay.
fn portable(cfg: &RkeConfig) -> RkeConfig {
    let mut cfg = cfg.clone();
    cfg.ssh_key.clear();
    for node in &mut cfg.nodes {
        node.ssh_key.clear();
    }
    if let Some(b) = &mut cfg.bastion_host {
        b.ssh_key.clear();
    }
    if let Some(s3) = cfg.services.etcd.backup_config.as_mut().and_then(|b| b.s3_backup_config.as_mut()) {
        s3.secret_key.clear();
    }
    cfg
}

/// RKE's `certificatesBundle`: each certificate by name with its key, and the service-account key.
fn certificates_bundle(pki: &ClusterPki) -> Value {
    let mut bundle = Map::new();
    for info in pki.certificates() {
        let Some(cert) = pki.get(&info.name) else { continue };
        bundle.insert(
            info.name.clone(),
            json!({
                "name": info.name,
                "commonName": cert.spec.common_name,
                "ouName": cert.spec.organization.clone().unwrap_or_default(),
                "certificatePEM": cert.cert_pem,
                "keyPEM": cert.key_pem.expose(),
                "notAfter": cert.not_after,
            }),
        );
    }
    if let Some(key) = pki.service_account_key() {
        bundle.insert(
            SERVICE_ACCOUNT_KEY.to_owned(),
            json!({ "name": SERVICE_ACCOUNT_KEY, "keyPEM": key.expose() }),
        );
    }
    Value::Object(bundle)
}

/// The cluster's state as `cluster.rkestate`: `desiredState` from the spec, `currentState` from what
/// was last provisioned (`null` config before the first run finished). One PKI serves both.
pub(crate) fn rkestate(cluster: &Cluster, st: &RkeState) -> Result<Value, ExportError> {
    let name = &cluster.metadata.name;
    let desired = cluster.spec.rke_config.as_ref().ok_or_else(|| ExportError::NotOnHosts(name.clone()))?;
    let bundle = certificates_bundle(&st.pki);
    Ok(json!({
        "desiredState": { "rkeConfig": portable(desired), "certificatesBundle": bundle },
        "currentState": {
            "rkeConfig": st.current_config.as_ref().map(portable),
            "certificatesBundle": bundle,
        },
    }))
}

/// `kube_config_<name>.yml`: the admin certificate, for the API server of the first controlplane
/// host of the config last provisioned (the spec's before the first run finished).
pub(crate) fn admin_kubeconfig(cluster: &Cluster, st: &RkeState) -> Result<String, ExportError> {
    let name = &cluster.metadata.name;
    let cfg = match (&st.current_config, &cluster.spec.rke_config) {
        (Some(current), _) => current,
        (None, Some(desired)) => desired,
        (None, None) => return Err(ExportError::NotOnHosts(name.clone())),
    };
    let server = rke_plans::admin_server_url(cfg).ok_or_else(|| ExportError::NoControlplane(name.clone()))?;
    rke_plans::admin_kubeconfig(cfg, &st.pki, &server)
        .map_err(|source| ExportError::Render { cluster: name.clone(), source })
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{ClusterSpec, RkeBackupConfig, RkeNode, RkeS3BackupConfig};

    use super::*;

    fn cluster() -> (Cluster, RkeState) {
        let mut cfg = RkeConfig {
            nodes: vec![
                RkeNode {
                    address: "10.0.0.2".into(),
                    role: vec!["worker".into()],
                    ssh_key: "sealed:v1:xyz".into(),
                    ..Default::default()
                },
                RkeNode {
                    address: "10.0.0.1".into(),
                    role: vec!["etcd".into(), "controlplane".into()],
                    ssh_key_path: "~/.ssh/id_ed25519".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        cfg.services.etcd.backup_config = Some(RkeBackupConfig {
            s3_backup_config: Some(RkeS3BackupConfig {
                access_key: "AKIDEXAMPLE".into(),
                secret_key: "sealed:v1:s3".into(),
                bucket_name: "snapshots".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut st = RkeState::default();
        st.pki.ensure(&cfg).unwrap();
        let c = Cluster::new("solo", ClusterSpec { rke_config: Some(Box::new(cfg)), ..Default::default() });
        (c, st)
    }

    #[test]
    fn the_state_holds_both_configs_and_every_certificate_with_its_key_but_no_ssh_or_s3_key() {
        let (c, mut st) = cluster();
        let doc = rkestate(&c, &st).unwrap();
        assert!(doc["currentState"]["rkeConfig"].is_null());
        let bundle = &doc["desiredState"]["certificatesBundle"];
        let ca = &bundle["kube-ca"];
        assert!(ca["certificatePEM"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(ca["keyPEM"].as_str().unwrap().contains("PRIVATE KEY"));
        assert!(bundle[SERVICE_ACCOUNT_KEY]["keyPEM"].as_str().unwrap().contains("PRIVATE KEY"));
        assert_eq!(bundle.as_object().unwrap().len(), st.pki.certificates().len() + 1);
        let text = doc.to_string();
        assert!(!text.contains("sealed:v1"), "{text}");
        assert!(text.contains("~/.ssh/id_ed25519") && text.contains("AKIDEXAMPLE"));

        st.current_config = c.spec.rke_config.as_deref().cloned();
        let doc = rkestate(&c, &st).unwrap();
        assert_eq!(doc["currentState"]["rkeConfig"], doc["desiredState"]["rkeConfig"]);
        assert_eq!(doc["currentState"]["certificatesBundle"], doc["desiredState"]["certificatesBundle"]);

        let imported = Cluster::new("imp", ClusterSpec::default());
        assert!(matches!(rkestate(&imported, &st), Err(ExportError::NotOnHosts(_))));
    }

    #[test]
    fn the_admin_kubeconfig_points_at_the_first_controlplane_host_of_the_current_config() {
        let (c, mut st) = cluster();
        let yaml = admin_kubeconfig(&c, &st).unwrap();
        assert!(yaml.contains("https://10.0.0.1:6443"), "{yaml}");
        let mut moved = *c.spec.rke_config.clone().unwrap();
        moved.nodes[1].address = "10.0.0.9".into();
        st.pki.ensure(&moved).unwrap();
        st.current_config = Some(moved);
        assert!(admin_kubeconfig(&c, &st).unwrap().contains("https://10.0.0.9:6443"));
        let mut no_cp = st.current_config.clone().unwrap();
        no_cp.nodes[1].role = vec!["etcd".into()];
        st.current_config = Some(no_cp);
        assert!(matches!(admin_kubeconfig(&c, &st), Err(ExportError::NoControlplane(_))));
    }
}
