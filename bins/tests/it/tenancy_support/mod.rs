//! Shared by the tenancy and authorized-cluster-endpoint tests: a real `rancher-server`, a
//! `rancher-sim` cluster imported through its manifest with a real `rancher-agent`, the management
//! API as JSON, and `kubectl`.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use serde_json::{Value, json};

pub use crate::import_support::*;
pub use rancher_test_support::kubectl::kubectl_at;

/// A server with one imported, connected sim cluster.
pub struct World {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub admin: String,
    pub sim: rancher_sim::SimHandle,
    /// The sim's admin kubeconfig.
    pub kubeconfig: PathBuf,
    pub agent: Proc,
    /// What the agent was started with (to start it again).
    pub agent_env: AgentEnv,
    pub cluster: String,
}

/// One management API call; the body comes back as JSON (or a JSON string of the text).
pub async fn api(url: &str, method: &str, path: &str, bearer: &str, body: Option<Value>) -> (u16, Value) {
    let http = insecure_client();
    let mut req = http.request(method.parse().unwrap(), format!("{url}{path}")).bearer_auth(bearer);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (code, body)
}

impl World {
    /// [`World::start`] with the agent serving the authorized cluster endpoint's webhook on a free port
    /// with a fresh self-signed certificate, which the sim is told to trust. Keep the returned directory
    /// (the certificate and key) for as long as the world runs.
    pub async fn start_with_ace_webhook(cluster: &str) -> (World, tempfile::TempDir) {
        install_crypto();
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let certs = tempfile::tempdir().unwrap();
        let (cert, key) = (certs.path().join("ace.crt"), certs.path().join("ace.key"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        let port = free_port();
        let sim = rancher_sim::Sim::builder()
            .auth_webhook(format!("https://127.0.0.1:{port}/v1/authenticate"), Some(made.cert.pem()));
        let listen = format!("127.0.0.1:{port}");
        let ace = [
            "--ace-listen",
            &listen,
            "--ace-cert",
            cert.to_str().unwrap(),
            "--ace-key",
            key.to_str().unwrap(),
        ];
        (World::start(cluster, sim, &ace).await, certs)
    }

    /// Starts the server and a sim built by `sim`, imports the sim as `cluster` and starts its agent
    /// with `agent_extra` flags; returns once the cluster is connected.
    pub async fn start(cluster: &str, sim: rancher_sim::SimBuilder, agent_extra: &[&str]) -> World {
        install_crypto();
        let dir = tempfile::tempdir().unwrap();
        // The supervisors' debug lines record each downstream sync attempt.
        let log = dir.path().join("server.log");
        let rust_log = "info,rancher::server::supervisor=debug";
        let server = Server::start_logging(&dir.path().join("data"), 0, &log, &[], rust_log).await;
        let admin = login(&server.url).await;
        let sim = sim.name(cluster).start().await.unwrap();
        let kubeconfig = dir.path().join("sim.kubeconfig");
        std::fs::write(&kubeconfig, sim.kubeconfig_yaml()).unwrap();
        let crt = create_imported(&server.url, &admin, cluster).await;
        let manifest = crt["manifestUrl"].as_str().unwrap_or_else(|| panic!("no manifestUrl in {crt}"));
        let env = apply_manifest(manifest, &kubeconfig, dir.path()).await;
        let agent = start_agent(&env, &kubeconfig, &dir.path().join("agent.log"), agent_extra);
        let world =
            World { dir, server, admin, sim, kubeconfig, agent, agent_env: env, cluster: cluster.to_owned() };
        world.wait_connected().await;
        world
    }

    pub async fn wait_connected(&self) {
        let (url, admin, cluster) = (self.server.url.clone(), self.admin.clone(), self.cluster.clone());
        eventually(WAIT, "the cluster is connected", || {
            let (url, admin, cluster) = (url.clone(), admin.clone(), cluster.clone());
            async move {
                let (_, c) = api(&url, "GET", &format!("/v3/clusters/{cluster}"), &admin, None).await;
                c["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Connected" && c["status"] == "True")
                    .then_some(())
            }
        })
        .await;
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        api(&self.server.url, method, path, &self.admin, body).await
    }

    /// Creates a local user; returns its id.
    pub async fn user(&self, username: &str, password: &str) -> String {
        let (code, u) = self
            .call("POST", "/v3/users", Some(json!({"spec": {"username": username, "password": password}})))
            .await;
        assert_eq!(code, 201, "{u}");
        u["id"].as_str().unwrap().to_owned()
    }

    /// `kubectl` against the sim as its admin.
    pub fn kubectl(&self, args: &[&str]) -> (bool, String) {
        kubectl_at(&self.kubeconfig, args)
    }

    /// Applies a YAML document to the sim as its admin.
    pub fn apply(&self, yaml: &str) {
        let file = self.dir.path().join(format!("apply-{}.yaml", rand_suffix()));
        std::fs::write(&file, yaml).unwrap();
        let (ok, out) = self.kubectl(&["apply", "-f", file.to_str().unwrap()]);
        assert!(ok, "kubectl apply: {out}");
    }

    /// Whether `kubectl --as <user> <args>` succeeds (impersonating through the sim admin), and its output.
    pub fn as_user(&self, user: &str, args: &[&str]) -> (bool, String) {
        let mut all = vec!["--as", user];
        all.extend_from_slice(args);
        self.kubectl(&all)
    }

    /// Waits until `kubectl --as user args` succeeds (`allowed`) or is refused as Forbidden.
    pub async fn wait_access(&self, user: &str, args: &[&str], allowed: bool, what: &str) {
        eventually(WAIT, what, || {
            let (ok, out) = self.as_user(user, args);
            let done =
                if allowed { ok } else { !ok && (out.contains("Forbidden") || out.contains("forbidden")) };
            async move { done.then_some(()) }
        })
        .await;
    }

    /// Names of the RoleBindings in `ns` (all of them, ours or not).
    pub fn role_bindings(&self, ns: &str) -> Vec<String> {
        let (ok, out) =
            self.kubectl(&["-n", ns, "get", "rolebindings", "-o", "jsonpath={.items[*].metadata.name}"]);
        assert!(ok, "{out}");
        out.split_whitespace().map(str::to_owned).collect()
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}
