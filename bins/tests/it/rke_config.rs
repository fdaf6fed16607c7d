//! Clusters on SSH hosts from a cluster.yml: `rancherctl cluster create --rke` checks the file before
//! sending it, the server gives such clusters the `rke` driver, checks their bundle, answers with
//! Kubernetes-style `Warning` headers, and keeps their SSH keys and the S3 secret key of their etcd
//! snapshots sealed (never in its files, never in a response).

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use crate::common::{ADMIN_PASSWORD, Api, ServerProc, assert_status, client, err, install_crypto, ok};
use rancher::server::Server;
use rancher_core::model::Cluster;
use rancher_core::store::{Api as StoreApi, MemoryStore};
use rancher_provision::bundle::{Bundle, COMPONENTS};
use serde_json::{Value, json};

/// Text of the test's private key: what must never show in the server's files or answers.
const KEY_TEXT: &str = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ-RKE-CONFIG-TEST-KEY";

fn private_key() -> String {
    format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_TEXT}\n-----END OPENSSH PRIVATE KEY-----\n")
}

/// The S3 secret key of the etcd snapshots: like the SSH key, never in the server's files or answers.
const S3_SECRET_TEXT: &str = "wJalrXUtnFEMI-RKE-CONFIG-TEST-S3-SECRET";

/// Text of the config that is no secret: found in the store's files, which shows that looking for the
/// key there can find plain text.
const VISIBLE: &str = "rke-config-visible-marker";

/// A bundle of six small local files in `dir`.
pub(crate) fn bundle(dir: &Path, version: &str) -> Bundle {
    let files: Vec<(&str, std::path::PathBuf)> = COMPONENTS
        .iter()
        .map(|c| {
            let p = dir.join(c);
            std::fs::write(&p, format!("#!/bin/sh\necho {c}\n")).unwrap();
            (*c, p)
        })
        .collect();
    let pairs: Vec<(&str, &Path)> = files.iter().map(|(c, p)| (*c, p.as_path())).collect();
    Bundle::from_local_files(version, &pairs).unwrap()
}

/// A server in this process on a [`MemoryStore`], with the bundle `v1.20.2`, its CA written to
/// `ca.pem` in the test's directory, and the admin logged in.
pub(crate) struct InProcess {
    pub(crate) store: Arc<MemoryStore>,
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) ca_file: std::path::PathBuf,
    pub(crate) admin: Api,
    pub(crate) stop: tokio_util::sync::CancellationToken,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl InProcess {
    pub(crate) async fn start(dir: &Path) -> InProcess {
        let store = Arc::new(MemoryStore::new());
        let server = Server::builder()
            .data_dir(dir.join("data"))
            .store(store.clone())
            .https_listen("127.0.0.1:0".parse().unwrap())
            .bootstrap_password(ADMIN_PASSWORD)
            .bundle(bundle(dir, "v1.20.2"))
            .build()
            .await
            .unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, server.ca_pem()).unwrap();
        let http = client(server.ca_pem());
        let url = server.url();
        let stop = tokio_util::sync::CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move { server.run(s.cancelled_owned()).await.unwrap() });
        let admin = Api { http: http.clone(), url: url.clone(), token: None }
            .logged_in("admin", ADMIN_PASSWORD)
            .await;
        InProcess { store, http, url, ca_file, admin, stop, task }
    }
}

/// `rancherctl` with its own HOME and no password in the environment.
pub(crate) fn ctl(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rancherctl"))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("RANCHER_PASSWORD")
        .output()
        .expect("run rancherctl")
}

/// Every file under `dir`, recursively.
pub(crate) fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn rancherctl_creates_rke_clusters_from_a_checked_cluster_yml() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let bins = dir.path().join("bins");
    let manifests = dir.path().join("bundles");
    std::fs::create_dir_all(&bins).unwrap();
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("v1.20.2.yaml"), bundle(&bins, "v1.20.2").to_manifest()).unwrap();
    let data = dir.path().join("data");
    let server =
        ServerProc::start(&data, 0, Some(ADMIN_PASSWORD), &["--bundle-dir", manifests.to_str().unwrap()]);
    let ca = data.join("tls/ca.crt");
    let ca = ca.to_str().unwrap();
    ok(&ctl(&home, &["login", &server.url, "-u", "admin", "-p", ADMIN_PASSWORD, "--cacert", ca]));

    let key = home.join("id_ed25519");
    std::fs::write(&key, private_key()).unwrap();
    let yml = dir.path().join("cluster.yml");
    std::fs::write(
        &yml,
        format!(
            "nodes:\n  - address: 10.0.0.1\n    user: ubuntu\n    role: [etcd, controlplane, worker]\n\
             \x20   hostname_override: {VISIBLE}\n\
             ssh_key_path: ~/id_ed25519\nkubernetes_version: v1.20.2\nnetwork:\n  plugin: canal\n\
             addons: |-\n  ---\n  kind: Namespace\n\
             services:\n  etcd:\n    backup_config:\n      interval_hours: 6\n      s3backupconfig:\n\
             \x20       access_key: AKIDEXAMPLE\n        secret_key: {S3_SECRET_TEXT}\n\
             \x20       bucket_name: etcd-snapshots\n        endpoint: minio.example:9000\n        folder: edge\n"
        ),
    )
    .unwrap();
    // Its hosts do not exist: the cluster is created, not followed (`rke_day_one` follows them).
    let out = ctl(&home, &["cluster", "create", "edge", "--rke", yml.to_str().unwrap(), "--no-wait"]);
    assert_eq!(ok(&out), "edge\n", "the new cluster's id");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Warning: the cluster has 1 etcd, 1 controlplane and 1 worker node(s)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Warning: rkeConfig.addons is not supported by rancher-rs and is ignored"),
        "{stderr}"
    );
    assert!(stderr.contains("Warning: rkeConfig.network.plugin: \"canal\" is not run"), "{stderr}");

    // An invalid file fails here, naming the field; nothing reaches the server.
    std::fs::write(&yml, "nodes:\n  - address: 10.0.0.2\n    role: [etcd, master, worker]\nssh_key: k\n")
        .unwrap();
    let e = err(&ctl(&home, &["cluster", "create", "bad", "--rke", yml.to_str().unwrap()]));
    assert!(e.contains("rkeConfig.nodes[0].role[1]: \"master\" is not a role"), "{e}");
    std::fs::write(&yml, "nodes: [\n").unwrap();
    let e = err(&ctl(&home, &["cluster", "create", "bad", "--rke", yml.to_str().unwrap()]));
    assert!(e.contains("does not parse: line 1"), "{e}");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let admin = Api::new(&server).logged_in("admin", ADMIN_PASSWORD).await;
        let got = admin.get("/v3/clusters/edge").await;
        assert_eq!(got.code, 200, "{}", got.body);
        assert_eq!(
            (got.body["spec"]["driver"].as_str(), got.body["status"]["driver"].as_str()),
            (Some("rke"), Some("rke"))
        );
        let cfg = &got.body["spec"]["rkeConfig"];
        assert_eq!(cfg["ssh_key"], "[sealed]", "{cfg}");
        assert_eq!(cfg["ssh_key_path"], Value::Null, "the key travelled inline");
        assert_eq!(cfg["nodes"][0]["user"], "ubuntu");
        let s3 = &cfg["services"]["etcd"]["backup_config"]["s3backupconfig"];
        assert_eq!(
            (&s3["secret_key"], &s3["access_key"]),
            (&json!("[sealed]"), &json!("AKIDEXAMPLE")),
            "{cfg}"
        );
        assert_eq!(cfg["services"]["etcd"]["backup_config"]["interval_hours"], 6);
        let list = admin.get("/v3/clusters").await;
        for answer in [&got.body, &list.body] {
            assert!(!answer.to_string().contains(KEY_TEXT), "a read shows the key: {answer}");
            assert!(!answer.to_string().contains(S3_SECRET_TEXT), "a read shows the S3 secret: {answer}");
        }
        assert_status(&admin.get("/v3/clusters/bad").await, 404, "NotFound");
    });
    // The client's pooled connections close with its runtime, so the server stops at once.
    drop(rt);
    server.stop();
    let holds = |bytes: &[u8], text: &str| bytes.windows(text.len()).any(|w| w == text.as_bytes());
    let mut visible = false;
    for file in files_under(&data) {
        let bytes = std::fs::read(&file).unwrap();
        visible |= holds(&bytes, VISIBLE);
        assert!(!holds(&bytes, KEY_TEXT), "{} holds the key", file.display());
        assert!(!holds(&bytes, S3_SECRET_TEXT), "{} holds the S3 secret key", file.display());
    }
    assert!(visible, "the store's files hold the cluster's config in plain text, so the key would show");
}

#[tokio::test]
async fn v3_gives_rke_its_driver_warnings_and_sealed_keys() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let InProcess { store, http, url, admin, stop, task, .. } = InProcess::start(dir.path()).await;
    let token = admin.token.clone().unwrap();

    let rke_config = |version: &str| {
        json!({
            "kubernetes_version": version,
            "ssh_key": private_key(),
            "nodes": [{"address": "10.0.0.1", "role": ["etcd", "controlplane", "worker"]}],
            "ingress": {"provider": "nginx"},
        })
    };
    let body = json!({"metadata": {"name": "c-rke"}, "spec": {"rkeConfig": rke_config("")}});
    let resp = http.post(format!("{url}/v3/clusters")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let warnings: Vec<String> =
        resp.headers().get_all("warning").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].starts_with("299 - \"the cluster has 1 etcd, 1 controlplane"), "{warnings:?}");
    assert_eq!(warnings[1], "299 - \"rkeConfig.ingress is not supported by rancher-rs and is ignored\"");
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["spec"]["driver"], "rke");
    assert_eq!(created["spec"]["rkeConfig"]["ssh_key"], "[sealed]");

    let clusters = StoreApi::<Cluster>::all(store.clone());
    let stored = clusters.get("c-rke").await.unwrap();
    let sealed = stored.spec.rke_config.as_ref().unwrap().ssh_key.clone();
    assert!(sealed.starts_with("sealed:v1:") && !sealed.contains(KEY_TEXT), "{sealed}");

    // An update sending "[sealed]" back keeps the stored key; a new key is sealed anew.
    let mut update = admin.get("/v3/clusters/c-rke").await.body;
    update["spec"]["description"] = json!("edge site");
    let a = admin.put("/v3/clusters/c-rke", &update).await;
    assert_eq!(a.code, 200, "{}", a.body);
    assert_eq!(clusters.get("c-rke").await.unwrap().spec.rke_config.unwrap().ssh_key, sealed);
    let mut update = admin.get("/v3/clusters/c-rke").await.body;
    update["spec"]["rkeConfig"]["ssh_key"] = json!(private_key());
    assert_eq!(admin.put("/v3/clusters/c-rke", &update).await.code, 200);
    let resealed = clusters.get("c-rke").await.unwrap().spec.rke_config.unwrap().ssh_key;
    assert!(resealed.starts_with("sealed:v1:") && resealed != sealed);

    // What is refused, naming the field; nothing is stored.
    let cases = [
        (json!({"driver": "imported", "rkeConfig": rke_config("")}), "spec.driver"),
        (json!({"rkeConfig": rke_config("v1.19.0")}), "spec.rkeConfig.kubernetes_version"),
        (json!({"driver": "rke"}), "spec.rkeConfig"),
        (
            json!({"rkeConfig": {"ssh_key": "[sealed]", "nodes": rke_config("")["nodes"]}}),
            "spec.rkeConfig.ssh_key",
        ),
        (
            json!({"rkeConfig": {"ssh_key": "k", "nodes": [{"address": "10.0.0.1", "role": ["etcd"]}]}}),
            "spec.rkeConfig.nodes",
        ),
    ];
    for (i, (spec, field)) in cases.into_iter().enumerate() {
        let name = format!("bad-{i}");
        let a = admin.post("/v3/clusters", &json!({"metadata": {"name": name}, "spec": spec})).await;
        assert_status(&a, 422, "Invalid");
        assert_eq!(a.body["details"]["causes"][0]["field"], field, "{}", a.body);
        assert!(clusters.get_opt(&name).await.unwrap().is_none());
    }
    stop.cancel();
    task.await.unwrap();
}
