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
    let home = cli_home(dir.path(), &server.url);
    let yml = write_cluster_yml(dir.path(), &hosts, &[&["etcd", "controlplane", "worker"]]);
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

/// How long after the leader's loss a read may still be caught in the election: the members' election
/// timeout is 5 s (RKE's `election-timeout`), each follower waits 5–10 s before it stands, and a split
/// vote takes another such round.
const ELECTION: Duration = Duration::from_secs(20);

/// The recommended split on seven hosts: three etcd, two control plane, two workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_etcd_two_controlplane_two_worker_cluster_serves_through_the_loss_of_an_etcd_member_and_an_api_server()
 {
    install_crypto();
    let hosts = SshHosts::start(7);
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), hosts.hosts()[0].bridge_address()).await;
    let home = cli_home(dir.path(), &server.url);
    let (etcd, cp, worker): (&[&str], &[&str], &[&str]) = (&["etcd"], &["controlplane"], &["worker"]);
    let roles = [etcd, etcd, etcd, cp, cp, worker, worker];
    let yml = write_cluster_yml(dir.path(), &hosts, &roles);
    let (ok, out) = rancherctl(&home, &["cluster", "create", "ha", "--rke", yml.to_str().unwrap()]);
    assert!(ok, "{out}");
    // The recommended split: no warning about the topology.
    assert!(!out.contains("recommended"), "{out}");

    let row = wait_state(&home, "ha", "active", UP).await;
    assert_eq!(row[3], "v1.20.2", "{row:?}");
    eventually(WAIT, "ha reports seven nodes", || {
        let row = cluster_row(&home, "ha");
        async move { row.filter(|r| r.get(4).map(String::as_str) == Some("7")) }
    })
    .await;

    let (ok, kubeconfig) = rancherctl(&home, &["kubeconfig", "ha"]);
    assert!(ok, "{kubeconfig}");
    let kubeconfig_file = dir.path().join("ha.kubeconfig");
    std::fs::write(&kubeconfig_file, &kubeconfig).unwrap();
    // Every Node carries its host's roles (set by the server: a kubelet may not).
    eventually(WAIT, "the Nodes show their roles", || {
        let k = Kubectl::at("1.33", &kubeconfig_file, &home);
        async move {
            let out = k.run(&["get", "nodes", "--no-headers"]).await;
            let rows: Vec<(String, String)> = out
                .stdout
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    Some((f.first()?.to_string(), f.get(2)?.to_string()))
                })
                .collect();
            let want: Vec<(String, String)> =
                (1..=7).map(|i| (format!("node{i}"), roles[i - 1][0].to_owned())).collect();
            (rows == want).then_some(())
        }
    })
    .await;
    for version in ["1.27", "1.33"] {
        let k = Kubectl::new(version, &kubeconfig);
        let nodes = k.ok(&["get", "nodes"]).await;
        assert_eq!(nodes.lines().filter(|l| l.contains(" Ready ")).count(), 7, "{nodes}");
    }

    // The real scheduler places the pods on the workers: the etcd and control-plane hosts are tainted.
    let k = Kubectl::new("1.33", &kubeconfig);
    k.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=4"]).await;
    k.ok(&["rollout", "status", "deployment/web", "--timeout=180s"]).await;
    let pods = k.ok(&["get", "pods", "-o", "wide", "--no-headers"]).await;
    let placed: Vec<&str> = pods.lines().filter(|l| l.contains("Running")).collect();
    assert_eq!(placed.len(), 4, "{pods}");
    assert!(placed.iter().all(|l| l.contains("node6") || l.contains("node7")), "{pods}");

    // One etcd member and the API server the cluster agent's kubeconfig names (the first control-plane
    // host's) die; the cluster keeps serving through the proxy all along, and the node agents restart
    // both.
    let (etcd_host, api_host) = (&hosts.hosts()[0], &hosts.hosts()[3]);
    let killed_etcd = kill_in_host(etcd_host, &["opt/rke/bin/etcd"]);
    let killed_api = kill_in_host(api_host, &["opt/rke/bin/kube-apiserver"]);
    assert_eq!((killed_etcd.len(), killed_api.len()), (1, 1), "{killed_etcd:?} {killed_api:?}");
    // A read that reaches etcd while its members elect a new leader (when the killed member led)
    // fails with "leader changed", as in any Kubernetes cluster; nothing else may fail, and nothing
    // at all once the election is over.
    let k = Kubectl::at("1.33", &kubeconfig_file, &home);
    let (mut served, mut elections) = (0, 0);
    let killed_at = tokio::time::Instant::now();
    while killed_at.elapsed() < Duration::from_secs(30) {
        // A read sent during the election waits for its outcome: what counts is when it was sent.
        let sent = killed_at.elapsed();
        let out = k.run(&["get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}"]).await;
        let election = out.stderr.contains("etcdserver: leader changed");
        if !(out.ok && out.stdout.trim() == "4") {
            assert!(
                election && sent < ELECTION,
                "request {served}, sent {sent:?} after the kill, failed {:?} after it: {out:?}",
                killed_at.elapsed()
            );
            elections += 1;
        }
        served += 1;
    }
    assert!(served - elections >= 10, "only {served} requests in 30 s, {elections} failed");
    eventually(UP, "the node agents restart etcd and the API server", || {
        let (e, a) = (
            pids_in_host(etcd_host, &["opt/rke/bin/etcd"]),
            pids_in_host(api_host, &["opt/rke/bin/kube-apiserver"]),
        );
        let restarted = e.len() == 1 && a.len() == 1 && e != killed_etcd && a != killed_api;
        async move { restarted.then_some(()) }
    })
    .await;
    // Writes work too, and the restarted members take part again.
    k.ok(&["scale", "deployment", "web", "--replicas=6"]).await;
    k.ok(&["rollout", "status", "deployment/web", "--timeout=180s"]).await;
}
