//! etcd snapshots and restore on a cluster built on three SSH hosts (three etcd members, one of them
//! also control plane and worker): a ConfigMap written, a snapshot taken through SSH and stored on
//! every etcd host, another ConfigMap written, every member restored from the snapshot, and the
//! cluster back with the first ConfigMap and without the second.
//!
//! The first test drives the mechanism
//! (`rancher_provision::etcd_snapshots`, what `rke/snapshots.rs` feeds from the cluster's sealed
//! state) itself, with the cluster's certificates from `rancherctl cluster rkestate`, and stops
//! etcd and the control plane the way the run will not: it pauses each host's node agent
//! (SIGSTOP), kills the processes, restores, and lets the node agents go on (SIGCONT), which
//! restart them.
//!
//! The second goes through the server as a user does: `rancherctl cluster snapshot create|ls|restore`
//! on a cluster whose snapshots also go to S3 (moto), the schedule's first recurring snapshot, and
//! a snapshot taken while the S3 endpoint is down.

use std::sync::Arc;
use std::time::Duration;

use rancher_provision::etcd_api::EtcdTls;
use rancher_provision::etcd_snapshots::{self, EtcdHost, RestoreSpec, SnapshotKind};
use rancher_provision::s3::{S3Client, S3Config};
use rancher_provision::ssh::{HostKeyPolicy, SshSession, SshTarget};
use rancher_test_support::kubectl::Kubectl;
use rancher_test_support::moto::Moto;
use rancher_test_support::ssh_hosts::{SshHost, SshHosts};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::import_support::*;
use crate::rke_support::*;

/// From `create` to Active.
const UP: Duration = Duration::from_secs(600);
const PREFIX: &str = "/srv/node";
/// etcd and the control plane, as the layout puts them on a host.
const STOPPED: [&str; 4] = [
    "opt/rke/bin/etcd",
    "opt/rke/bin/kube-apiserver",
    "opt/rke/bin/kube-controller-manager",
    "opt/rke/bin/kube-scheduler",
];

/// The server's credentials towards etcd, from the cluster's exported state.
fn etcd_tls_from_rkestate(state: &Value) -> EtcdTls {
    let bundle = &state["currentState"]["certificatesBundle"];
    let pem =
        |name: &str, field: &str| bundle[name][field].as_str().unwrap_or_else(|| panic!("{name}")).to_owned();
    EtcdTls {
        ca_pem: pem("kube-etcd-ca", "certificatePEM"),
        cert_pem: pem("kube-apiserver-etcd-client", "certificatePEM"),
        key_pem: pem("kube-apiserver-etcd-client", "keyPEM").into(),
        server_name: "127.0.0.1".into(),
    }
}

/// The value of `--<flag>=` on the command line of `host`'s etcd.
fn etcd_flag(host: &SshHost, flag: &str) -> String {
    let pid = pids_in_host(host, &["opt/rke/bin/etcd"])[0];
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let prefix = format!("--{flag}=");
    String::from_utf8_lossy(&cmdline)
        .split('\0')
        .find_map(|w| w.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| panic!("etcd has no --{flag}"))
}

async fn sessions(hosts: &SshHosts) -> Vec<EtcdHost> {
    let mut out = Vec::new();
    for h in hosts.hosts() {
        let target = SshTarget {
            address: h.address().to_owned(),
            port: h.ssh_port(),
            user: hosts.user().to_owned(),
            key: hosts.client_key().to_owned().into(),
            host_key: HostKeyPolicy::Pinned(vec![h.host_public_key()]),
        };
        let session = SshSession::connect(&target, None, Duration::from_secs(10)).await.unwrap();
        out.push(EtcdHost {
            name: format!("node{}", h.index()),
            internal_address: h.address().to_owned(),
            session: Arc::new(session),
        });
    }
    out
}

fn signal(pids: &[u32], sig: &str) {
    for pid in pids {
        let ok = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig} {pid}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_taken_on_the_hosts_restores_every_etcd_member_and_newer_objects_are_gone() {
    install_crypto();
    let hosts = SshHosts::start(3);
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), hosts.hosts()[0].bridge_address()).await;
    let home = cli_home(dir.path(), &server.url);
    let (all, etcd): (&[&str], &[&str]) = (&["etcd", "controlplane", "worker"], &["etcd"]);
    let yml = write_cluster_yml(dir.path(), &hosts, &[all, etcd, etcd]);
    let (ok, out) = rancherctl(&home, &["cluster", "create", "trio", "--rke", yml.to_str().unwrap()]);
    assert!(ok, "{out}");
    wait_state(&home, "trio", "active", UP).await;
    let (ok, kubeconfig) = rancherctl(&home, &["kubeconfig", "trio"]);
    assert!(ok, "{kubeconfig}");
    let kubeconfig_file = dir.path().join("trio.kubeconfig");
    std::fs::write(&kubeconfig_file, &kubeconfig).unwrap();
    let k = Kubectl::at("1.33", &kubeconfig_file, &home);
    k.ok(&["create", "configmap", "before", "--from-literal=when=before"]).await;

    // The bundle's optional etcdctl is on every etcd host (one build, named after its checksum).
    let etcdctls: Vec<String> = hosts
        .hosts()
        .iter()
        .map(|h| {
            let file =
                installed_binary(h, "etcdctl").unwrap_or_else(|| panic!("node{}: no etcdctl", h.index()));
            file.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    assert!(etcdctls.iter().all(|f| f == &etcdctls[0]), "{etcdctls:?}");
    let state_file = dir.path().join("trio.rkestate");
    let (ok, out) = rancherctl(&home, &["cluster", "rkestate", "trio", "-o", state_file.to_str().unwrap()]);
    assert!(ok, "{out}");
    let tls = etcd_tls_from_rkestate(&serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap());
    let token = etcd_flag(&hosts.hosts()[0], "initial-cluster-token");
    let etcd_hosts = sessions(&hosts).await;

    let scratch = dir.path().join("snapshots");
    let name = etcd_snapshots::snapshot_name("trio", SnapshotKind::Manual, jiff::Timestamp::now());
    let taken =
        etcd_snapshots::take(&etcd_hosts, &tls, PREFIX, &name, SnapshotKind::Manual, &scratch).await.unwrap();
    assert_eq!(taken.record.hosts, ["node1", "node2", "node3"], "{:?}", taken.failed_hosts);
    for h in hosts.hosts() {
        let file = h.root_dir().join(format!("opt/rke/etcd-snapshots/{name}.db"));
        assert_eq!(std::fs::metadata(&file).unwrap().len(), taken.record.size, "{}", file.display());
    }

    k.ok(&["create", "configmap", "after", "--from-literal=when=after"]).await;
    k.ok(&["get", "configmap", "after"]).await;

    // Stop etcd and the control plane everywhere, their node agents paused so that they stay stopped.
    // (The node-agent binary also runs the cluster agent, without `--node`.)
    let agents: Vec<u32> = hosts
        .hosts()
        .iter()
        .flat_map(|h| {
            h.pids_matching(|w| {
                w.first().is_some_and(|p| p.ends_with("opt/rke/bin/node-agent"))
                    && w.iter().any(|a| a == "--node")
            })
        })
        .collect();
    assert_eq!(agents.len(), 3, "{agents:?}");
    signal(&agents, "-STOP");
    for h in hosts.hosts() {
        kill_in_host(h, &STOPPED);
    }
    let etcdctl = format!("{PREFIX}/opt/rke/bin/{}", etcdctls[0]);
    let spec = RestoreSpec {
        name: &name,
        sha256: &taken.record.sha256,
        token: &token,
        prefix: PREFIX,
        etcdctl: &etcdctl,
    };
    let restored = etcd_snapshots::restore(&etcd_hosts, &tls, &spec, &scratch).await;
    signal(&agents, "-CONT");
    let report = restored.unwrap();
    assert!(report.copied_to.is_empty(), "{report:?}");
    assert_eq!(report.set_aside.len(), 3, "{report:?}");

    // The node agents start etcd and the control plane again; the cluster is back as it was at the
    // snapshot.
    for h in &etcd_hosts {
        let client = h.etcd(&tls).unwrap();
        eventually(UP, &format!("etcd on {} healthy", h.name), || async {
            matches!(client.health().await, Ok(Ok(()))).then_some(())
        })
        .await;
    }
    eventually(UP, "the API server answers with the ConfigMap of before the snapshot", || {
        let k = Kubectl::at("1.33", &kubeconfig_file, &home);
        async move { k.run(&["get", "configmap", "before"]).await.ok.then_some(()) }
    })
    .await;
    let gone = k.run(&["get", "configmap", "after"]).await;
    assert!(!gone.ok && gone.stderr.contains("NotFound"), "{gone:?}");
    let members = etcd_hosts[0].etcd(&tls).unwrap().member_list().await.unwrap();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(etcd_snapshots::cleanup_restore(&etcd_hosts, PREFIX).await.is_empty());
    // Writes work again.
    k.ok(&["create", "configmap", "later", "--from-literal=when=later"]).await;
}

/// The cluster.yml of [`write_cluster_yml`] with snapshots on a schedule and uploaded to `moto`'s
/// bucket `bucket` under `folder`.
fn cluster_yml_with_s3(dir: &std::path::Path, hosts: &SshHosts, roles: &[&[&str]], s3: &S3Config) -> String {
    let yml = std::fs::read_to_string(write_cluster_yml(dir, hosts, roles)).unwrap();
    format!(
        "{yml}services:\n  etcd:\n    backup_config:\n      enabled: true\n      interval_hours: 12\n      \
         retention: 2\n      s3backupconfig:\n        endpoint: {}\n        bucket_name: {}\n        folder: {}\n        \
         access_key: {}\n        secret_key: {}\n",
        s3.endpoint,
        s3.bucket_name,
        s3.folder,
        s3.access_key,
        secrecy::ExposeSecret::expose_secret(&s3.secret_key),
    )
}

/// `rancherctl cluster snapshot ls NAME -o json`.
fn snapshot_list(home: &std::path::Path, cluster: &str) -> Vec<Value> {
    let (ok, out) = rancherctl(home, &["cluster", "snapshot", "ls", cluster, "-o", "json"]);
    assert!(ok, "{out}");
    serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("{e}: {out}")).as_array().cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_through_the_server_go_to_s3_a_failed_upload_keeps_them_and_a_restore_brings_the_cluster_back()
 {
    install_crypto();
    let moto = Moto::start().await;
    let s3_config = S3Config {
        endpoint: moto.endpoint(),
        bucket_name: "etcd-snapshots".into(),
        folder: "prod".into(),
        access_key: "AKIDSNAPSHOTS".into(),
        secret_key: "moto-accepts-any-secret".into(),
        ..Default::default()
    };
    let bucket = S3Client::new(&s3_config).unwrap();
    bucket.create_bucket().await.unwrap_or_else(|e| panic!("{e}\n{}", moto.log()));

    let hosts = SshHosts::start(3);
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), hosts.hosts()[0].bridge_address()).await;
    let home = cli_home(dir.path(), &server.url);
    let (all, etcd): (&[&str], &[&str]) = (&["etcd", "controlplane", "worker"], &["etcd"]);
    let yml = dir.path().join("cluster-s3.yml");
    std::fs::write(&yml, cluster_yml_with_s3(dir.path(), &hosts, &[all, etcd, etcd], &s3_config)).unwrap();
    let (ok, out) = rancherctl(&home, &["cluster", "create", "trio", "--rke", yml.to_str().unwrap()]);
    assert!(ok, "{out}");
    wait_state(&home, "trio", "active", UP).await;
    let (ok, kubeconfig) = rancherctl(&home, &["kubeconfig", "trio"]);
    assert!(ok, "{kubeconfig}");
    let kubeconfig_file = dir.path().join("trio.kubeconfig");
    std::fs::write(&kubeconfig_file, &kubeconfig).unwrap();
    let k = Kubectl::at("1.33", &kubeconfig_file, &home);
    k.ok(&["create", "configmap", "before", "--from-literal=when=before"]).await;

    // On demand: stored on every etcd host and in the bucket, with the same SHA-256.
    let (ok, out) = rancherctl(&home, &["cluster", "snapshot", "create", "trio", "-o", "json"]);
    assert!(ok, "{out}");
    let record: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let name = record["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("trio-manual-"), "{record}");
    assert_eq!(record["kind"], "manual");
    assert_eq!(record["hosts"], serde_json::json!(["node1", "node2", "node3"]), "{record}");
    let key = format!("prod/{name}.db");
    assert_eq!(record["s3"], serde_json::json!({"bucket": "etcd-snapshots", "key": key}), "{record}");
    let mut object = Vec::new();
    let size = bucket.get_object(&format!("{name}.db"), &mut object).await.unwrap();
    assert_eq!(Some(size), record["size"].as_u64());
    assert_eq!(hex::encode(Sha256::digest(&object)), record["sha256"].as_str().unwrap());
    for h in hosts.hosts() {
        let file = h.root_dir().join(format!("opt/rke/etcd-snapshots/{name}.db"));
        assert_eq!(std::fs::read(&file).unwrap(), object, "{}", file.display());
    }
    let listed = snapshot_list(&home, "trio");
    assert!(listed.iter().any(|s| s == &record), "{listed:?}");
    let (ok, table) = rancherctl(&home, &["cluster", "snapshot", "ls", "trio"]);
    assert!(ok && table.contains(&name) && table.contains(&format!("s3://etcd-snapshots/{key}")), "{table}");

    // On the schedule: none was taken yet, so one is due at the first sweep (every minute).
    let recurring = eventually(Duration::from_secs(150), "a recurring snapshot", || {
        let home = home.clone();
        async move { snapshot_list(&home, "trio").into_iter().find(|s| s["kind"] == "recurring") }
    })
    .await;
    assert!(
        recurring["s3"]["key"].as_str().is_some_and(|k| k.starts_with("prod/trio-recurring-")),
        "{recurring}"
    );

    k.ok(&["create", "configmap", "after", "--from-literal=when=after"]).await;
    k.ok(&["get", "configmap", "after"]).await;

    // Restore: the API is down meanwhile (declared, and measured through the proxy); back with the
    // first ConfigMap, not the second; every etcd member was stopped and started again.
    let etcd_before: Vec<Vec<u32>> =
        hosts.hosts().iter().map(|h| pids_in_host(h, &["opt/rke/bin/etcd"])).collect();
    let watching = tokio_util::sync::CancellationToken::new();
    let watcher =
        tokio::spawn(api_down_windows(Kubectl::at("1.33", &kubeconfig_file, &home), watching.clone()));
    let restore_args =
        ["cluster", "snapshot", "restore", "trio", name.as_str(), "--timeout", "15m"].map(str::to_owned);
    let cli_home = home.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = restore_args.iter().map(String::as_str).collect();
        rancherctl(&cli_home, &args)
    })
    .await
    .unwrap();
    assert!(ok, "{out}\n{}", server_log_tail(dir.path()));
    assert!(out.contains("its API is down"), "{out}");
    eventually(UP, "the API server answers with the ConfigMap of before the snapshot", || {
        let k = Kubectl::at("1.33", &kubeconfig_file, &home);
        async move { k.run(&["get", "configmap", "before"]).await.ok.then_some(()) }
    })
    .await;
    watching.cancel();
    let (down, asked) = watcher.await.unwrap();
    eprintln!(
        "the API through the proxy was down during the restore for {down:?} (longest window; asked {asked} times)"
    );
    assert!(down > Duration::ZERO, "the restore stopped the API server, and the proxy saw it");
    let gone = k.run(&["get", "configmap", "after"]).await;
    assert!(!gone.ok && gone.stderr.contains("NotFound"), "{gone:?}");
    for (h, before) in hosts.hosts().iter().zip(&etcd_before) {
        let now = pids_in_host(h, &["opt/rke/bin/etcd"]);
        assert!(
            now.len() == 1 && before.len() == 1 && now != *before,
            "node{}: etcd {before:?} → {now:?}",
            h.index()
        );
    }
    // Every member was restored: three members, the set-aside data removed.
    for h in hosts.hosts() {
        let aside: Vec<_> = std::fs::read_dir(h.root_dir().join("var/lib"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("etcd."))
            .map(|e| e.file_name())
            .collect();
        assert!(aside.is_empty(), "node{}: {aside:?}", h.index());
    }
    let etcd_hosts = sessions(&hosts).await;
    let state_file = dir.path().join("trio.rkestate");
    let (ok, out) = rancherctl(&home, &["cluster", "rkestate", "trio", "-o", state_file.to_str().unwrap()]);
    assert!(ok, "{out}");
    let tls = etcd_tls_from_rkestate(&serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap());
    let members = etcd_hosts[0].etcd(&tls).unwrap().member_list().await.unwrap();
    assert_eq!(members.len(), 3, "{members:?}");
    k.ok(&["create", "configmap", "later", "--from-literal=when=later"]).await;

    // The S3 endpoint down: the snapshot is still taken and kept on the hosts, and says why it is
    // not in the bucket.
    drop(moto);
    let (ok, out) = rancherctl(&home, &["cluster", "snapshot", "create", "trio"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("the upload to S3 bucket etcd-snapshots FAILED (the snapshot is kept on the hosts)"),
        "{out}"
    );
    let failed = snapshot_list(&home, "trio").into_iter().last().unwrap();
    let failed_name = failed["name"].as_str().unwrap();
    assert!(out.contains(failed_name), "{out}");
    assert_eq!(failed["hosts"], serde_json::json!(["node1", "node2", "node3"]), "{failed}");
    let why = failed["s3"]["error"].as_str().unwrap_or_else(|| panic!("{failed}"));
    assert!(why.starts_with("S3 PutObject etcd-snapshots/prod/") && why.contains("request failed"), "{why}");
    assert!(failed["s3"].get("key").is_none(), "{failed}");
    for h in hosts.hosts() {
        let file = h.root_dir().join(format!("opt/rke/etcd-snapshots/{failed_name}.db"));
        assert_eq!(std::fs::metadata(&file).unwrap().len(), failed["size"].as_u64().unwrap());
    }
    let (ok, table) = rancherctl(&home, &["cluster", "snapshot", "ls", "trio"]);
    assert!(ok && table.contains(&format!("upload failed: {why}")), "{table}");
}

/// Asks the API through the proxy every 500 ms until `stop`; returns the longest time it did not
/// answer, and how many times it was asked.
async fn api_down_windows(k: Kubectl, stop: tokio_util::sync::CancellationToken) -> (Duration, usize) {
    let (mut longest, mut down_since, mut asked) = (Duration::ZERO, None::<tokio::time::Instant>, 0);
    while !stop.is_cancelled() {
        let answer = k.run(&["get", "configmap", "before", "--request-timeout=2s"]).await;
        asked += 1;
        match (answer.ok, down_since) {
            (false, None) => {
                eprintln!("the API does not answer: {}", answer.stderr.trim());
                down_since = Some(tokio::time::Instant::now());
            }
            (true, Some(since)) => {
                longest = longest.max(since.elapsed());
                down_since = None;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (down_since.map_or(longest, |since| longest.max(since.elapsed())), asked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_cut_short_by_a_server_restart_resumes_from_the_stored_state() {
    install_crypto();
    let hosts = SshHosts::start(3);
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_server(dir.path(), hosts.hosts()[0].bridge_address()).await;
    let home = cli_home(dir.path(), &server.url);
    let (all, etcd): (&[&str], &[&str]) = (&["etcd", "controlplane", "worker"], &["etcd"]);
    let yml = write_cluster_yml(dir.path(), &hosts, &[all, etcd, etcd]);
    let (ok, out) = rancherctl(&home, &["cluster", "create", "trio", "--rke", yml.to_str().unwrap()]);
    assert!(ok, "{out}");
    wait_state(&home, "trio", "active", UP).await;
    let (ok, kubeconfig) = rancherctl(&home, &["kubeconfig", "trio"]);
    assert!(ok, "{kubeconfig}");
    let kubeconfig_file = dir.path().join("trio.kubeconfig");
    std::fs::write(&kubeconfig_file, &kubeconfig).unwrap();
    let k = Kubectl::at("1.33", &kubeconfig_file, &home);
    k.ok(&["create", "configmap", "before", "--from-literal=when=before"]).await;
    let (ok, out) = rancherctl(&home, &["cluster", "snapshot", "create", "trio", "-o", "json"]);
    assert!(ok, "{out}");
    let record: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(record.get("s3").is_none(), "no S3 target: {record}");
    let name = record["name"].as_str().unwrap().to_owned();
    k.ok(&["create", "configmap", "after", "--from-literal=when=after"]).await;

    let (ok, out) = rancherctl(&home, &["cluster", "snapshot", "restore", "trio", &name, "--no-wait"]);
    assert!(ok, "{out}");
    // etcd stopped everywhere: the restore is under way (stopping or restored, not done: that
    // needs etcd healthy). The server dies there, without a clean shutdown.
    eventually(Duration::from_secs(120), "etcd stopped on every host", || {
        let stopped = hosts.hosts().iter().all(|h| pids_in_host(h, &["opt/rke/bin/etcd"]).is_empty());
        async move { stopped.then_some(()) }
    })
    .await;
    server.restart(1).await;

    wait_state(&home, "trio", "active", UP).await;
    eventually(UP, "the API server answers with the ConfigMap of before the snapshot", || {
        let k = Kubectl::at("1.33", &kubeconfig_file, &home);
        async move { k.run(&["get", "configmap", "before"]).await.ok.then_some(()) }
    })
    .await;
    let gone = k.run(&["get", "configmap", "after"]).await;
    assert!(!gone.ok && gone.stderr.contains("NotFound"), "{gone:?}");
    for h in hosts.hosts() {
        assert_eq!(pids_in_host(h, &["opt/rke/bin/etcd"]).len(), 1, "node{}", h.index());
    }
    k.ok(&["create", "configmap", "later", "--from-literal=when=later"]).await;
}

/// The end of the server's log, for a failure's message.
fn server_log_tail(dir: &std::path::Path) -> String {
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
