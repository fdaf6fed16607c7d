//! What a person sees and gets from a cluster built on an SSH host, end to end with real programs (as
//! `rke_cluster`): `rancherctl cluster create --rke` following the provisioning step by step to the
//! end (or to the failed step, or the timeout), the cluster's state and admin kubeconfig downloaded by
//! its owners only (audited, stored sealed, never in logs or reads), and removal that stops and takes
//! away everything it put on the host — waiting, with a condition, while the host cannot be reached.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rancher_core::store::{RedbStore, Store, StoreError};
use rancher_test_support::kubectl::Kubectl;
use rancher_test_support::ssh_hosts::{SshHost, SshHosts};
use serde_json::{Value, json};

use crate::import_support::*;
use crate::rke_support::{cli_home, key_file, start_server_with, write_cluster_yml};

/// From `create` to Active: SSH, ~400 MB of binaries per control-plane host, etcd, the API server.
const UP: &str = "10m";
/// The removal of a cluster whose host was unreachable for a while: retries with backoff.
const REMOVED: Duration = Duration::from_secs(420);
const USER_PASSWORD: &str = "a-long-password-for-tests";

/// A test's server, hosts and `rancherctl` home, logged in as admin.
struct Setup {
    hosts: SshHosts,
    dir: tempfile::TempDir,
    server: Option<crate::rke_support::HostedServer>,
    home: PathBuf,
    url: String,
}

impl Setup {
    async fn start() -> Setup {
        install_crypto();
        let hosts = SshHosts::start(1);
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit.log");
        let server = start_server_with(
            dir.path(),
            hosts.hosts()[0].bridge_address(),
            &["--audit-log", audit.to_str().unwrap()],
        )
        .await;
        let url = server.url.clone();
        let home = cli_home(dir.path(), &url);
        Setup { hosts, dir, server: Some(server), home, url }
    }

    fn host(&self) -> &SshHost {
        &self.hosts.hosts()[0]
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A cluster.yml for the one host with every role, the hosts' key in a file here.
    fn yml(&self) -> PathBuf {
        write_cluster_yml(self.dir.path(), &self.hosts, &[&["etcd", "controlplane", "worker"]])
    }

    fn ctl(&self, args: &[&str]) -> (bool, String) {
        rancherctl(&self.home, args)
    }

    /// A user logged in with their own home; returns the home.
    fn user(&self, name: &str) -> PathBuf {
        let (ok, out) = self.ctl(&["user", "create", name, "--password", USER_PASSWORD]);
        assert!(ok, "{out}");
        let home = self.path(&format!("home-{name}"));
        std::fs::create_dir_all(&home).unwrap();
        let (ok, out) = rancherctl(
            &home,
            &["login", &self.url, "--username", name, "--password", USER_PASSWORD, "--insecure"],
        );
        assert!(ok, "{out}");
        home
    }

    fn server_log(&self) -> String {
        read_log(&self.path("server.log"))
    }

    /// Stops the server and opens its store.
    fn stop_and_open_store(&mut self) -> RedbStore {
        drop(self.server.take());
        RedbStore::open(self.path("data").join("rancher.redb")).unwrap()
    }
}

/// The cluster as `/v3` shows it to the admin.
fn cluster_json(setup: &Setup, name: &str) -> Option<Value> {
    let (ok, out) = setup.ctl(&["cluster", "get", name, "-o", "json"]);
    ok.then(|| serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}")))
}

/// The command lines of the processes in `host`'s network namespace.
fn processes_in(host: &SshHost) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "pids", host.netns()]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect()
}

/// What the provisioner runs on a host: its binaries (etcd, the control plane, the kubelet, the node
/// and cluster agents), not the test's sshd and its sessions.
fn provisioned(processes: &[String]) -> Vec<&String> {
    processes.iter().filter(|p| p.contains("/opt/rke/bin/")).collect()
}

/// `POST /v3/clusters/<name>?action=<action>` with `token`: the status and the body.
async fn action(url: &str, token: &str, name: &str, action: &str) -> (u16, Value) {
    let resp = insecure_client()
        .post(format!("{url}/v3/clusters/{name}?action={action}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The audit records of downloads of cluster `name`'s keys: (user, action, status).
fn audited_downloads(audit: &Path, name: &str) -> Vec<(String, String, u64)> {
    std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["cluster"] == name && e["subresource"].as_str().is_some_and(|s| s.starts_with("export"))
        })
        .map(|e| {
            (
                e["user"].as_str().unwrap_or_default().to_owned(),
                e["subresource"].as_str().unwrap_or_default().to_owned(),
                e["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_follows_the_steps_to_active_and_only_owners_download_the_state_and_admin_kubeconfig() {
    let mut setup = Setup::start().await;
    let yml = setup.yml();

    // 1. Create, followed to the end: the id, one line per step change, the summary last.
    let (ok, out) =
        setup.ctl(&["cluster", "create", "solo", "--rke", yml.to_str().unwrap(), "--timeout", UP]);
    assert!(ok, "{out}");
    assert!(!out.contains('\u{1b}'), "no terminal: plain lines, no bar: {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.iter().filter(|l| **l == "solo").count(), 1, "{out}");
    for step in
        ["certificates", "host node1", "node agents", "etcd", "control plane", "workers", "cluster agent"]
    {
        assert!(
            lines.iter().any(|l| l.starts_with('[') && l.contains(&format!("] {step}: done"))),
            "{step}: {out}"
        );
    }
    // The host's step is long enough to be seen under way (reads are a second apart).
    assert!(lines.iter().any(|l| l.contains("] host node1: running (uploading ")), "{out}");
    // Changes only: no line twice in a row.
    assert!(lines.windows(2).all(|w| w[0] != w[1]), "{out}");
    // The last line on stdout (the server's warning comes after it, from stderr).
    let last = lines.iter().rev().find(|l| !l.starts_with("Warning: ")).copied();
    assert_eq!(last, Some("cluster solo is active: Kubernetes v1.20.2, 1 node"), "{out}");

    // 2. Who may download: admin and the owner; a member gets 403, anyone else the 404 of no cluster.
    let _bob = setup.user("bob");
    let alice = setup.user("alice");
    let _carol = setup.user("carol");
    for (user, role) in [("bob", "cluster-owner"), ("alice", "cluster-member")] {
        let (ok, out) = setup.ctl(&["cluster", "members", "add", "solo", user, "--role", role]);
        assert!(ok, "{out}");
    }
    let state_file = setup.path("cluster.rkestate");
    let (ok, out) = setup.ctl(&["cluster", "rkestate", "solo", "-o", state_file.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert_eq!(mode(&state_file), 0o600);
    let state: Value = serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    let address = setup.host().address().to_owned();
    for which in ["desiredState", "currentState"] {
        assert_eq!(state[which]["rkeConfig"]["nodes"][0]["address"], address.as_str(), "{which}");
        let ca = &state[which]["certificatesBundle"]["kube-ca"];
        assert!(ca["certificatePEM"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(ca["keyPEM"].as_str().unwrap().contains("PRIVATE KEY-----"));
    }
    // The SSH key sent inline was sealed by the server and does not travel back.
    let state_text = state.to_string();
    assert!(
        !state_text.contains("OPENSSH PRIVATE KEY") && !state_text.contains("sealed"),
        "an SSH key leaked"
    );
    let ca_key =
        state["desiredState"]["certificatesBundle"]["kube-ca"]["keyPEM"].as_str().unwrap().to_owned();
    // A line of the key's base64 body: what must never show up elsewhere.
    let ca_key_line = ca_key.lines().nth(1).unwrap().to_owned();
    assert!(ca_key_line.len() > 40, "{ca_key_line}");

    let bob_home = setup.path("home-bob");
    let kubeconfig = setup.path("kube_config_solo.yml");
    let (ok, out) =
        rancherctl(&bob_home, &["cluster", "admin-kubeconfig", "solo", "-o", kubeconfig.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert_eq!(mode(&kubeconfig), 0o600);
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(text.contains(&format!("https://{address}:6443")), "{text}");
    // Real kubectl straight at the host's API server (not through the server's proxy), as kube-admin.
    let k = Kubectl::at("1.33", &kubeconfig, &setup.home);
    let nodes = k.ok(&["get", "nodes"]).await;
    assert!(nodes.contains("node1") && nodes.contains(" Ready"), "{nodes}");
    let can = k.ok(&["auth", "can-i", "*", "*", "--all-namespaces"]).await;
    assert_eq!(can.trim(), "yes");

    let (ok, out) = rancherctl(&alice, &["cluster", "rkestate", "solo"]);
    assert!(!ok && out.contains("forbidden") && !out.contains("PRIVATE KEY"), "{out}");
    let (ok, out) = rancherctl(&alice, &["cluster", "admin-kubeconfig", "solo"]);
    assert!(!ok && out.contains("forbidden"), "{out}");
    // The answers as the API gives them: Kubernetes Status objects.
    let alice_token = login_as(&setup.url, "alice", USER_PASSWORD).await;
    let (code, body) = action(&setup.url, &alice_token, "solo", "exportState").await;
    assert_eq!(
        (code, &body["kind"], &body["reason"]),
        (403, &json!("Status"), &json!("Forbidden")),
        "{body}"
    );
    let carol_token = login_as(&setup.url, "carol", USER_PASSWORD).await;
    let (code, body) = action(&setup.url, &carol_token, "solo", "exportAdminKubeconfig").await;
    assert_eq!((code, &body["reason"]), (404, &json!("NotFound")), "{body}");
    let admin_token = login(&setup.url).await;
    let (code, body) = action(&setup.url, &admin_token, "solo", "exportAdminKubeconfig").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["fileName"], "kube_config_solo.yml");

    // 3. Every attempt is in the audit log, with who and the outcome; never the keys.
    let audit = setup.path("audit.log");
    let id = |u: &str| setup_user_id(&setup, u);
    let (admin_id, bob_id, alice_id, carol_id) = (id("admin"), id("bob"), id("alice"), id("carol"));
    let expected = [
        (admin_id.clone(), "exportState", 200),
        (bob_id, "exportAdminKubeconfig", 200),
        (alice_id.clone(), "exportState", 403),
        (alice_id.clone(), "exportAdminKubeconfig", 403),
        (alice_id, "exportState", 403),
        (carol_id, "exportAdminKubeconfig", 404),
        (admin_id, "exportAdminKubeconfig", 200),
    ];
    let audited = eventually(WAIT, "the downloads are audited", || {
        let got = audited_downloads(&audit, "solo");
        let want = expected.len();
        async move { (got.len() >= want).then_some(got) }
    })
    .await;
    let expected: Vec<(String, String, u64)> =
        expected.iter().map(|(u, a, s)| (u.clone(), (*a).to_owned(), *s)).collect();
    assert_eq!(audited, expected);
    let audit_text = std::fs::read_to_string(&audit).unwrap();
    assert!(!audit_text.contains(&ca_key_line) && !audit_text.contains("PRIVATE KEY"));

    // 4. Never in normal reads or the server's log.
    let (ok, shown) = setup.ctl(&["cluster", "get", "solo", "-o", "json"]);
    assert!(ok, "{shown}");
    let (ok, listed) = setup.ctl(&["cluster", "ls", "-o", "json"]);
    assert!(ok, "{listed}");
    for text in [&shown, &listed, &setup.server_log()] {
        assert!(!text.contains(&ca_key_line), "the CA key shows");
        assert!(!text.contains("PRIVATE KEY"), "a private key shows");
    }

    // 5. Stored sealed: the store holds no key in the clear.
    let store = setup.stop_and_open_store();
    let stored = store.get("rkeclusterstates", None, "solo").await.unwrap();
    let stored = stored.to_string();
    assert!(stored.contains("\"sealed\""), "{stored}");
    assert!(!stored.contains(&ca_key_line) && !stored.contains("PRIVATE KEY") && !stored.contains("BEGIN"));
}

/// The user id (`u-xxxxx`) of a username, as the admin sees it.
fn setup_user_id(setup: &Setup, username: &str) -> String {
    let (ok, out) = setup.ctl(&["user", "ls", "-o", "json"]);
    assert!(ok, "{out}");
    let users: Value = serde_json::from_str(&out).unwrap();
    users["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["spec"]["username"] == username)
        .and_then(|u| u["id"].as_str())
        .unwrap_or_else(|| panic!("no user {username}: {out}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_cluster_stops_and_takes_away_everything_on_its_host_and_waits_for_an_unreachable_one() {
    let mut setup = Setup::start().await;
    let yml = setup.yml();
    let (ok, out) =
        setup.ctl(&["cluster", "create", "solo", "--rke", yml.to_str().unwrap(), "--timeout", UP]);
    assert!(ok, "{out}");
    let host = setup.host();
    let running = processes_in(host);
    assert!(provisioned(&running).len() >= 6, "etcd, the control plane, kubelet, agents: {running:#?}");
    let owned = ["opt/rke", "etc/kubernetes", "var/lib/etcd", "var/lib/rancher"];
    for d in owned {
        assert!(host.root_dir().join(d).is_dir(), "{d}");
    }

    // The host cannot be reached: the cluster stays, with a condition naming the host.
    host.set_link(false);
    let (ok, out) = setup.ctl(&["cluster", "rm", "solo"]);
    assert!(ok, "{out}");
    let held = eventually(REMOVED, "the removal names the unreachable host", || {
        let c = cluster_json(&setup, "solo");
        async move {
            let c = c?;
            let conditions = c["status"]["conditions"].as_array()?.clone();
            let removed = conditions.iter().find(|x| x["type"] == "Removed")?.clone();
            (removed["status"] == "False").then_some((c, removed))
        }
    })
    .await;
    let (c, removed) = held;
    let message = removed["message"].as_str().unwrap();
    assert!(message.contains("host node1"), "{message}");
    assert!(
        c["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "controller.cattle.io/cluster-provisioner"),
        "{c}"
    );
    // Its state is kept until the host is cleaned: the owner can still download it.
    let (ok, out) = setup.ctl(&["cluster", "rkestate", "solo"]);
    assert!(ok && out.contains("certificatesBundle"), "{out}");

    // Back: the removal goes through, and nothing of the cluster is left on the host.
    host.set_link(true);
    eventually(REMOVED, "the cluster is gone", || {
        let gone = cluster_json(&setup, "solo").is_none();
        async move { gone.then_some(()) }
    })
    .await;
    let left = processes_in(host);
    assert!(provisioned(&left).is_empty(), "left running: {:#?}", provisioned(&left));
    for d in owned {
        assert!(!host.root_dir().join(d).exists(), "{d} is left under the prefix path");
    }
    let log = setup.server_log();
    assert!(log.contains("the provisioner removed the cluster"), "{log}");
    let store = setup.stop_and_open_store();
    match store.get("rkeclusterstates", None, "solo").await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("the cluster's state is left: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_exits_non_zero_naming_the_failed_step_or_what_it_waited_for() {
    let setup = Setup::start().await;
    // A key the host does not accept: a permanent failure of the host's step.
    let other_key = setup.path("other_key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", other_key.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let yml = |name: &str, address: &str, key: &Path| {
        let path = setup.path(&format!("{name}.yml"));
        std::fs::write(
            &path,
            format!(
                "kubernetes_version: v1.20.2\nprefix_path: /srv/node\nnodes:\n  - address: {address}\n    \
                 user: root\n    ssh_key_path: {}\n    hostname_override: node1\n    role: [etcd, controlplane, worker]\n",
                key.display()
            ),
        )
        .unwrap();
        path
    };
    let refused = yml("refused", setup.host().address(), &other_key);
    let (ok, out) =
        setup.ctl(&["cluster", "create", "refused", "--rke", refused.to_str().unwrap(), "--timeout", "5m"]);
    assert!(!ok, "{out}");
    let error = out.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{out}"));
    assert!(error.starts_with("error: cluster refused failed at step \"host node1\": "), "{out}");
    assert!(out.contains("] host node1: failed"), "{out}");
    eprintln!("{out}");

    // Nobody at this address: retried until the timeout, which says what it waited for.
    let nobody = format!("10.213.{}.250", setup.hosts.set_number());
    let key = key_file(setup.dir.path(), &setup.hosts);
    let away = yml("away", &nobody, &key);
    let started = std::time::Instant::now();
    let (ok, out) =
        setup.ctl(&["cluster", "create", "away", "--rke", away.to_str().unwrap(), "--timeout", "25s"]);
    let took = started.elapsed();
    assert!(!ok, "{out}");
    assert!(took >= Duration::from_secs(25) && took < Duration::from_secs(60), "{took:?}: {out}");
    let error = out.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{out}"));
    assert!(error.starts_with("error: timed out after 25s waiting for cluster away to be active"), "{out}");
    assert!(
        error.contains("; retrying after the last failure: host node1: ") && error.contains("unreachable"),
        "{out}"
    );
    eprintln!("{out}");

    // --no-wait: the id, at once.
    let (ok, out) = setup.ctl(&["cluster", "create", "later", "--rke", away.to_str().unwrap(), "--no-wait"]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().next(), Some("later"), "{out}");
    assert!(!out.contains("] host node1"), "not followed: {out}");
    let (ok, out) = setup.ctl(&["cluster", "create", "x", "--no-wait"]);
    assert!(!ok && out.contains("--rke"), "--no-wait needs --rke: {out}");
}
