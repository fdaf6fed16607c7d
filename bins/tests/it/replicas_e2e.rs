//! Two `rancher-server` replicas on one etcd, a `rancher-sim` cluster imported through one of them and
//! owned by the other: the agent's session is spliced through to the owner, `kubectl` works through
//! either replica (reads, a watch, exec), and when the owner stops, the other takes the cluster over
//! and the agent comes back to it. Needs `etcd` on PATH.
#![cfg(feature = "etcd")]

use std::path::Path;
use std::process::Command;

use rancher_test_support::etcd::Etcd;
use sha2::{Digest, Sha256};

use crate::import_support::*;

/// The rendezvous rule the servers use: the replica with the highest `SHA-256(name ‖ 0 ‖ cluster)`.
pub(crate) fn owner<'a>(cluster: &str, replicas: &[&'a str]) -> &'a str {
    replicas
        .iter()
        .max_by_key(|r| {
            let d =
                Sha256::new().chain_update(r.as_bytes()).chain_update([0]).chain_update(cluster).finalize();
            u64::from_be_bytes(d[..8].try_into().unwrap())
        })
        .unwrap()
}

/// The value of the unlabelled metric `name` on the server at `url`.
pub(crate) async fn metric(url: &str, name: &str) -> Option<u64> {
    let text = insecure_client().get(format!("{url}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')).and_then(|n| n.trim().parse().ok())
}

pub(crate) async fn replicas_live(url: &str) -> Option<u64> {
    metric(url, "rancher_replicas_live").await
}

fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new(kubectl()).arg("--kubeconfig").arg(kubeconfig).args(args).output().unwrap();
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two replicas on one etcd, each counting the other; `a` also gets `a_extra`.
struct Pair {
    a: Server,
    b: Server,
    /// Their names (`replica-id`), for the rendezvous rule.
    names: (String, String),
    dir: tempfile::TempDir,
    _etcd: Etcd,
}

async fn two_replicas(a_extra: &[&str]) -> Pair {
    install_crypto();
    let etcd = Etcd::start(1).await;
    let endpoint = etcd.endpoints().remove(0);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("secrets.key");
    std::fs::write(&key, [4u8; 32]).unwrap();
    let args = [
        "--store",
        "etcd",
        "--etcd-endpoints",
        endpoint.as_str(),
        "--secrets-key-file",
        key.to_str().unwrap(),
    ];
    let a_args: Vec<&str> = args.iter().chain(a_extra).copied().collect();
    let a = Server::start(&dir.path().join("a"), 0, &dir.path().join("a.log"), &a_args).await;
    let b = Server::start(&dir.path().join("b"), 0, &dir.path().join("b.log"), &args).await;
    for s in [&a, &b] {
        eventually(WAIT, "both replicas count each other", || async {
            (replicas_live(&s.url).await == Some(2)).then_some(())
        })
        .await;
    }
    let name_of = |s: &Server| std::fs::read_to_string(s.data_dir.join("replica-id")).unwrap();
    let names = (name_of(&a), name_of(&b));
    Pair { a, b, names, dir, _etcd: etcd }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_served_through_either_replica_and_handed_over_when_its_owner_stops() {
    let Pair { a, b, names: (name_a, name_b), dir, _etcd } = two_replicas(&[]).await;
    // A cluster the agent reaches through a, owned by b.
    let cluster = (0..).map(|i| format!("ha-{i}")).find(|c| owner(c, &[&name_a, &name_b]) == name_b).unwrap();

    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    login_admin(&home, &a.url);
    let (ok, out) = rancherctl(&home, &["cluster", "create", &cluster, "--import"]);
    assert!(ok, "{out}");
    let url = out
        .split_whitespace()
        .find(|w| w.starts_with("https://") && w.ends_with(".yaml"))
        .unwrap()
        .to_owned();
    let sim = rancher_sim::Sim::builder().name("sim-ha").nodes(3).start().await.unwrap();
    let sim_kc = dir.path().join("sim.kubeconfig");
    std::fs::write(&sim_kc, sim.kubeconfig_yaml()).unwrap();
    let env = apply_manifest(&url, &sim_kc, dir.path()).await;
    assert_eq!(env.server, a.url, "the agent dials a");
    let _agent = start_agent(&env, &sim_kc, &dir.path().join("agent.log"), &[]);
    wait_state(&home, &cluster, "active", WAIT).await;
    // The session is b's: a spliced it through.
    let (a_log, b_log) = (dir.path().join("a.log"), dir.path().join("b.log"));
    eventually(WAIT, "b holds the agent's session", || {
        let (a_text, b_text) = (read_log(&a_log), read_log(&b_log));
        let cluster = cluster.clone();
        async move {
            (b_text.contains(&format!("tunnel agent authorized client_key={cluster}"))
                && a_text.contains("a cluster agent's session goes to the replica that owns its cluster"))
            .then_some(())
        }
    })
    .await;
    // The cluster's Default and System projects were made once, by the leader alone (not by every
    // replica, relying on the removal of duplicates afterwards).
    eventually(WAIT, "the cluster's namespaces are in its System project", || {
        let b_text = read_log(&b_log);
        async move { b_text.contains("namespace put into the System project").then_some(()) }
    })
    .await;
    let a_leads = metric(&a.url, "rancher_controllers_leader").await == Some(1);
    let (leader_log, other_log) = if a_leads { (&a_log, &b_log) } else { (&b_log, &a_log) };
    let (leader_text, other_text) = (read_log(leader_log), read_log(other_log));
    for special in ["Default", "System"] {
        let made = format!("created the {special} project");
        assert_eq!(leader_text.matches(&made).count(), 1, "{special} projects made by the leader");
        assert!(!other_text.contains(&made), "the other replica made a {special} project");
    }
    assert!(!(leader_text + &other_text).contains("removing a duplicate"), "no duplicate to remove");

    // kubectl through either replica: the kubeconfig names a; the same with b's URL.
    let (ok, kc_a) = rancherctl(&home, &["kubeconfig", &cluster]);
    assert!(ok, "{kc_a}");
    let via_a = dir.path().join("via-a.kubeconfig");
    let via_b = dir.path().join("via-b.kubeconfig");
    std::fs::write(&via_a, &kc_a).unwrap();
    std::fs::write(&via_b, kc_a.replace(&a.url, &b.url)).unwrap();
    for kc in [&via_a, &via_b] {
        assert_eq!(kubectl_ok(kc, &["get", "nodes", "--no-headers"]).lines().count(), 3);
    }
    // exec is an upgrade: through a it takes its own connection to b, spliced.
    kubectl_ok(&via_a, &["run", "shell", "--image=busybox", "--restart=Never"]);
    eventually(WAIT, "the pod runs", || {
        let phase = kubectl_ok(&via_a, &["get", "pod", "shell", "-o", "jsonpath={.status.phase}"]);
        async move { (phase == "Running").then_some(()) }
    })
    .await;
    assert_eq!(kubectl_ok(&via_a, &["exec", "shell", "--", "echo", "through a"]), "through a\n");

    // b stops: a owns everything, the agent comes back (to a) and kubectl through a works again.
    let stopped = tokio::time::Instant::now();
    b.stop().await;
    eventually(WAIT, "the cluster is served through a again", || {
        let out = Command::new(kubectl())
            .arg("--kubeconfig")
            .arg(&via_a)
            .args(["get", "nodes", "--no-headers"])
            .output()
            .unwrap();
        async move {
            (out.status.success() && String::from_utf8_lossy(&out.stdout).lines().count() == 3).then_some(())
        }
    })
    .await;
    eprintln!(
        "the cluster was served again through the other replica {:?} after its owner stopped",
        stopped.elapsed()
    );
    assert!(read_log(&a_log).contains(&format!("tunnel agent authorized client_key={cluster}")));
    a.stop().await;
    sim.shutdown().await;
}

/// A session spliced through to its owner waits in one queue, the owner's: the replica an agent
/// lands on admits only the sessions it will hold. Here the door admits one session a second; four
/// agents whose clusters the other replica owns dial it at once, and it sends none of them away (it
/// sent them back to wait before, each then queued by the owner as well).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_spliced_through_is_admitted_by_its_owner_alone() {
    let Pair { a, b, names: (name_a, name_b), dir, _etcd } =
        two_replicas(&["--agent-connect-rate", "1"]).await;
    let clusters: Vec<String> = (0..)
        .map(|i| format!("queue-{i}"))
        .filter(|c| owner(c, &[&name_a, &name_b]) == name_b)
        .take(4)
        .collect();

    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    login_admin(&home, &a.url);
    let mut sims = Vec::new();
    let mut envs = Vec::new();
    for cluster in &clusters {
        let (ok, out) = rancherctl(&home, &["cluster", "create", cluster, "--import"]);
        assert!(ok, "{out}");
        let url = out.split_whitespace().find(|w| w.starts_with("https://") && w.ends_with(".yaml")).unwrap();
        let sim = rancher_sim::Sim::builder().name(format!("sim-{cluster}")).nodes(1).start().await.unwrap();
        let kc = dir.path().join(format!("{cluster}.kubeconfig"));
        std::fs::write(&kc, sim.kubeconfig_yaml()).unwrap();
        let env = apply_manifest(url, &kc, dir.path()).await;
        assert_eq!(env.server, a.url, "the agents dial a");
        envs.push((env, kc, dir.path().join(format!("{cluster}-agent.log"))));
        sims.push(sim);
    }
    let _agents: Vec<_> = envs.iter().map(|(env, kc, log)| start_agent(env, kc, log, &[])).collect();
    for cluster in &clusters {
        wait_state(&home, cluster, "active", WAIT).await;
    }
    let b_log = read_log(&dir.path().join("b.log"));
    for cluster in &clusters {
        assert!(
            b_log.contains(&format!("tunnel agent authorized client_key={cluster}")),
            "b holds {cluster}"
        );
    }
    let deferred = metric(&a.url, "rancher_agent_connects_deferred_total").await;
    assert_eq!(deferred, Some(0), "the door queued sessions it did not hold");
    a.stop().await;
    b.stop().await;
    for sim in sims {
        sim.shutdown().await;
    }
}
