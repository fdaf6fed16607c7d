//! Shared by the tests of clusters built on SSH hosts: a `rancher-server` the hosts reach on their
//! bridge, with a bundle of the real etcd 3.4, kube-apiserver / controller-manager / scheduler 1.20,
//! the simulated kubelet and the node agent; `cluster.yml` for test hosts; killing a host's processes.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rancher_provision::bundle::Bundle;
use rancher_test_support::kube::kube_bin_dir;
use rancher_test_support::ssh_hosts::{SshHost, SshHosts};

use crate::import_support::*;

/// The simulated kubelet: the `rancher-sim` binary built beside the server.
pub fn sim_binary() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_rancher-server")).with_file_name("rancher-sim");
    assert!(
        p.exists(),
        "{} is missing: build the workspace's binaries (cargo build --workspace)",
        p.display()
    );
    p
}

/// A bundle `v1.20.2` of the local binaries (with the optional `etcdctl`, which restoring etcd
/// snapshots needs), written as a manifest into `dir`.
pub fn write_bundle(dir: &Path) {
    let kube = kube_bin_dir();
    let (agent, sim) = (PathBuf::from(env!("CARGO_BIN_EXE_rancher-agent")), sim_binary());
    let files = [
        ("etcd", PathBuf::from("/usr/bin/etcd")),
        ("etcdctl", PathBuf::from("/usr/bin/etcdctl")),
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
pub struct HostedServer {
    /// The server process (stopped on drop).
    pub proc: Proc,
    /// For this test (loopback).
    pub url: String,
    /// How it was started (to start it again on the same port and data).
    dir: PathBuf,
    bridge: String,
    port: u16,
    extra: Vec<String>,
}

impl HostedServer {
    /// Kills the server (SIGKILL: no clean shutdown) and starts it again on the same port with the
    /// same data; returns once it answers. Its log goes on in `server-<n>.log`.
    pub async fn restart(&mut self, n: usize) {
        self.proc.signal("KILL");
        let _ = self.proc.exit_within(std::time::Duration::from_secs(10)).await;
        let log = self.dir.join(format!("server-{n}.log"));
        self.proc = spawn_server(&self.dir, &self.bridge, self.port, &self.extra, &log);
        wait_answers(&self.url).await;
    }
}

/// Starts `rancher-server` in `dir` (its data, `server.log`, and `bundles/` with the bundle of
/// [`write_bundle`] beside any manifest already there), listening on all addresses so that the hosts
/// reach it at `bridge`; returns once it answers.
pub async fn start_server(dir: &Path, bridge: &str) -> HostedServer {
    start_server_with(dir, bridge, &[]).await
}

/// As [`start_server`], with `extra` flags for the server.
pub async fn start_server_with(dir: &Path, bridge: &str, extra: &[&str]) -> HostedServer {
    write_bundle(&dir.join("bundles"));
    let port = free_port();
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    let proc = spawn_server(dir, bridge, port, &extra, &dir.join("server.log"));
    let url = format!("https://127.0.0.1:{port}");
    wait_answers(&url).await;
    HostedServer { proc, url, dir: dir.to_owned(), bridge: bridge.to_owned(), port, extra }
}

fn spawn_server(dir: &Path, bridge: &str, port: u16, extra: &[String], log: &Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rancher-server"));
    cmd.arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--https-listen", &format!("0.0.0.0:{port}")])
        .args(["--server-url", &format!("https://{bridge}:{port}")])
        .arg("--bundle-dir")
        .arg(dir.join("bundles"))
        .args(extra)
        .env("RUST_LOG", "info,rancher::server::provisioning=debug")
        .env("CATTLE_BOOTSTRAP_PASSWORD", ADMIN_PASSWORD);
    Proc::spawn(cmd, log)
}

async fn wait_answers(url: &str) {
    let http = insecure_client();
    eventually(WAIT, "server answers /ping", || {
        let (http, url) = (http.clone(), url.to_owned());
        async move { http.get(format!("{url}/ping")).send().await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
}

/// `cluster.yml` for these hosts with these roles, the key in a file on this machine.
pub fn cluster_yml(hosts: &[SshHost], roles: &[&[&str]], key_path: &Path) -> String {
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

/// `path` without the build suffix the provisioner gives component binaries
/// (`…/opt/rke/bin/etcd-0123456789abcdef` → `…/opt/rke/bin/etcd`).
pub fn without_build(path: &str) -> &str {
    match path.rsplit_once('-') {
        Some((base, build)) if build.len() == 16 && build.bytes().all(|b| b.is_ascii_hexdigit()) => base,
        _ => path,
    }
}

/// The file of `component` under `host`'s `opt/rke/bin`, whatever its build suffix; `None` when
/// there is none, a panic when there are several.
pub fn installed_binary(host: &SshHost, component: &str) -> Option<std::path::PathBuf> {
    let dir = host.root_dir().join("opt/rke/bin");
    let found: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| without_build(&n.to_string_lossy()) == component))
        .collect();
    assert!(found.len() <= 1, "several builds of {component}: {found:?}");
    found.into_iter().next()
}

/// The pids of `host`'s processes whose program path (without its build suffix) ends with one of
/// `patterns`.
pub fn pids_in_host(host: &SshHost, patterns: &[&str]) -> Vec<u32> {
    host.pids_matching(|words| {
        words.first().is_some_and(|w| patterns.iter().any(|p| without_build(w).ends_with(p)))
    })
}

/// SIGKILLs the processes of `host` whose program path ends with one of `patterns` (see
/// [`pids_in_host`]); returns their pids.
pub fn kill_in_host(host: &SshHost, patterns: &[&str]) -> Vec<u32> {
    let killed = pids_in_host(host, patterns);
    for pid in &killed {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    killed
}

/// A `rancherctl` home in `dir`, logged in to `url` as the admin.
pub fn cli_home(dir: &Path, url: &str) -> PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let (ok, out) =
        rancherctl(&home, &["login", url, "--username", "admin", "--password", ADMIN_PASSWORD, "--insecure"]);
    assert!(ok, "{out}");
    home
}

/// The hosts' SSH key in the file `dir/id_ed25519`.
pub fn key_file(dir: &Path, hosts: &SshHosts) -> PathBuf {
    let key = dir.join("id_ed25519");
    std::fs::write(&key, hosts.client_key()).unwrap();
    key
}

/// `dir/cluster.yml` for `hosts` with these roles (see [`cluster_yml`]), the key in [`key_file`].
pub fn write_cluster_yml(dir: &Path, hosts: &SshHosts, roles: &[&[&str]]) -> PathBuf {
    let key = key_file(dir, hosts);
    let yml = dir.join("cluster.yml");
    std::fs::write(&yml, cluster_yml(hosts.hosts(), roles, &key)).unwrap();
    yml
}
