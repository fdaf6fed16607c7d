//! Shared by the import and tunnel tests: real `rancher-server` and `rancher-agent` processes with
//! their logs in files ([`Proc`]), an in-process `rancher-sim`, `kubectl`, and the steps of importing a
//! cluster. The helpers every crate's tests use come from `rancher_test_support`, re-exported here.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

pub use crate::common::ADMIN_PASSWORD;
/// Generous: the machine is small and shared.
pub const WAIT: Duration = Duration::from_secs(90);

pub use rancher_test_support::kubectl::default_kubectl as kubectl;
pub use rancher_test_support::{Proc, eventually, free_port, insecure_client, install_crypto, read_log};

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

/// Logs in as admin over the API and returns the bearer token.
pub async fn login(url: &str) -> String {
    login_as(url, "admin", ADMIN_PASSWORD).await
}

/// An API token of local user `username`.
pub async fn login_as(url: &str, username: &str, password: &str) -> String {
    let resp: Value = insecure_client()
        .post(format!("{url}/v3-public/localProviders/local?action=login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    resp["token"].as_str().unwrap_or_else(|| panic!("login {username}: {resp}")).to_owned()
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
    registration_token(url, bearer, name).await
}

/// The status of cluster `name`'s default registration token (its command, manifest URL, token).
pub async fn registration_token(url: &str, bearer: &str, name: &str) -> Value {
    let crt: Value = insecure_client()
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

/// `rancherctl login` to `url` as admin (with `--insecure`), in the HOME `home`.
pub fn login_admin(home: &Path, url: &str) {
    let (ok, out) =
        rancherctl(home, &["login", url, "--username", "admin", "--password", ADMIN_PASSWORD, "--insecure"]);
    assert!(ok, "rancherctl login {url}: {out}");
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
