//! Shared by the import and tunnel tests: real `rancher-server` and `rancher-agent` processes with
//! their logs in files, an in-process `rancher-sim`, `kubectl`, and the steps of importing a cluster.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

pub const ADMIN_PASSWORD: &str = "bar-Passw0rd-123";
/// Generous: the machine is small and shared.
pub const WAIT: Duration = Duration::from_secs(90);

pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A loopback port reserved for this test (see [`rancher_test_support::free_port`]), for programs that
/// cannot report the port they bound. Prefer port 0 where a program says which port it got
/// (`Server::start(.., 0, ..)`).
pub fn free_port() -> u16 {
    rancher_test_support::free_port()
}

/// A log file's text without terminal colour codes.
pub fn read_log(path: &Path) -> String {
    let raw = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A child process whose stderr and stdout go to a log file; killed on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: &Path) -> Proc {
        let f = std::fs::File::create(log).unwrap();
        cmd.stdout(Stdio::from(f.try_clone().unwrap())).stderr(Stdio::from(f)).stdin(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Proc { child, log: log.to_owned() }
    }

    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status();
    }

    /// Waits for the process to exit; `None` when it is still running after `wait`.
    pub async fn exit_within(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn kill9(mut self) {
        self.signal("KILL");
        let _ = self.exit_within(Duration::from_secs(10)).await;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `wait`.
pub async fn eventually<T, F, Fut>(wait: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {wait:?}: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The kubectl the acceptance scripts use (1.33), or the one on PATH.
pub fn kubectl() -> String {
    let pinned = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
    if Path::new(pinned).exists() { pinned.to_owned() } else { "kubectl".to_owned() }
}

/// A running `rancher-server`.
pub struct Server {
    pub proc: Proc,
    pub url: String,
    pub port: u16,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts the server binary on `port` with a data dir and waits for `/ping`. With port 0 the
    /// server binds a port of its own and the one it logs is used: no other test can take it between.
    pub async fn start(data_dir: &Path, port: u16, log: &Path, extra: &[&str]) -> Server {
        Server::start_logging(data_dir, port, log, extra, "info").await
    }

    /// Like [`Server::start`], with `RUST_LOG=<rust_log>`.
    pub async fn start_logging(
        data_dir: &Path,
        port: u16,
        log: &Path,
        extra: &[&str],
        rust_log: &str,
    ) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rancher-server"));
        cmd.arg("--data-dir")
            .arg(data_dir)
            .arg("--https-listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env("RUST_LOG", rust_log)
            .env("CATTLE_BOOTSTRAP_PASSWORD", ADMIN_PASSWORD);
        let mut proc = Proc::spawn(cmd, log);
        let url = if port == 0 {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                if let Some(url) =
                    proc.log_text().lines().find_map(|l| l.strip_prefix("rancher-server listening on "))
                {
                    break url.trim().to_owned();
                }
                if let Some(st) = proc.child.try_wait().unwrap() {
                    panic!("rancher-server exited with {st} before listening:\n{}", proc.log_text());
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "rancher-server did not say where it listens"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } else {
            format!("https://127.0.0.1:{port}")
        };
        let port = url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{url}"));
        let http = insecure_client();
        eventually(WAIT, "server answers /ping", || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(format!("{url}/ping")).send().await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
        Server { proc, url, port, data_dir: data_dir.to_owned() }
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn stop(mut self) {
        self.proc.signal("TERM");
        let st = self.proc.exit_within(WAIT).await.expect("server did not stop on SIGTERM");
        assert!(st.success(), "server exited with {st}");
    }
}

pub fn insecure_client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Logs in as admin over the API and returns the bearer token.
pub async fn login(url: &str) -> String {
    let resp: Value = insecure_client()
        .post(format!("{url}/v3-public/localProviders/local?action=login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    resp["token"].as_str().unwrap_or_else(|| panic!("login: {resp}")).to_owned()
}

/// Creates an imported cluster over the API; returns its registration token's status.
pub async fn create_imported(url: &str, bearer: &str, name: &str) -> Value {
    let http = insecure_client();
    let resp = http
        .post(format!("{url}/v3/clusters"))
        .bearer_auth(bearer)
        .json(&json!({"metadata": {"name": name}, "spec": {"importedConfig": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201, "{}", resp.text().await.unwrap());
    let crt: Value = http
        .get(format!("{url}/v3/clusterregistrationtokens/{name}:default-token"))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    crt["status"].clone()
}

/// What the import manifest tells an agent.
#[derive(Clone, Debug)]
pub struct AgentEnv {
    pub server: String,
    pub checksum: String,
    pub token: String,
}

/// Fetches the manifest at `manifest_url`, `kubectl apply`s it to the cluster of `kubeconfig`, and
/// reads the agent's settings back the way the acceptance script does.
pub async fn apply_manifest(manifest_url: &str, kubeconfig: &Path, dir: &Path) -> AgentEnv {
    let yaml = insecure_client().get(manifest_url).send().await.unwrap();
    assert_eq!(yaml.status().as_u16(), 200);
    let yaml = yaml.text().await.unwrap();
    let file = dir.join("import.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let out = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["apply", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
    let after = |name: &str| {
        let mut lines = yaml.lines();
        lines.find(|l| l.trim() == format!("- name: {name}")).unwrap();
        lines.next().unwrap().trim().trim_start_matches("value:").trim().trim_matches('"').to_owned()
    };
    let out = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", "cattle-system", "get", "secret", "-o", "jsonpath={.items[?(@.data.url)].data.token}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "kubectl get secret: {}", String::from_utf8_lossy(&out.stderr));
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD
        .decode(String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap())
        .unwrap();
    AgentEnv {
        server: after("CATTLE_SERVER"),
        checksum: after("CATTLE_CA_CHECKSUM"),
        token: String::from_utf8(token).unwrap(),
    }
}

/// Starts `rancher-agent` as a process.
pub fn start_agent(env: &AgentEnv, kubeconfig: &Path, log: &Path, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rancher-agent"));
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(extra)
        .env("RUST_LOG", "info")
        .env("CATTLE_SERVER", &env.server)
        .env("CATTLE_CA_CHECKSUM", &env.checksum)
        .env("CATTLE_TOKEN", &env.token)
        .env("CATTLE_CLUSTER", "true");
    Proc::spawn(cmd, log)
}

/// `rancherctl` with its own HOME.
pub fn rancherctl(home: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rancherctl"))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The row of `name` in `rancherctl cluster ls`, split into columns.
pub fn cluster_row(home: &Path, name: &str) -> Option<Vec<String>> {
    let (ok, text) = rancherctl(home, &["cluster", "ls"]);
    if !ok {
        return None;
    }
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
}

/// Waits until `rancherctl cluster ls` shows `name` in `state`; returns the row.
pub async fn wait_state(home: &Path, name: &str, state: &str, wait: Duration) -> Vec<String> {
    let home = home.to_owned();
    eventually(wait, &format!("cluster {name} {state}"), || {
        let row = cluster_row(&home, name);
        async move { row.filter(|r| r.get(1).map(String::as_str) == Some(state)) }
    })
    .await
}
