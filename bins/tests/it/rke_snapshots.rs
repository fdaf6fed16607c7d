//! etcd snapshots and restore on a cluster built on three SSH hosts (three etcd members, one of them
//! also control plane and worker): a ConfigMap written, a snapshot taken through SSH and stored on
//! every etcd host, another ConfigMap written, every member restored from the snapshot, and the
//! cluster back with the first ConfigMap and without the second.
//!
//! Until the provisioner's run offers snapshots and restore, this test drives the mechanism
//! (`rancher_provision::etcd_snapshots`, what `rke/snapshots.rs` feeds from the cluster's sealed
//! state) itself, with the cluster's certificates from `rancherctl cluster rkestate`, and stops
//! etcd and the control plane the way the run will not: it pauses each host's node agent
//! (SIGSTOP), kills the processes, restores, and lets the node agents go on (SIGCONT), which
//! restart them.

use std::sync::Arc;
use std::time::Duration;

use rancher_provision::etcd_api::EtcdTls;
use rancher_provision::etcd_snapshots::{self, EtcdHost, RestoreSpec, SnapshotKind};
use rancher_provision::ssh::{HostKeyPolicy, SshSession, SshTarget};
use rancher_test_support::kubectl::Kubectl;
use rancher_test_support::ssh_hosts::{SshHost, SshHosts};
use serde_json::Value;

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
