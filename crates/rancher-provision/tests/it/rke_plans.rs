//! The cluster PKI and the per-host plans, applied on this machine and run by the real etcd 3.4 and
//! kube-apiserver / kube-controller-manager / kube-scheduler 1.20.2. Each "host" is its own loopback
//! address (all of 127/8 is local on Linux) with its own prefix path, so the default ports do not clash.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rancher_core::model::{RkeConfig, RkeNode};
use rancher_provision::cluster_pki::{self, ClusterPki};
use rancher_provision::plan::NodePlan;
use rancher_provision::rke_plans::{ClusterAgent, ComponentPaths, admin_kubeconfig, render_plans};
use rancher_test_support::kubectl::Kubectl;
use rancher_test_support::{eventually, free_port};

use super::applier::{Applied, apply, real_binaries};

/// The control planes of two tests on two shared cores would starve each other: one at a time.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a loaded two-core machine may take to bring a control plane up.
const READY: Duration = Duration::from_secs(400);

/// A /24-sized block of loopback addresses no other test process uses: derived from a port reserved
/// with `free_port` (unique across test processes while this one runs).
fn loopback_block() -> String {
    let p = free_port();
    format!("127.{}.{}", p >> 8, p & 0xff)
}

fn node(address: &str, roles: &[&str]) -> RkeNode {
    RkeNode {
        address: address.into(),
        hostname_override: format!("node-{}", address.rsplit('.').next().unwrap_or_default()),
        role: roles.iter().map(|r| (*r).to_owned()).collect(),
        labels: BTreeMap::from([("tier".to_owned(), "test".to_owned())]),
        ..Default::default()
    }
}

/// A cluster of `nodes` whose hosts all live in `dir/<node name>` (their prefix paths); the API
/// servers publish no loopback Endpoints (Kubernetes rejects 127/8 there).
fn config(nodes: Vec<RkeNode>) -> RkeConfig {
    let mut cfg = RkeConfig { nodes, ..Default::default() };
    cfg.services.kube_api.extra_args.insert("endpoint-reconciler-type".into(), "none".into());
    cfg
}

/// Renders each host's plan with its own prefix path (the configuration's one prefix, per host).
fn plans_per_host(
    cfg: &RkeConfig,
    pki: &ClusterPki,
    binaries: &ComponentPaths,
    dir: &Path,
) -> BTreeMap<String, NodePlan> {
    let mut out = BTreeMap::new();
    for n in &cfg.nodes {
        let mut own = cfg.clone();
        own.prefix_path = dir.join(&n.hostname_override).to_string_lossy().into_owned();
        let mut plans = render_plans(&own, pki, binaries).expect("render");
        out.insert(n.hostname_override.clone(), plans.remove(&n.hostname_override).expect("a plan per node"));
    }
    out
}

fn client(pki: &ClusterPki, ca: &str, cert: Option<&str>) -> reqwest::Client {
    rancher_test_support::install_crypto();
    let mut b = reqwest::Client::builder()
        .tls_certs_only(
            reqwest::Certificate::from_pem_bundle(pki.get(ca).unwrap().cert_pem.as_bytes()).unwrap(),
        )
        .timeout(Duration::from_secs(20));
    if let Some(name) = cert {
        let c = pki.get(name).unwrap();
        let pem = format!("{}{}", c.cert_pem, c.key_pem.expose());
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn get(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let r = client.get(url).send().await.ok()?;
    Some((r.status().as_u16(), r.text().await.unwrap_or_default()))
}

/// Waits until every etcd member answers healthy, then checks the member list has `members` entries.
async fn assert_etcd(pki: &ClusterPki, addrs: &[&str], members: usize, hosts: &mut [Applied]) {
    // Any etcd client certificate will do: the API server's.
    let c = client(pki, cluster_pki::ETCD_CA, Some(cluster_pki::APISERVER_ETCD_CLIENT));
    for a in addrs {
        let url = format!("https://{a}:2379/health");
        eventually(READY, &format!("etcd at {a} is healthy"), || {
            hosts.iter_mut().for_each(Applied::assert_running);
            async {
                get(&c, &url).await.filter(|(s, body)| *s == 200 && body.contains("\"health\":\"true\""))
            }
        })
        .await;
    }
    let r =
        c.post(format!("https://{}:2379/v3/cluster/member/list", addrs[0])).body("{}").send().await.unwrap();
    let list: serde_json::Value = r.json().await.unwrap();
    let names: Vec<&str> =
        list["members"].as_array().unwrap().iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(names.len(), members, "{list}");
    // Clients without a certificate of the etcd CA are refused.
    let anonymous = client(pki, cluster_pki::ETCD_CA, None);
    assert!(
        get(&anonymous, &format!("https://{}:2379/health", addrs[0])).await.is_none_or(|(s, _)| s != 200)
    );
}

/// Waits until every API server is ready for the admin, and checks it refuses anonymous requests.
async fn assert_apiservers(pki: &ClusterPki, addrs: &[&str], hosts: &mut [Applied]) {
    let admin = client(pki, cluster_pki::KUBE_CA, Some(cluster_pki::ADMIN));
    let anonymous = client(pki, cluster_pki::KUBE_CA, None);
    for a in addrs {
        let url = format!("https://{a}:6443/readyz");
        eventually(READY, &format!("the API server at {a} is ready"), || {
            hosts.iter_mut().for_each(Applied::assert_running);
            async { get(&admin, &url).await.filter(|(s, body)| *s == 200 && body == "ok") }
        })
        .await;
        let (status, body) = get(&anonymous, &url).await.expect("an answer");
        assert_eq!(status, 401, "anonymous /readyz on {a}: {body}");
    }
}

/// The controller manager and the scheduler each hold their lease in kube-system.
async fn assert_leases(kubectl: &Kubectl, hosts: &mut [Applied]) {
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        eventually(READY, &format!("{lease} holds its lease"), || {
            hosts.iter_mut().for_each(Applied::assert_running);
            async {
                let out = kubectl
                    .run(&[
                        "get",
                        "lease",
                        "-n",
                        "kube-system",
                        lease,
                        "-o",
                        "jsonpath={.spec.holderIdentity}",
                    ])
                    .await;
                (out.ok && !out.stdout.trim().is_empty()).then_some(out.stdout)
            }
        })
        .await;
    }
}

fn kubelet_args(plan: &NodePlan) -> Vec<String> {
    plan.processes.iter().find(|p| p.name == "kubelet").expect("a kubelet on every host").args.clone()
}

fn kubectl_for(pki: &ClusterPki, cfg: &RkeConfig, dir: &Path, server_addr: &str) -> Kubectl {
    let yaml = admin_kubeconfig(cfg, pki, &format!("https://{server_addr}:6443")).unwrap();
    let path = dir.join(format!("kube_config_{server_addr}.yml"));
    std::fs::write(&path, yaml).unwrap();
    Kubectl::at("1.33", &path, &dir.join(format!("home-{server_addr}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_with_every_role_runs_a_cluster() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let a = format!("{}.11", loopback_block());
    let cfg = config(vec![node(&a, &["etcd", "controlplane", "worker"])]);
    let mut pki = ClusterPki::new();
    assert!(pki.ensure(&cfg).unwrap());
    let mut binaries = real_binaries();
    binaries.cluster_agent = Some(ClusterAgent {
        binary: "/usr/local/bin/rancher-agent".into(),
        server_url: "https://rancher.invalid".into(),
        ca_checksum: String::new(),
        token: "registration-token".to_owned().into(),
    });
    let plans = plans_per_host(&cfg, &pki, &binaries, dir.path());
    let plan = &plans["node-11"];
    let names: Vec<&str> = plan.processes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "cluster-agent"]
    );
    let args = kubelet_args(plan);
    let prefix = dir.path().join("node-11");
    assert_eq!(args[0], "kubelet");
    for want in [
        format!("--kubeconfig={}/etc/kubernetes/ssl/kubecfg-kubelet.yaml", prefix.display()),
        "--hostname-override=node-11".into(),
        format!("--node-ip={a}"),
        "--node-labels=tier=test".into(),
    ] {
        assert!(args.contains(&want), "{want} not in {args:?}");
    }
    assert!(
        !args.iter().any(|a| a.starts_with("--register-with-taints")),
        "a worker is not tainted: {args:?}"
    );

    let mut hosts = vec![apply("node-11", plan, &dir.path().join("logs"), &["kubelet", "cluster-agent"])];
    assert_etcd(&pki, &[&a], 1, &mut hosts).await;
    assert_apiservers(&pki, &[&a], &mut hosts).await;
    let kubectl = kubectl_for(&pki, &cfg, dir.path(), &a);
    kubectl.ok(&["create", "namespace", "x"]).await;
    assert!(kubectl.ok(&["get", "namespace", "x", "-o", "name"]).await.contains("namespace/x"));
    assert_leases(&kubectl, &mut hosts).await;
    // Their /healthz answers anyone (`--authorization-always-allow-paths` defaults to /healthz), over
    // their own self-signed serving certificates.
    let insecure = rancher_test_support::insecure_client();
    for port in [10257, 10259] {
        let (status, body) = get(&insecure, &format!("https://{a}:{port}/healthz")).await.expect("an answer");
        assert_eq!((status, body.as_str()), (200, "ok"), "port {port}");
    }

    // The cluster agent's kubeconfig (files on the host) reaches the API server as an administrator.
    let agent = plan.processes.iter().find(|p| p.name == "cluster-agent").unwrap();
    assert_eq!(agent.env["CATTLE_CLUSTER"], "true");
    let agent_kubeconfig = Path::new(&agent.args[1]);
    assert!(agent_kubeconfig.starts_with(&prefix), "{agent:?}");
    let agent_kubectl = Kubectl::at("1.33", agent_kubeconfig, &dir.path().join("home-agent"));
    assert_eq!(agent_kubectl.ok(&["auth", "can-i", "*", "*"]).await.trim(), "yes");
    drop(hosts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_control_plane_hosts_and_a_worker_run_one_cluster() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let block = loopback_block();
    let addr = |n: u8| format!("{block}.{n}");
    let (a1, a2, a3, w) = (addr(11), addr(12), addr(13), addr(14));
    let cfg = config(vec![
        node(&a1, &["etcd", "controlplane"]),
        node(&a2, &["etcd", "controlplane"]),
        node(&a3, &["etcd", "controlplane"]),
        node(&w, &["worker"]),
    ]);
    let mut pki = ClusterPki::new();
    assert!(pki.ensure(&cfg).unwrap());
    let plans = plans_per_host(&cfg, &pki, &real_binaries(), dir.path());

    // The worker runs only a kubelet, talking to the first API server, with only what it needs.
    let worker = &plans["node-14"];
    assert_eq!(worker.processes.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["kubelet"]);
    let files: Vec<&str> = worker.files.iter().map(|f| f.path.rsplit('/').next().unwrap()).collect();
    assert_eq!(files, ["kube-ca.pem", "kube-node.pem", "kube-node-key.pem", "kubecfg-kubelet.yaml"]);
    let args = kubelet_args(worker);
    assert!(args.contains(&"--node-labels=tier=test".to_owned()), "{args:?}");
    let kubelet_cfg = worker.files.iter().find(|f| f.path.ends_with("kubecfg-kubelet.yaml")).unwrap();
    let kubelet_cfg = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &kubelet_cfg.content).unwrap(),
    )
    .unwrap();
    assert!(kubelet_cfg.contains(&format!("server: \"https://{a1}:6443\"")), "{kubelet_cfg}");
    // Control-plane and etcd hosts that are not workers carry Rancher's taints.
    let args = kubelet_args(&plans["node-12"]);
    assert!(
        args.contains(
            &"--register-with-taints=node-role.kubernetes.io/controlplane=true:NoSchedule,\
              node-role.kubernetes.io/etcd=true:NoExecute"
                .to_owned()
        ),
        "{args:?}"
    );

    let logs = dir.path().join("logs");
    let mut hosts: Vec<Applied> = ["node-11", "node-12", "node-13", "node-14"]
        .into_iter()
        .map(|n| apply(n, &plans[n], &logs, &["kubelet"]))
        .collect();
    assert_etcd(&pki, &[&a1, &a2, &a3], 3, &mut hosts).await;
    assert_apiservers(&pki, &[&a1, &a2, &a3], &mut hosts).await;

    let first = kubectl_for(&pki, &cfg, dir.path(), &a1);
    let third = kubectl_for(&pki, &cfg, dir.path(), &a3);
    first.ok(&["create", "namespace", "x"]).await;
    let got = third.run(&["get", "namespace", "x", "-o", "jsonpath={.metadata.name}"]).await;
    assert!(got.ok && got.stdout == "x", "{got:?}");
    assert_leases(&third, &mut hosts).await;

    // The controller manager made the namespace's service account, and the API server issues it a
    // bound token (TokenRequest needs the service-account issuer and signing key).
    let token = eventually(READY, "a token for x/default", || async {
        let out = third.run(&["create", "token", "default", "-n", "x"]).await;
        (out.ok && out.stdout.split('.').count() == 3).then_some(out.stdout)
    })
    .await;
    assert!(!token.is_empty());

    // The worker's kubelet kubeconfig (its files on its host) authenticates as its Node: it may read
    // Nodes (the Node authorizer) but not create namespaces.
    let kubelet = Kubectl::at(
        "1.33",
        &dir.path().join("node-14/etc/kubernetes/ssl/kubecfg-kubelet.yaml"),
        &dir.path().join("home-kubelet"),
    );
    kubelet.ok(&["get", "nodes"]).await;
    let denied = kubelet.fails(&["create", "namespace", "y"]).await;
    assert!(
        denied.stderr.contains("\"system:node:node-14\" cannot create resource \"namespaces\""),
        "{denied:?}"
    );
    drop(hosts);
}
