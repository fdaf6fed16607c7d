//! What the benches that run the release binaries share (those of clusters built on SSH hosts, and
//! the proxy in front of a real API server): the bundles of local binaries, a `rancher-server`
//! process logged in as the admin, reading a process's memory from `/proc`, and how figures are
//! written.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rancher_provision::bundle::Bundle;
use rancher_test_support::free_port;
use rancher_test_support::kube::kube_bin_dir;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::json_of;

/// The admin's bootstrap password of the benches' servers.
pub const PASSWORD: &str = "bench-Passw0rd-123";

/// The programs a bench runs from its bin directory.
const PROGRAMS: [&str; 3] = ["rancher-server", "rancher-agent", "rancher-sim"];

/// The directory of `rancher-server`, `rancher-agent` and `rancher-sim`: `given`, else the bench's
/// own directory.
///
/// # Errors
/// When one of the programs is not there (with the command that builds them).
pub fn bin_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    let bins = match given {
        Some(d) => d,
        None => std::env::current_exe()?.parent().context("the bench's directory")?.to_owned(),
    };
    for b in PROGRAMS {
        if !bins.join(b).exists() {
            bail!(
                "{} is missing: cargo build --release --workspace --bins (or --bin-dir)",
                bins.join(b).display()
            );
        }
    }
    Ok(bins)
}

/// The directory of `rancher-server`: `given`, else the bench's own directory.
///
/// # Errors
/// When it is not there (with the command that builds it).
pub fn server_bin_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    let bins = match given {
        Some(d) => d,
        None => std::env::current_exe()?.parent().context("the bench's directory")?.to_owned(),
    };
    if !bins.join("rancher-server").exists() {
        bail!(
            "{} is missing: cargo build --release --bin rancher-server",
            bins.join("rancher-server").display()
        );
    }
    Ok(bins)
}

/// The bundle's components and the local files they are made of (with the optional `etcdctl`,
/// which restoring an etcd snapshot needs).
fn components(bins: &Path) -> [(&'static str, PathBuf); 7] {
    let kube = kube_bin_dir();
    [
        ("etcd", PathBuf::from("/usr/bin/etcd")),
        ("etcdctl", PathBuf::from("/usr/bin/etcdctl")),
        ("kube-apiserver", kube.join("kube-apiserver")),
        ("kube-controller-manager", kube.join("kube-controller-manager")),
        ("kube-scheduler", kube.join("kube-scheduler")),
        ("kubelet", bins.join("rancher-sim")),
        ("node-agent", bins.join("rancher-agent")),
    ]
}

/// Writes `bundle`'s manifest as `dir/<version>.yaml`.
fn write_manifest(dir: &Path, bundle: &Bundle) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(format!("{}.yaml", bundle.version));
    std::fs::write(&file, bundle.to_manifest()).with_context(|| format!("writing {}", file.display()))
}

/// The bundle `v1.20.2` of the local binaries (`bins`: where `rancher-sim` and `rancher-agent`
/// are), its manifest written into `dir`.
///
/// # Errors
/// A binary that cannot be read, or the manifest that cannot be written.
pub fn write_bundle(dir: &Path, bins: &Path) -> Result<Bundle> {
    let files = components(bins);
    let files: Vec<(&str, &Path)> = files.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let bundle = Bundle::from_local_files("v1.20.2", &files)?;
    write_manifest(dir, &bundle)?;
    Ok(bundle)
}

/// An upgrade target: bundle `version` of copies of [`write_bundle`]'s binaries (the node agent
/// excepted), each one byte longer (another checksum: another build), with the API server run
/// with `--v=3`; the copies go into `dir/<version>/`, the manifest into `dir`.
///
/// # Errors
/// A binary that cannot be read or copied, or the manifest that cannot be written.
pub fn write_other_bundle(dir: &Path, bins: &Path, version: &str) -> Result<Bundle> {
    let copies = dir.join(version);
    std::fs::create_dir_all(&copies).with_context(|| format!("creating {}", copies.display()))?;
    let mut files = Vec::new();
    for (name, from) in components(bins) {
        if name == "node-agent" {
            files.push((name, from));
            continue;
        }
        let mut bytes = std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
        bytes.push(0);
        let to = copies.join(name);
        std::fs::write(&to, bytes).with_context(|| format!("writing {}", to.display()))?;
        files.push((name, to));
    }
    let pairs: Vec<(&str, &Path)> = files.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let mut bundle = Bundle::from_local_files(version, &pairs)?;
    bundle
        .components
        .get_mut("kube-apiserver")
        .context("the bundle has no kube-apiserver")?
        .args
        .insert("v".into(), "3".into());
    write_manifest(dir, &bundle)?;
    Ok(bundle)
}

/// A `rancher-server` process, logged in as the admin; killed on drop.
pub struct ServerProc {
    child: Child,
    /// Its address on loopback (`https://127.0.0.1:<port>`).
    pub url: String,
    /// A client for it (its certificate is not checked: the bench talks to its own server).
    pub http: reqwest::Client,
    /// The admin's bearer token.
    pub token: String,
}

impl std::fmt::Debug for ServerProc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProc").field("pid", &self.child.id()).field("url", &self.url).finish()
    }
}

impl ServerProc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET {url}{path}` as the admin, as JSON.
    ///
    /// # Errors
    /// The request fails, answers other than 2xx, or not with JSON.
    pub async fn get(&self, path: &str) -> Result<Value> {
        let resp = self.http.get(format!("{}{path}", self.url)).bearer_auth(&self.token).send().await?;
        json_of(resp, &format!("GET {path}")).await
    }

    /// Creates the imported cluster `name` as the admin; its registration token (the
    /// `default-token` ClusterRegistrationToken, with `status.token` and `status.manifestUrl`).
    ///
    /// # Errors
    /// A call the server refuses.
    pub async fn create_imported(&self, name: &str) -> Result<Value> {
        let cluster = json!({"metadata": {"name": name}, "spec": {"importedConfig": {}}});
        self.send(reqwest::Method::POST, "/v3/clusters", &cluster).await?;
        self.get(&format!("/v3/clusterregistrationtokens/{name}:default-token")).await
    }

    /// `method {url}{path}` with the JSON `body` as the admin; the answer as JSON.
    ///
    /// # Errors
    /// The request fails, answers other than 2xx, or not with JSON.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> Result<Value> {
        let what = format!("{method} {path}");
        let resp = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        json_of(resp, &what).await
    }
}

impl ServerProc {
    /// Stops the server the way an orchestrator does (SIGTERM) and waits until it has exited.
    ///
    /// # Errors
    /// The signal cannot be sent, or the server is still running after `within`.
    pub async fn terminate(mut self, within: Duration) -> Result<()> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.child.id());
        }
        let deadline = Instant::now() + within;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("rancher-server {} still runs {within:?} after SIGTERM", self.child.id());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bins/rancher-server` with its data in `dir/data`, the bundles of `dir/bundles` (the
/// bundle `v1.20.2` of [`write_bundle`] written there first), its log in `dir/server.log`, and
/// the server URL the hosts use on `bridge`; waits until the admin logs in.
///
/// # Errors
/// The bundle cannot be written, the server not started, or no login succeeds within a minute.
pub async fn start_server(dir: &Path, bins: &Path, bridge: &str) -> Result<ServerProc> {
    let bundles = dir.join("bundles");
    write_bundle(&bundles, bins)?;
    start_server_with(dir, bins, bridge, &["--bundle-dir".as_ref(), bundles.as_os_str()]).await
}

/// Starts `bins/rancher-server` with its data in `dir/data`, its log in `dir/server.log`, the
/// server URL `https://<host>:<port>` and the flags `extra`; waits until the admin logs in.
///
/// # Errors
/// The server cannot be started, or no login succeeds within a minute.
pub async fn start_server_with(dir: &Path, bins: &Path, host: &str, extra: &[&OsStr]) -> Result<ServerProc> {
    start_server_on(dir, bins, host, free_port(), extra).await
}

/// [`start_server_with`] on a given `port` (a server started again where its clients know it).
///
/// # Errors
/// The server cannot be started, or no login succeeds within a minute.
pub async fn start_server_on(
    dir: &Path,
    bins: &Path,
    host: &str,
    port: u16,
    extra: &[&OsStr],
) -> Result<ServerProc> {
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = Command::new(bins.join("rancher-server"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--https-listen", &format!("0.0.0.0:{port}")])
        .args(["--server-url", &format!("https://{host}:{port}")])
        .args(extra)
        .env("CATTLE_BOOTSTRAP_PASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting rancher-server")?;
    let url = format!("https://127.0.0.1:{port}");
    // The bench talks to its own server on loopback; the server's CA is not worth pinning here.
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build()?;
    let mut server = ServerProc { child, url, http, token: String::new() };
    let deadline = Instant::now() + Duration::from_secs(60);
    server.token = loop {
        let login = server
            .http
            .post(format!("{}/v3-public/localProviders/local?action=login", server.url))
            .json(&json!({"username": "admin", "password": PASSWORD}))
            .send()
            .await;
        if let Ok(resp) = login
            && let Ok(v) = json_of(resp, "login").await
            && let Some(t) = v["token"].as_str()
        {
            break t.to_owned();
        }
        if Instant::now() > deadline {
            bail!(
                "the server did not answer a login within a minute (see {})",
                dir.join("server.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    Ok(server)
}

/// `key: value` of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in kB.
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// kB as MB with one decimal.
pub fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

/// Seconds with one decimal.
pub fn secs(d: f64) -> String {
    format!("{d:.1} s")
}
