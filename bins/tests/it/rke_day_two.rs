//! Day two of a cluster built on SSH hosts, end to end on the recommended 3 etcd / 2 control plane /
//! 2 worker split with real programs: `rancherctl cluster update --rke` adds a worker and an etcd
//! host, rolls the cluster to another bundle (other binaries, other flags) in the order the upgrade
//! strategy says, rotates every certificate to new CAs, and takes the added hosts away again — with
//! kubectl through the server's proxy answering all along.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rancher_provision::bundle::Bundle;
use rancher_test_support::kube::kube_bin_dir;
use rancher_test_support::kubectl::Kubectl;
use rancher_test_support::ssh_hosts::{SshHost, SshHosts};

use crate::import_support::*;
use crate::rke_support::*;

/// From `create` to Active.
const UP: Duration = Duration::from_secs(600);

const E: &[&str] = &["etcd"];
const C: &[&str] = &["controlplane"];
const W: &[&str] = &["worker"];

/// A bundle `version` of copies of the test bundle's binaries, each one byte longer (another
/// checksum: another build), and the API server run with `--v=3`; its manifest goes into `dir`.
fn write_other_bundle(dir: &Path, version: &str) {
    let kube = kube_bin_dir();
    let copies = dir.join(version);
    std::fs::create_dir_all(&copies).unwrap();
    let mut files = vec![];
    for (name, from) in [
        ("etcd", PathBuf::from("/usr/bin/etcd")),
        ("kube-apiserver", kube.join("kube-apiserver")),
        ("kube-controller-manager", kube.join("kube-controller-manager")),
        ("kube-scheduler", kube.join("kube-scheduler")),
        ("kubelet", sim_binary()),
    ] {
        let to = copies.join(name);
        let mut bytes = std::fs::read(&from).unwrap();
        bytes.push(0);
        std::fs::write(&to, bytes).unwrap();
        files.push((name, to));
    }
    files.push(("node-agent", PathBuf::from(env!("CARGO_BIN_EXE_rancher-agent"))));
    let pairs: Vec<(&str, &Path)> = files.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let mut bundle = Bundle::from_local_files(version, &pairs).unwrap();
    bundle.components.get_mut("kube-apiserver").unwrap().args.insert("v".into(), "3".into());
    std::fs::write(dir.join(format!("{version}.yaml")), bundle.to_manifest()).unwrap();
}

/// `dir/<file>` naming the first `roles.len()` hosts, with `version`.
fn write_yml(dir: &Path, hosts: &SshHosts, roles: &[&[&str]], version: &str, file: &str) -> PathBuf {
    let key = key_file(dir, hosts);
    let text = cluster_yml(&hosts.hosts()[..roles.len()], roles, &key)
        .replace("kubernetes_version: v1.20.2", &format!("kubernetes_version: {version}"));
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// `rancherctl cluster update NAME --rke FILE`, off the runtime's threads (it follows the rollout).
async fn update(home: &Path, name: &str, yml: &Path) -> String {
    let (home, args) =
        (home.to_owned(), ["cluster", "update", name, "--rke", yml.to_str().unwrap(), "--timeout", "15m"]);
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rancherctl(&home, &args)
    })
    .await
    .unwrap();
    assert!(ok, "update of {name} failed:\n{out}");
    out
}

/// When a process started (clock ticks since boot: `/proc/<pid>/stat`, field 22).
fn started(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    after_comm.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// The pid and start of `host`'s one process of `component`.
fn process_of(host: &SshHost, component: &str) -> (u32, u64) {
    let pids = pids_in_host(host, &[&format!("opt/rke/bin/{component}")]);
    if pids.len() != 1 {
        let read = |p: &str| std::fs::read_to_string(host.root_dir().join(p)).unwrap_or_default();
        let tail = |t: String| {
            t.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        panic!(
            "host {}: {component}: {pids:?}\n--- its log:\n{}\n--- the node agent's log:\n{}",
            host.index(),
            tail(read(&format!("var/lib/rancher/node-agent/logs/{component}.log"))),
            tail(read("var/lib/rancher/node-agent.log")),
        );
    }
    (pids[0], started(pids[0]))
}

/// The pid and start time of the cluster agent (on the first control-plane host).
fn cluster_agent_of(host: &SshHost) -> (u32, u64) {
    let pids = host.pids_matching(|words| words.iter().any(|w| w.ends_with("kubecfg-cluster-agent.yaml")));
    assert_eq!(pids.len(), 1, "host {}: the cluster agent: {pids:?}", host.index());
    (pids[0], started(pids[0]))
}

/// Reads the Deployment through the proxy until stopped, recording each read.
struct Prober {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Read>>,
}

/// One read through the proxy: when, and its error (an etcd leader election's counts as served).
struct Read {
    at: tokio::time::Instant,
    error: Option<String>,
}

/// What a phase's reads came to.
#[derive(Debug)]
struct Served {
    reads: usize,
    /// Each failed read's error.
    failures: Vec<String>,
    /// The longest run of failed reads, from its first to the next read that worked.
    longest: Duration,
}

impl Prober {
    fn start(kubeconfig: &Path, home: &Path) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let k = Kubectl::at("1.33", kubeconfig, home);
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut reads = vec![];
            while !flag.load(Ordering::Relaxed) {
                let at = tokio::time::Instant::now();
                // A read that hangs is a failed read (its time counts as down), not a stuck prober.
                let out = k
                    .run(&[
                        "get",
                        "deployment",
                        "web",
                        "-o",
                        "jsonpath={.status.replicas}",
                        "--request-timeout=10s",
                    ])
                    .await;
                let election = out.stderr.contains("etcdserver: leader changed");
                let error = (!out.ok && !election).then(|| out.stderr.trim().to_owned());
                reads.push(Read { at, error });
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            reads
        });
        Prober { stop, task }
    }

    async fn finish(self) -> Served {
        self.stop.store(true, Ordering::Relaxed);
        let reads = self.task.await.unwrap();
        let mut longest = Duration::ZERO;
        let mut down_since = None;
        for r in &reads {
            match (&r.error, down_since) {
                (Some(_), None) => down_since = Some(r.at),
                (None, Some(since)) => {
                    longest = longest.max(r.at - since);
                    down_since = None;
                }
                _ => {}
            }
        }
        let failures = reads.iter().filter_map(|r| r.error.clone()).collect();
        Served { reads: reads.len(), failures, longest }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_join_and_leave_and_an_upgrade_rolls_in_order_while_the_api_answers() {
    install_crypto();
    let hosts = SshHosts::start(9);
    let h = hosts.hosts();
    let dir = tempfile::tempdir().unwrap();
    write_other_bundle(&dir.path().join("bundles"), "v1.20.2-rancher2");
    let server = start_server(dir.path(), h[0].bridge_address()).await;
    let home = cli_home(dir.path(), &server.url);
    let three_two_two: Vec<&[&str]> = vec![E, E, E, C, C, W, W];
    let yml = write_yml(dir.path(), &hosts, &three_two_two, "v1.20.2", "cluster.yml");
    let (ok, out) =
        rancherctl(&home, &["cluster", "create", "ha", "--rke", yml.to_str().unwrap(), "--no-wait"]);
    assert!(ok, "{out}");
    wait_state(&home, "ha", "active", UP).await;
    let (ok, kubeconfig) = rancherctl(&home, &["kubeconfig", "ha"]);
    assert!(ok, "{kubeconfig}");
    let kubeconfig_file = dir.path().join("ha.kubeconfig");
    std::fs::write(&kubeconfig_file, &kubeconfig).unwrap();
    let k = Kubectl::at("1.33", &kubeconfig_file, &home);
    k.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=4"]).await;
    k.ok(&["rollout", "status", "deployment/web", "--timeout=180s"]).await;
    // Every change but the rotation to new CAs keeps the API answering through the proxy: phases
    // are probed one by one.
    let prober = Prober::start(&kubeconfig_file, &home);

    // A worker joins: nothing else restarts.
    let before: Vec<(u32, u64)> = h[..7].iter().map(|h| process_of(h, "kubelet")).collect();
    let mut roles = three_two_two.clone();
    roles.push(W);
    let yml = write_yml(dir.path(), &hosts, &roles, "v1.20.2", "eight.yml");
    update(&home, "ha", &yml).await;
    eventually(UP, "node8 is Ready", || {
        let k = Kubectl::at("1.33", &kubeconfig_file, &home);
        async move {
            let out = k.run(&["get", "node", "node8", "--no-headers"]).await;
            out.stdout.contains(" Ready ").then_some(())
        }
    })
    .await;
    let after: Vec<(u32, u64)> = h[..7].iter().map(|h| process_of(h, "kubelet")).collect();
    assert_eq!(before, after, "adding a worker restarted no other host's kubelet");

    let served = prober.finish().await;
    assert!(served.failures.is_empty() && served.reads > 20, "adding a worker: {served:?}");

    // The upgrade: etcd members one at a time, then the control plane, then the workers. A read
    // that was under way on a connection of an API server as it restarts fails (as behind any load
    // balancer); nothing else does.
    let prober = Prober::start(&kubeconfig_file, &home);
    let yml = write_yml(dir.path(), &hosts, &roles, "v1.20.2-rancher2", "upgrade.yml");
    let old_etcd: Vec<(u32, u64)> = h[..3].iter().map(|h| process_of(h, "etcd")).collect();
    let etcd_before = installed_binary(&h[0], "etcd");
    update(&home, "ha", &yml).await;
    let row = cluster_row(&home, "ha").unwrap();
    assert_eq!(row[3], "v1.20.2", "the API server's own version: {row:?}");
    let etcd: Vec<(u32, u64)> = h[..3].iter().map(|h| process_of(h, "etcd")).collect();
    let api: Vec<(u32, u64)> = h[3..5].iter().map(|h| process_of(h, "kube-apiserver")).collect();
    let kubelets: Vec<(u32, u64)> = h[5..8].iter().map(|h| process_of(h, "kubelet")).collect();
    for (old, new) in old_etcd.iter().zip(&etcd) {
        assert_ne!(old.0, new.0, "every etcd member was restarted");
    }
    let order: Vec<u64> = etcd.iter().chain(&api).map(|p| p.1).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "etcd 1, 2, 3, then API servers 4, 5: {order:?}");
    assert!(
        kubelets.iter().all(|w| w.1 > api[1].1),
        "the workers after the control plane: {kubelets:?} {api:?}"
    );
    let api_cmd = std::fs::read_to_string(format!("/proc/{}/cmdline", api[0].0)).unwrap();
    assert!(api_cmd.contains("--v=3"), "the new bundle's flag: {api_cmd}");
    // Each process runs the new bundle's build; the old builds are gone from the hosts.
    let etcd_cmd = std::fs::read_to_string(format!("/proc/{}/cmdline", etcd[0].0)).unwrap();
    let build = installed_binary(&h[0], "etcd").unwrap();
    let program = etcd_cmd.split('\0').next().unwrap();
    assert!(program.ends_with(build.file_name().unwrap().to_str().unwrap()), "{program} {build:?}");
    assert_ne!(Some(build), etcd_before, "a new build of etcd");

    let served = prober.finish().await;
    let cut = |f: &String| {
        [
            "peer closed connection",
            "connection reset",
            "connection closed before message completed",
            // A read the API server had in flight on an etcd member as it restarted (the rotation
            // restarts every member): cut the same way, by the API server's etcd client.
            "server closed the stream without sending trailers",
            // The same restart seen a moment later: with TLS, etcd serves gRPC through its HTTP
            // server, and a stream that arrives after the gRPC server stopped gets an empty 200.
            "HTTP status code 200; transport: missing content-type field",
            // A read in flight on a member that leaves: the member goes before the API servers
            // restart without it (etcd first, one member at a time), and the API server's etcd
            // client sees that connection close under the read.
            "transport is closing",
        ]
        .iter()
        .any(|m| f.contains(m))
    };
    assert!(served.failures.iter().all(cut) && served.failures.len() <= 3, "the upgrade: {served:?}");

    let prober = Prober::start(&kubeconfig_file, &home);
    // New CAs: three rolls over every host (trust both, new certificates, drop the old CAs). The
    // admin's kubeconfig is issued again and reaches the API server with the new CA only.
    let (ok, old_admin) = rancherctl(&home, &["cluster", "admin-kubeconfig", "ha"]);
    assert!(ok, "{old_admin}");
    let agent = cluster_agent_of(&h[3]);
    let (home2, name) = (home.clone(), "ha");
    let (ok, out) = tokio::task::spawn_blocking(move || {
        rancherctl(&home2, &["cluster", "rotate-certs", name, "--new-ca", "--timeout", "20m"])
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    let (ok, new_admin) = rancherctl(&home, &["cluster", "admin-kubeconfig", "ha"]);
    assert!(ok, "{new_admin}");
    let ca_of = |kubeconfig: &str| {
        kubeconfig.lines().find(|l| l.contains("certificate-authority-data")).unwrap().trim().to_owned()
    };
    assert_ne!(ca_of(&old_admin), ca_of(&new_admin), "the admin kubeconfig carries the new CA");
    let direct = Kubectl::new("1.33", &new_admin);
    let nodes = direct.ok(&["get", "nodes", "--no-headers"]).await;
    assert_eq!(nodes.lines().count(), 8, "{nodes}");
    let stale = Kubectl::new("1.33", &old_admin).run(&["get", "nodes"]).await;
    assert!(!stale.ok, "the old CA is no longer trusted: {stale:?}");

    // The cluster agent is not restarted: it connects again with each phase's certificates before
    // its old session closes, and what is under way on the old session finishes there. Reads under
    // way on an API server as it restarts are cut; the cluster is never unreachable, and no read
    // waits for a reply that cannot come.
    assert_eq!(cluster_agent_of(&h[3]), agent, "the cluster agent kept running");
    let served = prober.finish().await;
    eprintln!(
        "the rotation: {} reads, {} cut, longest {:?}",
        served.reads,
        served.failures.len(),
        served.longest
    );
    assert!(served.failures.iter().all(cut) && served.failures.len() <= 9, "the rotation: {served:?}");
    assert!(served.longest < Duration::from_secs(5), "the rotation: {served:?}");

    // An etcd host joins as a fourth member (the API servers learn of it: they restart).
    let prober = Prober::start(&kubeconfig_file, &home);
    roles.push(E);
    let yml = write_yml(dir.path(), &hosts, &roles, "v1.20.2-rancher2", "nine.yml");
    update(&home, "ha", &yml).await;
    process_of(&h[8], "etcd");

    // Both leave again: the member first, the worker drained; their Nodes go, their hosts are clean.
    let yml = write_yml(dir.path(), &hosts, &three_two_two, "v1.20.2-rancher2", "seven.yml");
    update(&home, "ha", &yml).await;
    let nodes = k.ok(&["get", "nodes", "--no-headers"]).await;
    assert_eq!(nodes.lines().count(), 7, "{nodes}");
    for host in &h[7..9] {
        assert!(!host.root_dir().join("srv/node/opt/rke").exists(), "host {} is clean", host.index());
        assert!(pids_in_host(host, &["opt/rke/bin/etcd", "opt/rke/bin/kubelet"]).is_empty());
    }
    let pods = k.ok(&["get", "pods", "-o", "wide", "--no-headers"]).await;
    assert_eq!(pods.lines().filter(|l| l.contains("Running")).count(), 4, "{pods}");

    let served = prober.finish().await;
    assert!(
        served.failures.iter().all(cut) && served.failures.len() <= 3,
        "members joining and leaving: {served:?}"
    );
}

/// The program path (build included) of a process.
fn program_of(pid: u32) -> String {
    let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmd.split('\0').next().unwrap_or_default().to_owned()
}

/// `rancherctl cluster get NAME` as text.
fn shown(home: &Path, name: &str) -> String {
    rancherctl(home, &["cluster", "get", name]).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_lost_mid_rollout_stops_it_until_it_returns_and_a_restarted_server_carries_on() {
    install_crypto();
    let hosts = SshHosts::start(4);
    let h = hosts.hosts();
    let dir = tempfile::tempdir().unwrap();
    write_other_bundle(&dir.path().join("bundles"), "v1.20.2-rancher2");
    let mut server = start_server(dir.path(), h[0].bridge_address()).await;
    let home = cli_home(dir.path(), &server.url);
    let roles: Vec<&[&str]> = vec![&["etcd", "controlplane"], W, W, W];
    let yml = write_yml(dir.path(), &hosts, &roles, "v1.20.2", "cluster.yml");
    let (ok, out) =
        rancherctl(&home, &["cluster", "create", "small", "--rke", yml.to_str().unwrap(), "--no-wait"]);
    assert!(ok, "{out}");
    wait_state(&home, "small", "active", UP).await;
    let (ok, kubeconfig) = rancherctl(&home, &["kubeconfig", "small"]);
    assert!(ok, "{kubeconfig}");
    let kubeconfig_file = dir.path().join("small.kubeconfig");
    std::fs::write(&kubeconfig_file, &kubeconfig).unwrap();
    let k = Kubectl::at("1.33", &kubeconfig_file, &home);
    eventually(UP, "four Nodes Ready", || {
        let k = Kubectl::at("1.33", &kubeconfig_file, &home);
        async move {
            let out = k.run(&["get", "nodes", "--no-headers"]).await;
            (out.stdout.lines().filter(|l| l.contains(" Ready ")).count() == 4).then_some(())
        }
    })
    .await;
    let old_build = program_of(process_of(&h[1], "kubelet").0);

    // The upgrade starts; once etcd (the first to go) runs the new build, the last worker is cut off.
    let old_etcd = program_of(process_of(&h[0], "etcd").0);
    let yml = write_yml(dir.path(), &hosts, &roles, "v1.20.2-rancher2", "upgrade.yml");
    let (ok, out) =
        rancherctl(&home, &["cluster", "update", "small", "--rke", yml.to_str().unwrap(), "--no-wait"]);
    assert!(ok, "{out}");
    eventually(UP, "node1 runs the new etcd", || {
        let now = pids_in_host(&h[0], &["opt/rke/bin/etcd"]).first().map(|p| program_of(*p));
        let old = old_etcd.clone();
        async move { now.filter(|p| *p != old).map(drop) }
    })
    .await;
    h[3].set_link(false);

    // The rollout stops at node4 and says so; the hosts it did keep their new plans and serve.
    let stopped = eventually(UP, "the rollout stops at node4", || {
        let text = shown(&home, "small");
        let stopped =
            text.lines().any(|l| l.contains("node4") && (l.contains("Failed") || l.contains("retrying")));
        async move { stopped.then_some(text) }
    })
    .await;
    assert_eq!(cluster_row(&home, "small").unwrap()[1], "updating", "{stopped}");
    let rolled: Vec<(u32, u64)> = h[..3].iter().map(|h| process_of(h, "kubelet")).collect();
    for (i, (pid, _)) in rolled.iter().enumerate() {
        assert_ne!(program_of(*pid), old_build, "node{} runs the new build", i + 1);
    }
    assert_eq!(k.ok(&["get", "nodes", "node1", "-o", "name"]).await.trim(), "node/node1");

    // The server dies and comes back; node4 comes back: the rollout resumes where it stopped.
    server.restart(1).await;
    h[3].set_link(true);
    wait_state(&home, "small", "active", UP).await;
    let node4 = process_of(&h[3], "kubelet");
    assert_ne!(program_of(node4.0), old_build, "node4 runs the new build");
    let again: Vec<(u32, u64)> = h[..3].iter().map(|h| process_of(h, "kubelet")).collect();
    assert_eq!(again, rolled, "the hosts rolled before were not rolled again");
    let nodes = k.ok(&["get", "nodes", "--no-headers"]).await;
    assert_eq!(nodes.lines().filter(|l| l.contains(" Ready ")).count(), 4, "{nodes}");
}
