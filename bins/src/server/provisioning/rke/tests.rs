use rancher_core::model::{ClusterSpec, RkeNode};
use secrecy::ExposeSecret;

use super::*;

fn bundles(versions: &[&str]) -> (tempfile::TempDir, Arc<BundleRegistry>) {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(&str, std::path::PathBuf)> = rancher_provision::bundle::COMPONENTS
        .iter()
        .map(|c| {
            let p = dir.path().join(c);
            std::fs::write(&p, c.as_bytes()).unwrap();
            (*c, p)
        })
        .collect();
    let pairs: Vec<(&str, &std::path::Path)> = files.iter().map(|(c, p)| (*c, p.as_path())).collect();
    let mut reg = BundleRegistry::new();
    for v in versions {
        reg.insert(Bundle::from_local_files(v, &pairs).unwrap()).unwrap();
    }
    (dir, Arc::new(reg))
}

fn cluster(version: &str) -> Cluster {
    let cfg = RkeConfig {
        nodes: vec![RkeNode {
            address: "10.0.0.1".into(),
            role: vec!["etcd".into(), "controlplane".into(), "worker".into()],
            ..Default::default()
        }],
        ssh_key_path: "/root/.ssh/id_ed25519".into(),
        kubernetes_version: version.into(),
        ..Default::default()
    };
    Cluster::new(
        "c-rke",
        ClusterSpec { rke_config: Some(Box::new(cfg)), driver: "rke".into(), ..Default::default() },
    )
}

fn field(e: ProvisionError) -> String {
    match e {
        ProvisionError::InvalidSpec { field, message } => format!("{field}: {message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn validates_the_config_and_finds_its_bundle() {
    let (_dir, reg) = bundles(&["v1.20.2", "v1.21.0"]);
    let p = RkeProvisioner::new(reg, Arc::new(Sealer::from_key(&[3; 32])));
    assert_eq!(p.driver(), "rke");
    p.validate(&cluster("v1.20.2")).unwrap();
    assert_eq!(p.warnings(&cluster("v1.20.2")).len(), 1, "one host with every role");
    assert_eq!(p.bundle_for(RkeProvisioner::config(&cluster("")).unwrap()).unwrap().version, "v1.21.0");

    let e = field(p.validate(&cluster("v1.19.0")).unwrap_err());
    assert_eq!(
        e,
        "spec.rkeConfig.kubernetes_version: the server has no bundle for v1.19.0 (it has: v1.20.2, v1.21.0)"
    );
    let mut bad = cluster("v1.20.2");
    bad.spec.rke_config.as_mut().unwrap().nodes[0].role[0] = "master".into();
    assert!(field(p.validate(&bad).unwrap_err()).starts_with("spec.rkeConfig.nodes[0].role[0]: \"master\""));
    let mut none = cluster("");
    none.spec.rke_config = None;
    assert_eq!(
        field(p.validate(&none).unwrap_err()),
        "spec.rkeConfig: a cluster of the rke driver needs spec.rkeConfig"
    );
    let (_empty_dir, empty) = bundles(&[]);
    let p = RkeProvisioner::new(empty, Arc::new(Sealer::from_key(&[3; 32])));
    assert!(field(p.validate(&cluster("")).unwrap_err()).contains("no Kubernetes bundle"));

    // Before the server has attached its registration, nothing can be provisioned.
    let err = p.reconcile(&cluster(""), &ProvisionContext::default()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn ssh_keys_come_sealed_inline_or_from_the_server_s_files() {
    let (dir, reg) = bundles(&["v1.20.2"]);
    let sealer = Arc::new(Sealer::from_key(&[4; 32]));
    let _ = reg;
    let sealed = sealer.seal("KEY-ONE");
    assert_eq!(
        read_ssh_key(&sealer, SshKeySource::Inline(&sealed)).await.unwrap().expose_secret(),
        "KEY-ONE"
    );
    assert_eq!(
        read_ssh_key(&sealer, SshKeySource::Inline("KEY-TWO")).await.unwrap().expose_secret(),
        "KEY-TWO"
    );
    let path = dir.path().join("id");
    std::fs::write(&path, "KEY-THREE").unwrap();
    let path = path.to_str().unwrap();
    assert_eq!(read_ssh_key(&sealer, SshKeySource::Path(path)).await.unwrap().expose_secret(), "KEY-THREE");
    let missing = dir.path().join("missing");
    let err =
        read_ssh_key(&sealer, SshKeySource::Path(missing.to_str().unwrap())).await.unwrap_err().to_string();
    assert!(err.contains("reading the SSH key file") && err.contains("missing"), "{err}");
    let other = Sealer::from_key(&[5; 32]).seal("KEY-FOUR");
    let err = read_ssh_key(&sealer, SshKeySource::Inline(&other)).await.unwrap_err().to_string();
    assert!(err.contains("does not open") && !err.contains("KEY-FOUR"), "{err}");
}
