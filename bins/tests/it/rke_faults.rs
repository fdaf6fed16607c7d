//! Faults while building clusters on SSH hosts, with real programs (OpenSSH hosts in network
//! namespaces, `rancher-server`, `rancherctl`, the node agent, etcd and Kubernetes 1.20): each fault
//! stops its own cluster's provisioning with a `Provisioned` condition that names the host and the
//! cause — retried with backoff when the network may heal, stopped until the spec changes when a
//! person must act — and the other clusters carry on.
//!
//! | fault | outcome |
//! |---|---|
//! | unreachable host | `Retrying`: `host N: ADDR:22: unreachable …` (or the connect timeout) |
//! | wrong SSH key | `Failed`: `host N: authentication failed for root@ADDR:22 …` |
//! | a bundle's manifest lies about a checksum | `Failed`: names the host, the component and its file |
//! | host key changed after the first contact | `Failed`: names both fingerprints; the pin stays |
//! | link cut during the upload | `Retrying`: the connection was lost; converges once the link is back |
//! | a port in use on the host | `Retrying`: the process keeps failing, with the end of its log |

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rancher_provision::bundle::Bundle;
use rancher_test_support::ssh_hosts::{SshHost, SshHosts};
use serde_json::Value;

use crate::import_support::*;
use crate::rke_support::*;

/// From `create` to Active: SSH, ~400 MB of binaries per control-plane host, etcd, the API server.
const UP: Duration = Duration::from_secs(600);
/// A bundle whose manifest lies about etcd's checksum.
const LYING: &str = "v1.20.2-lying1";
/// The binaries of a host with every role, as the layout puts them under `prefix_path`.
const BINARIES: [&str; 6] =
    ["node-agent", "kubelet", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"];

/// A cluster.yml of one host with every role.
fn one_host_yml(version: &str, address: &str, node: &str, key: &Path) -> String {
    format!(
        "kubernetes_version: {version}\nprefix_path: /srv/node\nnodes:\n  - address: {address}\n    user: root\n    \
         ssh_key_path: {}\n    hostname_override: {node}\n    role: [etcd, controlplane, worker]\n",
        key.display()
    )
}

/// Writes the bundle `v1.20.2` and the bundle [`LYING`], the same but for etcd's checksum; returns
/// etcd's real checksum.
fn write_bundles(dir: &Path) -> String {
    write_bundle(dir);
    let mut b = Bundle::from_manifest(&std::fs::read_to_string(dir.join("v1.20.2.yaml")).unwrap()).unwrap();
    b.version = LYING.into();
    let etcd = b.components.get_mut("etcd").unwrap();
    let real = std::mem::replace(&mut etcd.sha256, "ab".repeat(32));
    std::fs::write(dir.join(format!("{LYING}.yaml")), b.to_manifest()).unwrap();
    real
}

/// A client of the server's `/v3` as admin.
struct V3 {
    url: String,
    bearer: String,
    http: reqwest::Client,
}

impl V3 {
    async fn new(url: &str) -> V3 {
        V3 { url: url.to_owned(), bearer: login(url).await, http: insecure_client() }
    }

    async fn cluster(&self, name: &str) -> Value {
        let r = self.http.get(format!("{}/v3/clusters/{name}", self.url)).bearer_auth(&self.bearer);
        r.send().await.unwrap().json().await.unwrap()
    }

    /// `Provisioned` of `name`: (status, reason, message).
    async fn provisioned(&self, name: &str) -> Option<(String, String, String)> {
        let c = self.cluster(name).await;
        let cond = c["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Provisioned")?.clone();
        let s = |k: &str| cond[k].as_str().unwrap_or_default().to_owned();
        Some((s("status"), s("reason"), s("message")))
    }

    /// Waits until `Provisioned` of `name` has `reason` and a message containing every one of
    /// `parts`; returns the message.
    async fn wait_condition(&self, name: &str, reason: &str, parts: &[&str], wait: Duration) -> String {
        let what = format!("{name}: Provisioned {reason} with {parts:?}");
        eventually(wait, &what, || async {
            let (_, r, m) = self.provisioned(name).await?;
            (r == reason && parts.iter().all(|p| m.contains(p))).then_some(m)
        })
        .await
    }

    /// Changes `spec.rkeConfig.kubernetes_version` of `name` (the stored SSH keys come back as
    /// `[sealed]` and are kept), retrying on conflicts with the controller's status writes.
    async fn set_version(&self, name: &str, version: &str) {
        for _ in 0..20 {
            let mut c = self.cluster(name).await;
            c["spec"]["rkeConfig"]["kubernetes_version"] = version.into();
            let r = self.http.put(format!("{}/v3/clusters/{name}", self.url)).bearer_auth(&self.bearer);
            let resp = r.json(&c).send().await.unwrap();
            match resp.status().as_u16() {
                200 => return,
                409 => continue,
                other => panic!("PUT {name}: {other}: {}", resp.text().await.unwrap_or_default()),
            }
        }
        panic!("PUT {name}: conflicts kept coming");
    }
}

/// How many failed provisioning attempts of `cluster` the server logged.
fn attempts(log: &Path, cluster: &str) -> usize {
    read_log(log)
        .lines()
        .filter(|l| l.contains(&format!("cluster={cluster}")) && l.contains("provisioning: host"))
        .count()
}

/// `SHA256:…` of a public key line, as `ssh-keygen -l` shows it.
fn fingerprint(dir: &Path, public_key: &str) -> String {
    let f = dir.join("fingerprint.pub");
    std::fs::write(&f, format!("{public_key}\n")).unwrap();
    let out = Command::new("ssh-keygen").arg("-lf").arg(&f).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace().nth(1).unwrap_or_else(|| panic!("ssh-keygen -l: {text}")).to_owned()
}

fn create(home: &Path, dir: &Path, name: &str, yml: &str) {
    let file = dir.join(format!("{name}.yml"));
    std::fs::write(&file, yml).unwrap();
    let (ok, out) =
        rancherctl(home, &["cluster", "create", name, "--rke", file.to_str().unwrap(), "--no-wait"]);
    assert!(ok, "{name}: {out}");
}

fn cluster_get(home: &Path, name: &str) -> String {
    let (ok, shown) = rancherctl(home, &["cluster", "get", name]);
    assert!(ok, "{shown}");
    shown
}

/// The pids of the processes in `host` whose program path ends with `suffix` and whose arguments
/// include `arg` (when given).
fn processes_in(host: &SshHost, suffix: &str, arg: Option<&str>) -> Vec<u32> {
    host.pids_matching(|words| {
        words.first().is_some_and(|w| without_build(w).ends_with(suffix))
            && arg.is_none_or(|a| words.iter().any(|w| w == a))
    })
}

/// The inode of each binary on `host` (a new upload is a new file renamed into place).
fn binary_inodes(host: &SshHost) -> Vec<(&'static str, u64)> {
    use std::os::unix::fs::MetadataExt;
    BINARIES
        .iter()
        .map(|b| {
            let p = installed_binary(host, b).unwrap_or_else(|| panic!("no {b} on the host"));
            (*b, std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).ino())
        })
        .collect()
}

/// Files being uploaded to `host` (temporary names beside their destination).
fn partial_uploads(host: &SshHost) -> Vec<(String, u64)> {
    let Ok(dir) = std::fs::read_dir(host.root_dir().join("opt/rke/bin")) else { return Vec::new() };
    dir.filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".part-"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map_or(0, |m| m.len())))
        .collect()
}

/// Faults before the control plane starts, one cluster each on one shared server: an unreachable
/// host (retried with backoff), a wrong key (stopped), a bundle whose manifest lies about etcd's
/// checksum (stopped; nothing half-uploaded stays on the host, and the host key seen is pinned),
/// then on the same host a changed host key (refused, naming both fingerprints, and the pinned key
/// stays in the cluster's state: a later run is refused the same way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_before_the_control_plane_stop_their_cluster_naming_the_host_and_the_cause() {
    install_crypto();
    let hosts = SshHosts::start(2);
    let (h1, h2) = (&hosts.hosts()[0], &hosts.hosts()[1]);
    let dir = tempfile::tempdir().unwrap();
    let etcd_sum = write_bundles(&dir.path().join("bundles"));
    let server = start_server(dir.path(), h1.bridge_address()).await;
    let v3 = V3::new(&server.url).await;
    let home = cli_home(dir.path(), &server.url);
    let key = key_file(dir.path(), &hosts);
    let stranger = dir.path().join("stranger");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // Nothing answers there: the bridge's subnet, above every host.
    let nowhere = format!("10.213.{}.250", hosts.set_number());

    create(&home, dir.path(), "far", &one_host_yml("v1.20.2", &nowhere, "node9", &key));
    create(&home, dir.path(), "stranger", &one_host_yml("v1.20.2", h1.address(), "node1", &stranger));
    create(&home, dir.path(), "lying", &one_host_yml(LYING, h2.address(), "node2", &key));

    // A wrong key: refused for good, naming the user and the host.
    let m = v3.wait_condition("stranger", "Failed", &[], WAIT).await;
    assert_eq!(
        m,
        format!("host node1: authentication failed for root@{}:22: the host refused the key", h1.address())
    );
    let shown = cluster_get(&home, "stranger");
    assert!(shown.contains("authentication failed for root@"), "{shown}");

    // A lying manifest: the component, its file, both checksums and the host; etcd never lands,
    // and no partial file stays behind.
    let m = v3.wait_condition("lying", "Failed", &["host node2"], WAIT).await;
    assert_eq!(
        m,
        format!(
            "host node2: etcd: checksum mismatch: the bundle {LYING} says sha256 {}, its file /usr/bin/etcd \
             has {etcd_sum}",
            "ab".repeat(32)
        )
    );
    assert_eq!(installed_binary(h2, "etcd"), None);
    assert_eq!(partial_uploads(h2), []);
    assert!(processes_in(h2, "node-agent", None).is_empty(), "no node agent was started");

    // An unreachable host: named, and retried with backoff.
    let m = v3.wait_condition("far", "Retrying", &["host node9", &nowhere], WAIT).await;
    assert!(m.contains("unreachable") || m.contains("timeout"), "{m}");
    let shown = cluster_get(&home, "far");
    // Between attempts and during the next one, `cluster get` says why the last one failed.
    assert!(shown.contains(&format!("host node9: {nowhere}:22")), "{shown}");
    let log = dir.path().join("server.log");
    eventually(WAIT, "far is retried", || async { (attempts(&log, "far") >= 3).then_some(()) }).await;

    // The host key changes after the first contact; the spec moves to the good bundle: refused,
    // naming the pinned key's fingerprint and the new one.
    let old = fingerprint(dir.path(), &h2.host_public_key());
    let new_key = h2.regenerate_host_key();
    let new = fingerprint(dir.path(), &new_key);
    v3.set_version("lying", "v1.20.2").await;
    let changed = format!(
        "host node2: {}:22: host key changed: expected {old}, the host presented {new}",
        h2.address()
    );
    let m = v3.wait_condition("lying", "Failed", &["host key changed"], WAIT).await;
    assert_eq!(m, changed);
    // The next run (another spec change) is refused the same way: the pinned key was kept.
    v3.set_version("lying", LYING).await;
    eventually(WAIT, "the second refusal", || async { (attempts(&log, "lying") >= 3).then_some(()) }).await;
    // The attempt is logged as it starts (its condition says `starting` until it is refused).
    let m = v3.wait_condition("lying", "Failed", &["host key changed"], WAIT).await;
    assert_eq!(m, changed);

    // Refusals are not retried: one attempt each, while the unreachable host was tried again and again.
    assert_eq!(attempts(&log, "stranger"), 1, "{}", read_log(&log));
    assert_eq!(attempts(&log, "lying"), 3);
    assert!(attempts(&log, "far") >= 3);
    for name in ["far", "stranger", "lying"] {
        let row = cluster_row(&home, name).unwrap();
        assert_ne!(row[1], "active", "{row:?}");
    }
}

/// A cluster whose host has its link cut in the middle of the upload and a port in use (something
/// listens on etcd's 2379 before the plan starts): each fault is reported naming the host and the
/// cause, and once both are repaired the retries converge to Active without uploading anything
/// twice, starting a second node agent or duplicating a process — while a second cluster stays
/// stuck on an unreachable host and is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_and_a_port_in_use_are_retried_until_the_cluster_converges() {
    install_crypto();
    let hosts = SshHosts::start(1);
    let h1 = &hosts.hosts()[0];
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), h1.bridge_address()).await;
    let v3 = V3::new(&server.url).await;
    let home = cli_home(dir.path(), &server.url);
    let key = key_file(dir.path(), &hosts);
    let log = dir.path().join("server.log");

    // Something holds etcd's client port on the host.
    let squat =
        "import socket,time\ns=socket.socket()\ns.bind(('0.0.0.0',2379))\ns.listen()\ntime.sleep(3600)";
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", h1.netns(), "/usr/bin/python3", "-c", squat]);
    let squatter = Proc::spawn(cmd, &dir.path().join("squatter.log"));

    // Slow enough to cut the link in the middle of a binary.
    h1.limit_rate(Some("200mbit"));
    let nowhere = format!("10.213.{}.250", hosts.set_number());
    create(&home, dir.path(), "far", &one_host_yml("v1.20.2", &nowhere, "node9", &key));
    create(&home, dir.path(), "steady", &one_host_yml("v1.20.2", h1.address(), "node1", &key));

    let (part, size) = eventually(WAIT, "an upload under way", || async {
        partial_uploads(h1).into_iter().find(|(_, size)| *size > (1 << 20))
    })
    .await;
    h1.set_link(false);
    eprintln!("link cut while {part} had {size} bytes");
    let m = v3.wait_condition("steady", "Retrying", &["host node1"], Duration::from_secs(180)).await;
    assert!(m.contains("connection was lost") || m.contains("unreachable") || m.contains("timeout"), "{m}");
    h1.limit_rate(None);
    h1.set_link(true);

    // Every binary lands; etcd cannot listen and the node agent says why.
    let m = v3
        .wait_condition("steady", "Retrying", &["host node1: etcd keeps failing"], Duration::from_secs(300))
        .await;
    assert!(m.contains("address already in use"), "{m}");
    assert_eq!(partial_uploads(h1), [], "the cut upload left nothing behind");
    let inodes = binary_inodes(h1);
    assert_eq!(processes_in(h1, "opt/rke/bin/node-agent", Some("--node")).len(), 1);

    // The port is freed: the next retry converges.
    drop(squatter);
    let row = wait_state(&home, "steady", "active", UP).await;
    assert_eq!(row[3], "v1.20.2", "{row:?}");

    // Nothing was uploaded again, one node agent, one of each process.
    assert_eq!(binary_inodes(h1), inodes);
    let shown = cluster_get(&home, "steady");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("host node1") && l.contains("node agent running; 0 binaries uploaded")),
        "{shown}"
    );
    assert_eq!(processes_in(h1, "opt/rke/bin/node-agent", Some("--node")).len(), 1, "one node agent");
    assert_eq!(
        processes_in(h1, "opt/rke/bin/node-agent", Some("--kubeconfig")).len(),
        1,
        "one cluster agent"
    );
    for program in BINARIES.iter().filter(|b| **b != "node-agent") {
        assert_eq!(processes_in(h1, &format!("opt/rke/bin/{program}"), None).len(), 1, "{program}");
    }

    // The other cluster is still stuck on its host, and still retried.
    let before = attempts(&log, "far");
    assert!(before >= 2, "{}", read_log(&log));
    let m = v3.wait_condition("far", "Retrying", &["host node9", &nowhere], WAIT).await;
    assert!(m.contains("unreachable") || m.contains("timeout"), "{m}");
    assert_ne!(cluster_row(&home, "far").unwrap()[1], "active");
}
