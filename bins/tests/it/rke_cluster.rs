//! A cluster built on SSH hosts, end to end with real programs: OpenSSH hosts in network namespaces,
//! `rancher-server` with a bundle of the real etcd 3.4 and kube-apiserver / controller-manager /
//! scheduler 1.20, `rancherctl cluster create --rke cluster.yml`, node agents bootstrapped over SSH
//! that run their plans, simulated kubelets, and kubectl through the server's proxy.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rancher_provision::bundle::Bundle;
use rancher_test_support::kube::kube_bin_dir;
use rancher_test_support::kubectl::Kubectl;
use rancher_test_support::ssh_hosts::{SshHost, SshHosts};

use crate::import_support::*;

/// From `create` to Active: SSH, ~400 MB of binaries per control-plane host, etcd, the API server.
const UP: Duration = Duration::from_secs(600);

/// The simulated kubelet: the `rancher-sim` binary built beside the server.
fn sim_binary() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_rancher-server")).with_file_name("rancher-sim");
    assert!(
        p.exists(),
        "{} is missing: build the workspace's binaries (cargo build --workspace)",
        p.display()
    );
    p
}

/// A bundle `v1.20.2` of the local binaries, written as a manifest into `dir`.
pub(crate) fn write_bundle(dir: &Path) {
    let kube = kube_bin_dir();
    let (agent, sim) = (PathBuf::from(env!("CARGO_BIN_EXE_rancher-agent")), sim_binary());
    let files = [
        ("etcd", PathBuf::from("/usr/bin/etcd")),
        ("kube-apiserver", kube.join("kube-apiserver")),
        ("kube-controller-manager", kube.join("kube-controller-manager")),
        ("kube-scheduler", kube.join("kube-scheduler")),
        ("kubelet", sim),
        ("node-agent", agent),
    ];
    let files: Vec<(&str, &Path)> = files.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let bundle = Bundle::from_local_files("v1.20.2", &files).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("v1.20.2.yaml"), bundle.to_manifest()).unwrap();
}

/// A server the hosts reach on the bridge.
pub(crate) struct HostedServer {
    _proc: Proc,
    /// For this test (loopback).
    pub(crate) url: String,
}

pub(crate) async fn start_server(dir: &Path, bridge: &str) -> HostedServer {
    start_server_with(dir, bridge, &[]).await
}

/// As [`start_server`], with `extra` flags.
pub(crate) async fn start_server_with(dir: &Path, bridge: &str, extra: &[&str]) -> HostedServer {
    let bundles = dir.join("bundles");
    write_bundle(&bundles);
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rancher-server"));
    cmd.arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--https-listen", &format!("0.0.0.0:{port}")])
        .args(["--server-url", &format!("https://{bridge}:{port}")])
        .arg("--bundle-dir")
        .arg(&bundles)
        .args(extra)
        .env("RUST_LOG", "info,rancher::server::provisioning=debug")
        .env("CATTLE_BOOTSTRAP_PASSWORD", ADMIN_PASSWORD);
    let proc = Proc::spawn(cmd, &dir.join("server.log"));
    let url = format!("https://127.0.0.1:{port}");
    let http = insecure_client();
    eventually(WAIT, "server answers /ping", || {
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(format!("{url}/ping")).send().await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
    HostedServer { _proc: proc, url }
}

/// `cluster.yml` for these hosts with these roles, the key in a file on this machine.
pub(crate) fn cluster_yml(hosts: &[SshHost], roles: &[&[&str]], key_path: &Path) -> String {
    let mut out = String::from("kubernetes_version: v1.20.2\nprefix_path: /srv/node\nnodes:\n");
    for (h, roles) in hosts.iter().zip(roles) {
        out.push_str(&format!(
            "  - address: {}\n    user: root\n    ssh_key_path: {}\n    hostname_override: node{}\n    role: [{}]\n",
            h.address(),
            key_path.display(),
            h.index(),
            roles.join(", ")
        ));
    }
    out
}

/// SIGKILLs the processes of `host` (its network namespace: every host shares the machine's pid
/// namespace and paths, so a plain `pkill` would hit other tests' hosts) whose command line contains
/// one of `patterns`; returns their pids.
pub(crate) fn kill_in_host(host: &SshHost, patterns: &[&str]) -> Vec<u32> {
    let out = Command::new("ip").args(["netns", "pids", host.netns()]).output().unwrap();
    let mut killed = Vec::new();
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let first = cmdline.split(|b| *b == 0).next().map(String::from_utf8_lossy).unwrap_or_default();
        if patterns.iter().any(|p| first.ends_with(p)) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            killed.push(pid);
        }
    }
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_host_cluster_comes_up_from_a_cluster_yml_and_kubectl_works_through_the_proxy() {
    install_crypto();
    let hosts = SshHosts::start(1);
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), hosts.hosts()[0].bridge_address()).await;
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let key = dir.path().join("id_ed25519");
    std::fs::write(&key, hosts.client_key()).unwrap();
    let yml = dir.path().join("cluster.yml");
    std::fs::write(&yml, cluster_yml(hosts.hosts(), &[&["etcd", "controlplane", "worker"]], &key)).unwrap();

    let (ok, out) = rancherctl(
        &home,
        &["login", &server.url, "--username", "admin", "--password", ADMIN_PASSWORD, "--insecure"],
    );
    assert!(ok, "{out}");
    let (ok, out) = rancherctl(&home, &["cluster", "create", "solo", "--rke", yml.to_str().unwrap()]);
    assert!(ok, "{out}");
    // One host holds every role: the server warns that this is not the recommended split.
    assert!(out.contains("recommended"), "{out}");

    let row = wait_state(&home, "solo", "active", UP).await;
    assert_eq!(row[3], "v1.20.2", "{row:?}");
    // The node count follows once the simulated kubelet has registered its Node.
    eventually(WAIT, "solo reports one node", || {
        let row = cluster_row(&home, "solo");
        async move { row.filter(|r| r.get(4).map(String::as_str) == Some("1")) }
    })
    .await;

    // `cluster get` shows each provisioning step, one per host.
    let (ok, shown) = rancherctl(&home, &["cluster", "get", "solo"]);
    assert!(ok, "{shown}");
    for step in ["certificates", "host node1", "node agents", "etcd", "control plane", "workers"] {
        assert!(shown.lines().any(|l| l.starts_with(step) && l.contains("Done")), "{step}: {shown}");
    }

    // kubectl through the proxy, against the real API server; the real scheduler places the pods on
    // the simulated kubelet.
    let (ok, kubeconfig) = rancherctl(&home, &["kubeconfig", "solo"]);
    assert!(ok, "{kubeconfig}");
    for version in ["1.27", "1.33"] {
        let k = Kubectl::new(version, &kubeconfig);
        let nodes = k.ok(&["get", "nodes", "-o", "wide"]).await;
        assert!(nodes.contains("node1") && nodes.contains(" Ready"), "{nodes}");
    }
    let k = Kubectl::new("1.33", &kubeconfig);
    k.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=2"]).await;
    k.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]).await;
    let pods = k.ok(&["get", "pods", "-o", "wide"]).await;
    assert_eq!(pods.lines().filter(|l| l.contains("Running") && l.contains("node1")).count(), 2, "{pods}");

    // A component that dies is restarted by the node agent, and the cluster serves again.
    let host = &hosts.hosts()[0];
    let before = kill_in_host(host, &["opt/rke/bin/kube-apiserver", "opt/rke/bin/etcd"]);
    assert_eq!(before.len(), 2, "one etcd and one API server were running: {before:?}");
    let kubeconfig_file = dir.path().join("solo.kubeconfig");
    std::fs::write(&kubeconfig_file, &kubeconfig).unwrap();
    eventually(UP, "the API server answers again through the proxy", || {
        let k = Kubectl::at("1.33", &kubeconfig_file, &home);
        async move { k.run(&["get", "deployment", "web"]).await.ok.then_some(()) }
    })
    .await;
}
