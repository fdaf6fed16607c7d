//! `rancher-sim kubelet` against a real Kubernetes 1.20 control plane (etcd, kube-apiserver with the
//! Node authorizer and NodeRestriction, kube-controller-manager, kube-scheduler): two simulated
//! kubelets register Ready nodes, run what the real scheduler binds to them, keep their Leases so the
//! node lifecycle controller leaves them Ready, and touch nothing but their own node.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rancher_test_support::kube::{ControlPlane, Options};
use rancher_test_support::{Proc, eventually, kubectl::Kubectl};

/// The controller-manager's grace period in this test, and the kubelets' Lease duration: a Lease
/// renewed every 5 s (a quarter of it) keeps a node Ready under a 20 s grace period.
const GRACE: Duration = Duration::from_secs(20);

fn rancher_sim() -> &'static str {
    env!("CARGO_BIN_EXE_rancher-sim")
}

fn kubelet(cp: &ControlPlane, dir: &Path, name: &str, ip: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(rancher_sim());
    cmd.arg("kubelet")
        .arg("--kubeconfig")
        .arg(cp.node_kubeconfig(name))
        .args(["--hostname-override", name, "--node-ip", ip])
        .args(["--node-lease-duration-seconds", &GRACE.as_secs().to_string()])
        .args(["--node-status-update-frequency", "5s"])
        // Real kubelet flags the simulated one accepts and ignores.
        .args(["--v=2", "--cluster-dns", "10.43.0.10", "--fail-swap-on=false"])
        .args(extra);
    Proc::spawn(cmd, &dir.join(format!("kubelet-{name}.log")))
}

const SPREAD: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: spread, namespace: default}
spec:
  replicas: 4
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      tolerations: [{key: dedicated, operator: Equal, value: db, effect: NoSchedule}]
      initContainers: [{name: setup, image: "busybox:1.36", command: [sh, -c, "true"]}]
      containers: [{name: web, image: "nginx:1.25"}, {name: sidecar, image: "busybox:1.36"}]
"#;

const PLAIN: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: plain, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: plain}}
  template:
    metadata: {labels: {app: plain}}
    spec: {containers: [{name: web, image: "nginx:1.25"}]}
"#;

async fn node_field(k: &Kubectl, node: &str, jsonpath: &str) -> String {
    let o = k.run(&["get", "node", node, "-o", &format!("jsonpath={jsonpath}")]).await;
    if o.ok { o.stdout } else { String::new() }
}

async fn ready(k: &Kubectl, node: &str) -> String {
    node_field(k, node, r#"{.status.conditions[?(@.type=="Ready")].status}"#).await
}

/// `node -> [pod IPs]` of the Running, ready pods with `selector`.
async fn placement(k: &Kubectl, selector: &str) -> Vec<(String, String, String)> {
    let out = k
        .ok(&[
            "get",
            "pods",
            "-l",
            selector,
            "-o",
            r#"jsonpath={range .items[*]}{.spec.nodeName} {.status.podIP} {.status.phase}/{.status.containerStatuses[*].ready}{"\n"}{end}"#,
        ])
        .await;
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_owned(), f.next()?.to_owned(), f.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    // The controller-manager hands out /24s: the first three octets match.
    let prefix: Vec<&str> = cidr.split('.').take(3).collect();
    cidr.ends_with(".0/24") && ip.split('.').take(3).eq(prefix.iter().copied())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_kubelets_run_a_real_control_planes_pods() {
    let cp =
        ControlPlane::start_with(Options { node_monitor_grace_period: GRACE, ..Default::default() }).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let k = Kubectl::at("1.33", &cp.admin_kubeconfig(), &dir.path().join("home"));
    let mut a = kubelet(&cp, dir.path(), "sim-a", "127.0.0.11", &["--node-labels", "pool=a,tier=web"]);
    let b = kubelet(
        &cp,
        dir.path(),
        "sim-b",
        "127.0.0.12",
        &["--node-labels", "pool=b", "--register-with-taints", "dedicated=db:NoSchedule", "--sim-cpu", "8"],
    );
    let logs = |p: &Proc| format!("{}\n{}", p.log_text(), cp.logs());

    // Both nodes Ready, with their labels, taints, capacity, addresses and pod CIDRs.
    for n in ["sim-a", "sim-b"] {
        eventually(Duration::from_secs(90), &format!("{n} is Ready"), || async {
            (ready(&k, n).await == "True").then_some(())
        })
        .await;
    }
    let nodes =
        k.ok(&["get", "nodes", "-L", "pool,kubernetes.io/os,kubernetes.io/arch", "--no-headers"]).await;
    let row = |n: &str| nodes.lines().find(|l| l.starts_with(n)).unwrap_or_default().to_owned();
    for (n, pool) in [("sim-a", "a"), ("sim-b", "b")] {
        let line = row(n);
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols.get(1), Some(&"Ready"), "{nodes}");
        assert_eq!(cols.get(4), Some(&"v1.20.2"), "kubelet version is the API server's: {nodes}");
        assert_eq!(&cols[5..], [pool, "linux", "amd64"], "{nodes}");
    }
    assert_eq!(node_field(&k, "sim-a", "{.metadata.labels.tier}").await, "web");
    assert_eq!(node_field(&k, "sim-a", "{.spec.taints}").await, "");
    assert_eq!(
        node_field(&k, "sim-b", "{range .spec.taints[*]}{.key}={.value}:{.effect}{end}").await,
        "dedicated=db:NoSchedule"
    );
    assert_eq!(node_field(&k, "sim-b", "{.status.capacity.cpu} {.status.allocatable.pods}").await, "8 110");
    assert_eq!(
        node_field(&k, "sim-a", "{.status.addresses[0].type}={.status.addresses[0].address}").await,
        "InternalIP=127.0.0.11"
    );
    let cidr_a = eventually(Duration::from_secs(30), "sim-a has a pod CIDR", || async {
        Some(node_field(&k, "sim-a", "{.spec.podCIDR}").await).filter(|c| c.starts_with("10.42."))
    })
    .await;

    // From here on, sim-a's Ready condition is sampled; it must never leave True while its kubelet runs.
    let samples: Arc<Mutex<Vec<String>>> = Arc::default();
    let sampling = {
        let (samples, k2) =
            (samples.clone(), Kubectl::at("1.33", &cp.admin_kubeconfig(), &dir.path().join("home2")));
        tokio::spawn(async move {
            loop {
                let r = ready(&k2, "sim-a").await;
                samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(r);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let sampling_since = Instant::now();

    // The real scheduler spreads a tolerating Deployment over both nodes; all of it runs and is ready.
    let manifests = dir.path().join("spread.yaml");
    std::fs::write(&manifests, SPREAD).expect("write manifest");
    k.ok(&["apply", "-f", &manifests.to_string_lossy()]).await;
    let rollout = k.run(&["rollout", "status", "deployment/spread", "--timeout=90s"]).await;
    assert!(rollout.ok, "rollout: {rollout:?}\n{}", logs(&a));
    let pods = placement(&k, "app=spread").await;
    assert_eq!(pods.len(), 4, "{pods:?}");
    for n in ["sim-a", "sim-b"] {
        assert!(pods.iter().any(|(node, ..)| node == n), "no pod on {n}: {pods:?}");
    }
    let cidr_b = node_field(&k, "sim-b", "{.spec.podCIDR}").await;
    for (node, ip, state) in &pods {
        assert_eq!(state, "Running/true true", "{pods:?}");
        let cidr = if node == "sim-a" { &cidr_a } else { &cidr_b };
        assert!(in_cidr(ip, cidr), "pod IP {ip} is not in {node}'s pod CIDR {cidr}");
    }
    let mut ips: Vec<&String> = pods.iter().map(|(_, ip, _)| ip).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 4, "pod IPs are distinct: {pods:?}");
    let wide = k.ok(&["get", "pods", "-l", "app=spread", "--no-headers"]).await;
    assert_eq!(wide.lines().filter(|l| l.contains(" 2/2 ") && l.contains("Running")).count(), 4, "{wide}");
    let one = k.ok(&["get", "pods", "-l", "app=spread", "-o", "jsonpath={.items[0]}"]).await;
    let pod: serde_json::Value = serde_json::from_str(&one).expect("pod JSON");
    let s = &pod["status"];
    assert_eq!(s["initContainerStatuses"][0]["state"]["terminated"]["reason"], "Completed", "{s}");
    assert!(s["containerStatuses"][0]["containerID"].as_str().unwrap_or("").starts_with("sim://"), "{s}");
    assert!(
        s["startTime"].is_string() && s["hostIP"].as_str().is_some_and(|ip| ip.starts_with("127.0.0.1")),
        "{s}"
    );
    for c in ["Initialized", "Ready", "ContainersReady", "PodScheduled"] {
        let cond = s["conditions"].as_array().into_iter().flatten().find(|x| x["type"] == c);
        assert_eq!(cond.map(|x| x["status"].clone()), Some("True".into()), "{c}: {s}");
    }

    // Without a toleration, nothing goes to the tainted node.
    let plain = dir.path().join("plain.yaml");
    std::fs::write(&plain, PLAIN).expect("write manifest");
    k.ok(&["apply", "-f", &plain.to_string_lossy()]).await;
    let rollout = k.run(&["rollout", "status", "deployment/plain", "--timeout=90s"]).await;
    assert!(rollout.ok, "rollout: {rollout:?}");
    let pods = placement(&k, "app=plain").await;
    assert_eq!(pods.len(), 3, "{pods:?}");
    assert!(pods.iter().all(|(node, ..)| node == "sim-a"), "a pod went to the tainted node: {pods:?}");

    // Scaling down: the removed pods are stopped and deleted by their kubelets, and vanish.
    k.ok(&["scale", "deployment/spread", "--replicas=1"]).await;
    eventually(Duration::from_secs(60), "spread is down to one pod", || async {
        let o = k.ok(&["get", "pods", "-l", "app=spread", "-o", "name"]).await;
        (o.lines().count() == 1).then_some(())
    })
    .await;
    assert!(
        a.log_text().contains("pod stopped and deleted") || b.log_text().contains("pod stopped and deleted")
    );

    // The Lease is renewed: its renewTime moves on.
    let renew = || async {
        k.ok(&[
            "-n",
            "kube-node-lease",
            "get",
            "lease",
            "sim-a",
            "-o",
            "jsonpath={.spec.renewTime} {.spec.holderIdentity}",
        ])
        .await
    };
    let first = renew().await;
    assert!(first.ends_with(" sim-a"), "{first}");
    eventually(Duration::from_secs(20), "sim-a's lease is renewed", || async {
        let now = renew().await;
        (now != first).then_some(())
    })
    .await;

    // A kubelet may change its own node, and no other (the Node authorizer and NodeRestriction).
    let as_a = Kubectl::at("1.33", &cp.node_kubeconfig("sim-a"), &dir.path().join("home-a"));
    as_a.ok(&["label", "node", "sim-a", "checked=yes"]).await;
    let refused = as_a.fails(&["label", "node", "sim-b", "checked=yes"]).await;
    assert!(refused.stderr.contains("forbidden"), "{refused:?}");
    let refused = as_a.fails(&["-n", "kube-node-lease", "get", "lease", "sim-b"]).await;
    assert!(refused.stderr.contains("forbidden"), "{refused:?}");

    // sim-a stayed Ready for longer than the grace period.
    while sampling_since.elapsed() < GRACE + Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    sampling.abort();
    let seen = samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    assert!(seen.len() >= 10 && seen.iter().all(|r| r == "True"), "sim-a's Ready over time: {seen:?}");

    // A killed kubelet's node goes NotReady (Unknown), only once the grace period has passed since
    // its last Lease renewal (which is no earlier than the renewTime read before the kill).
    let renewed =
        k.ok(&["-n", "kube-node-lease", "get", "lease", "sim-b", "-o", "jsonpath={.spec.renewTime}"]).await;
    let renewed: jiff::Timestamp = renewed.trim().parse().expect("renewTime is a timestamp");
    let log_b = b.log_text();
    b.kill9().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(ready(&k, "sim-b").await, "True", "sim-b went NotReady at once");
    eventually(Duration::from_secs(60), "sim-b is NotReady", || async {
        (ready(&k, "sim-b").await == "Unknown").then_some(())
    })
    .await;
    let since = jiff::Timestamp::now().duration_since(renewed);
    let grace = jiff::SignedDuration::try_from(GRACE).expect("grace");
    assert!(since >= grace, "NotReady {since:?} after the last renewal; the grace period is {GRACE:?}");

    // A deleted Node is registered again by its kubelet.
    let uid = node_field(&k, "sim-a", "{.metadata.uid}").await;
    k.ok(&["delete", "node", "sim-a", "--wait=false"]).await;
    eventually(Duration::from_secs(60), "sim-a is registered again and Ready", || async {
        let again = node_field(&k, "sim-a", "{.metadata.uid}").await;
        (!again.is_empty() && again != uid && ready(&k, "sim-a").await == "True").then_some(())
    })
    .await;

    // No request of either kubelet was refused: they only touched their own objects.
    let log_a = a.log_text();
    for (n, log) in [("sim-a", &log_a), ("sim-b", &log_b)] {
        assert!(
            !log.contains("forbidden") && !log.contains("Forbidden"),
            "{n}'s kubelet was refused:\n{log}"
        );
        assert!(!log.contains("BEGIN") && !log.contains("PRIVATE KEY"), "{n}'s kubelet logged key material");
        assert!(
            log.contains("ignores") && log.contains("--cluster-dns"),
            "{n}: no warning for ignored flags:\n{log}"
        );
    }

    // SIGTERM: a clean exit.
    a.signal("TERM");
    let st = a.exit_within(Duration::from_secs(15)).await;
    assert!(st.is_some_and(|s| s.success()), "sim-a's kubelet on SIGTERM: {st:?}\n{}", a.log_text());
}

#[tokio::test]
async fn bad_flags_are_refused_with_the_flag_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = dir.path().join("kc");
    std::fs::write(&kc, "apiVersion: v1\nkind: Config\n").expect("write");
    let kc = kc.to_string_lossy().into_owned();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--hostname-override", "n1", "--node-labels", "node-role.kubernetes.io/worker=true"],
            "--node-labels",
        ),
        (&["--hostname-override", "n1", "--register-with-taints", "a=b:Sometimes"], "--register-with-taints"),
        (&["--hostname-override", "Bad_Name"], "--hostname-override"),
        (&["--hostname-override", "n1", "--sim-memory", "lots"], "--sim-memory"),
        (&["--hostname-override", "n1", "--no-such-flag"], "--no-such-flag"),
    ];
    for (args, named) in cases {
        let out = Command::new(rancher_sim())
            .args(["kubelet", "--kubeconfig", &kc])
            .args(args)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(named), "{args:?}: the error does not name {named}: {err}");
    }
    let out =
        Command::new(rancher_sim()).args(["kubelet", "--hostname-override", "n1"]).output().expect("run");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--kubeconfig"));
    // A kubeconfig without a cluster is refused at start, naming the file.
    let out = Command::new(rancher_sim())
        .args(["kubelet", "--kubeconfig", &kc, "--hostname-override", "n1"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--kubeconfig") && err.contains(&kc), "{err}");
}

/// A kube-apiserver answers `403` until its authorizer has read the RBAC bindings — after its health
/// check passes — so a kubelet started right after one waits, as the real kubelet does, instead of
/// exiting; here the bindings that let every user read `/version` are taken away and given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_the_api_server_forbids_waits_and_registers_once_allowed() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let k = Kubectl::at("1.33", &cp.admin_kubeconfig(), &dir.path().join("home"));
    k.ok(&["delete", "clusterrolebinding", "system:public-info-viewer", "system:discovery"]).await;
    let mut c = kubelet(&cp, dir.path(), "sim-c", "127.0.0.13", &[]);
    eventually(Duration::from_secs(30), "the kubelet is told it may not read /version", || {
        let log = c.log_text();
        async move { log.contains("does not let this kubelet in yet").then_some(()) }
    })
    .await;
    let early = c.exit_within(Duration::from_secs(5)).await;
    assert!(early.is_none(), "the kubelet exited while forbidden: {early:?}\n{}", c.log_text());

    k.ok(&[
        "create",
        "clusterrolebinding",
        "system:public-info-viewer",
        "--clusterrole=system:public-info-viewer",
        "--group=system:authenticated",
        "--group=system:unauthenticated",
    ])
    .await;
    k.ok(&[
        "create",
        "clusterrolebinding",
        "system:discovery",
        "--clusterrole=system:discovery",
        "--group=system:authenticated",
    ])
    .await;
    eventually(Duration::from_secs(90), "sim-c is Ready", || async {
        (ready(&k, "sim-c").await == "True").then_some(())
    })
    .await;
}
