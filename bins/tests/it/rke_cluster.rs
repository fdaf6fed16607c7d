//! A cluster built on SSH hosts, end to end with real programs: OpenSSH hosts in network namespaces,
//! `rancher-server` with a bundle of the real etcd 3.4 and kube-apiserver / controller-manager /
//! scheduler 1.20, `rancherctl cluster create --rke cluster.yml`, node agents bootstrapped over SSH
//! that run their plans, simulated kubelets, and kubectl through the server's proxy.

use std::time::Duration;

use rancher_test_support::kubectl::Kubectl;
use rancher_test_support::ssh_hosts::SshHosts;

use crate::import_support::*;
use crate::rke_support::*;

/// From `create` to Active: SSH, ~400 MB of binaries per control-plane host, etcd, the API server.
const UP: Duration = Duration::from_secs(600);

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
