//! Shared by the proxy, token and kubeconfig tests: a real `rancher-server` with an in-process
//! `rancher-sim` imported through its manifest and a `rancher-agent` process, and kubectl (1.27 and
//! 1.33) driven through the server's proxy with a kubeconfig the server generated.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::import_support::*;

pub use rancher_test_support::kubectl::{Kubectl, PATIENCE, VERSIONS, read_until};

/// A server with one imported, connected sim cluster.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub server: Server,
    pub sim: rancher_sim::SimHandle,
    pub agent: Proc,
    pub agent_env: AgentEnv,
    pub cluster: String,
    pub admin_token: String,
    pub http: reqwest::Client,
}

impl Env {
    /// Starts everything; `server_args` are extra `rancher-server` flags.
    pub async fn start(server_args: &[&str]) -> Env {
        Env::start_logging(server_args, "info").await
    }

    /// Like [`Env::start`], with the server's `RUST_LOG=<rust_log>`.
    pub async fn start_logging(server_args: &[&str], rust_log: &str) -> Env {
        install_crypto();
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let log = dir.path().join("server.log");
        let server = Server::start_logging(&dir.path().join("data"), 0, &log, server_args, rust_log).await;
        login_admin(&home, &server.url);
        let sim = rancher_sim::Sim::builder().name("sim-p").nodes(4).start().await.unwrap();
        let cluster = "imp-p".to_owned();
        let (ok, out) = rancherctl(&home, &["cluster", "create", &cluster, "--import"]);
        assert!(ok, "{out}");
        let url = out
            .split_whitespace()
            .find(|w| w.starts_with("https://") && w.ends_with(".yaml"))
            .unwrap_or_else(|| panic!("no import URL in {out}"))
            .to_owned();
        let kc = dir.path().join("sim.kubeconfig");
        std::fs::write(&kc, sim.kubeconfig_yaml()).unwrap();
        let env = apply_manifest(&url, &kc, dir.path()).await;
        let agent_env = env;
        let agent = start_agent(&agent_env, &kc, &dir.path().join("agent.log"), &[]);
        wait_state(&home, &cluster, "active", WAIT).await;
        let admin_token = login(&server.url).await;
        Env { dir, home, server, sim, agent, agent_env, cluster, admin_token, http: insecure_client() }
    }

    /// The server's log so far.
    pub fn server_log(&self) -> String {
        self.server.proc.log_text()
    }

    /// `rancherctl kubeconfig <cluster>` as admin, written to a file.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        let (ok, yaml) = rancherctl(&self.home, &["kubeconfig", &self.cluster]);
        assert!(ok, "{yaml}");
        let path = self.dir.path().join("admin.kubeconfig");
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// A kubeconfig generated over the API with `bearer`'s identity.
    pub async fn kubeconfig_for(&self, bearer: &str, name: &str) -> PathBuf {
        let (code, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/v3/clusters/{}?action=generateKubeconfig", self.cluster),
                bearer,
                None,
            )
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["type"], "generateKubeconfigOutput");
        let path = self.dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&path, body["config"].as_str().unwrap()).unwrap();
        path
    }

    /// A request to the server with `bearer`; the status code and the JSON (or text) answer.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.server.url)).bearer_auth(bearer);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let code = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (code, v)
    }

    /// Creates a local user and logs them in; returns (user id, session token).
    pub async fn user(&self, username: &str) -> (String, String) {
        let password = format!("{username}-Passw0rd-123");
        let (code, u) = self
            .call(
                reqwest::Method::POST,
                "/v3/users",
                &self.admin_token,
                Some(&json!({"spec": {"username": username, "password": password}})),
            )
            .await;
        assert_eq!(code, 201, "{u}");
        let resp: Value = self
            .http
            .post(format!("{}/v3-public/localProviders/local?action=login", self.server.url))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (u["id"].as_str().unwrap().to_owned(), resp["token"].as_str().unwrap().to_owned())
    }

    /// Creates a pod directly on the sim (not through the proxy).
    pub fn create_pod_directly(&self, name: &str, namespace: &str) {
        let kc = self.dir.path().join("sim.kubeconfig");
        let out = std::process::Command::new(kubectl())
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["-n", namespace, "run", name, "--image=busybox:1.36", "--restart=Never"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// The kubectl `version` with `kubeconfig`.
    pub fn kubectl(&self, version: &'static str, kubeconfig: &Path) -> Kubectl {
        let home = self
            .dir
            .path()
            .join(format!("kubectl-{}-{version}", kubeconfig.file_stem().unwrap().to_string_lossy()));
        Kubectl::at(version, kubeconfig, &home)
    }
}

/// The secret part of a `token-<id>:<secret>` credential.
pub fn secret_of(token: &str) -> &str {
    token.split_once(':').map(|(_, s)| s).expect("a token-<id>:<secret> credential")
}
