//! A real kube-apiserver 1.20 (with its etcd, controller-manager and scheduler:
//! `rancher_test_support::kube::ControlPlane`) imported into a `rancher-server` process the way a
//! user imports a cluster — the import manifest applied with `kubectl`, a `rancher-agent` process
//! started with the deployed agent's settings — and the three ways to send it a request: directly as
//! its admin, directly as the agent's credential with the impersonation headers the proxy sends, and
//! through the server's `/k8s/clusters/<id>/…` with a rancher API token.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use http::HeaderMap;
use rancher_auth::proxy::{UserInfo, downstream_request_headers};
use rancher_test_support::kube::{ControlPlane, Options};
use rancher_test_support::{Proc, eventually, read_log};
use serde_json::Value;

use crate::ScratchDir;
use crate::http_load::{Target, client_tls};
pub use crate::import::CLUSTER;
use crate::import::{WAIT, address_of, import, kubectl, proxied_target, start_agent, wait_proxied};
use crate::rke::{ServerProc, start_server_with};

/// The one request the API server audits: a proxied read of it shows whom the proxy impersonates.
const PROBE_CONFIGMAP: &str = "rancher-bench-identity";
/// Audits that configmap only (at `Metadata`: who, as whom); every other request is `None`, which
/// costs the API server one pass over two rules.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  resources:
  - group: \"\"
    resources: [configmaps]
    resourceNames: [rancher-bench-identity]
- level: None
";
/// The agent's credential is the token of this service account, which the import manifest makes.
const AGENT_ACCOUNT: (&str, &str) = ("cattle-system", "cattle");

/// The running pieces, stopped when dropped (the agent first, then the server, then the API server).
pub struct Imported {
    agent: Proc,
    server: ServerProc,
    server_ca: String,
    control_plane: ControlPlane,
    admin_token: String,
    agent_token: String,
    _dir: ScratchDir,
}

/// 32 hex digits from the kernel's random source.
fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The token of `namespace/account`'s service-account Secret (made by the controller-manager).
fn service_account_token(admin: &Path, (namespace, account): (&str, &str)) -> Option<String> {
    let secrets: Value = serde_json::from_str(
        &kubectl(
            admin,
            &[
                "-n",
                namespace,
                "get",
                "secrets",
                "--field-selector",
                "type=kubernetes.io/service-account-token",
                "-o",
                "json",
            ],
        )
        .ok()?,
    )
    .ok()?;
    let secret = secrets["items"].as_array()?.iter().find(|s| {
        s["metadata"]["annotations"]["kubernetes.io/service-account.name"] == account
            && s["data"]["token"].is_string()
    })?;
    let name = secret["metadata"]["name"].as_str()?;
    kubectl(
        admin,
        &["-n", namespace, "get", "secret", name, "-o", "go-template={{.data.token | base64decode}}"],
    )
    .ok()
    .filter(|t| !t.trim().is_empty())
    .map(|t| t.trim().to_owned())
}

impl Imported {
    /// Starts the control plane (with a static admin token and the identity audit), a
    /// `rancher-server` from `bins` with a fresh data dir, creates the imported cluster
    /// [`CLUSTER`], applies its import manifest, starts `rancher-agent` with the deployed agent's
    /// settings and the agent service account's token, and waits until a proxied read succeeds.
    ///
    /// # Errors
    /// A step that fails; its process's log is named.
    ///
    /// # Panics
    /// When the control plane does not come up, or a step does not finish within two minutes.
    pub async fn start(bins: &Path) -> Result<Imported> {
        let admin_token = random_token()?;
        let options = Options {
            admin_token: Some(admin_token.clone()),
            audit_policy: Some(AUDIT_POLICY.to_owned()),
            ..Options::default()
        };
        let control_plane = ControlPlane::start_with(options).await;
        let admin = control_plane.admin_kubeconfig();

        let dir = ScratchDir::new()?;
        let server = start_server_with(dir.path(), bins, "127.0.0.1", &[]).await?;
        let server_ca = server.http.get(format!("{}/cacerts", server.url)).send().await?.text().await?;
        let settings = import(&server, &admin, dir.path()).await?;
        let agent_token = eventually(WAIT, "the agent's service account has its token", || {
            let token = service_account_token(&admin, AGENT_ACCOUNT);
            async move { token }
        })
        .await;
        // What the agent would read in its pod: the API server's address and CA and its account's
        // token.
        let ca_file = dir.path().join("cluster-ca.pem");
        std::fs::write(&ca_file, control_plane.ca_pem())?;
        let agent_kubeconfig = dir.path().join("agent.kubeconfig");
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    \
             certificate-authority: {}\nusers:\n- name: agent\n  user:\n    token: {agent_token}\n\
             contexts:\n- name: c\n  context: {{cluster: c, user: agent}}\ncurrent-context: c\n",
            control_plane.server_url(),
            ca_file.display(),
        );
        std::fs::write(&agent_kubeconfig, kubeconfig)?;
        let agent = start_agent(bins, &settings, &agent_kubeconfig, &dir.path().join("agent.log"));

        let imported =
            Imported { agent, server, server_ca, control_plane, admin_token, agent_token, _dir: dir };
        wait_proxied(&imported.server).await;
        Ok(imported)
    }

    /// Whom the proxy impersonates for the server's admin, as the API server saw it: one proxied
    /// read of the audited configmap, and its audit event's `impersonatedUser`. The event's `user`
    /// must be the agent's service account, the credential [`Imported::impersonating`] uses.
    ///
    /// # Errors
    /// When the proxied read is not answered by the API server (404), or the event is not logged
    /// within ten seconds or does not say so.
    pub async fn proxied_identity(&self) -> Result<UserInfo> {
        let path = format!("/k8s/clusters/{CLUSTER}/api/v1/namespaces/default/configmaps/{PROBE_CONFIGMAP}");
        let resp = self
            .server
            .http
            .get(format!("{}{path}", self.server.url))
            .bearer_auth(&self.server.token)
            .send()
            .await?;
        if resp.status() != 404 {
            bail!("the proxied probe: {} {}", resp.status(), resp.text().await?);
        }
        let log = self.control_plane.audit_log();
        let event = eventually(Duration::from_secs(10), "the API server audits the proxied probe", || {
            let text = read_log(&log);
            let event = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|e| e["objectRef"]["name"] == PROBE_CONFIGMAP && e["impersonatedUser"].is_object());
            async move { event }
        })
        .await;
        let expected = format!("system:serviceaccount:{}:{}", AGENT_ACCOUNT.0, AGENT_ACCOUNT.1);
        if event["user"]["username"] != expected.as_str() {
            bail!(
                "the proxy authenticated as {} instead of the agent's {expected}",
                event["user"]["username"]
            );
        }
        let who = &event["impersonatedUser"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
        };
        let extra: BTreeMap<String, Vec<String>> =
            who["extra"].as_object().into_iter().flatten().map(|(k, v)| (k.clone(), strings(v))).collect();
        Ok(UserInfo {
            username: who["username"].as_str().context("impersonatedUser without a username")?.to_owned(),
            uid: who["uid"].as_str().unwrap_or_default().to_owned(),
            groups: strings(&who["groups"]),
            extra,
        })
    }

    /// `path` on the API server as its admin (the static token).
    ///
    /// # Errors
    /// A CA that is not PEM.
    pub fn direct(&self, path: &str) -> Result<Target> {
        self.api_server_target(path, &self.admin_token, HeaderMap::new())
    }

    /// `path` on the API server with the agent's credential and the `Impersonate-*` headers the
    /// proxy builds for `user` (with [`downstream_request_headers`], as the proxy does).
    ///
    /// # Errors
    /// A user that cannot be stated as headers, or a CA that is not PEM.
    pub fn impersonating(&self, path: &str, user: &UserInfo) -> Result<Target> {
        let headers = impersonation_only(&downstream_request_headers(&HeaderMap::new(), user)?);
        self.api_server_target(path, &self.agent_token, headers)
    }

    /// `path` through the server's proxy, `/k8s/clusters/<id><path>`, with the admin's API token.
    ///
    /// # Errors
    /// A server URL without a port, or a CA that is not PEM.
    pub fn proxied(&self, path: &str) -> Result<Target> {
        proxied_target(&self.server, &self.server_ca, path)
    }

    fn api_server_target(&self, path: &str, token: &str, headers: HeaderMap) -> Result<Target> {
        Ok(Target {
            addr: address_of(self.control_plane.server_url())?,
            tls: client_tls(self.control_plane.ca_pem())?,
            path: path.to_owned(),
            token: token.to_owned(),
            headers,
        })
    }

    /// The process ids of the server, the agent, the API server and etcd.
    ///
    /// # Errors
    /// When etcd does not run.
    pub fn pids(&self) -> Result<Pids> {
        Ok(Pids {
            server: self.server.pid(),
            agent: self.agent.child.id(),
            api_server: self.control_plane.apiserver_pid(),
            etcd: self.control_plane.etcd_pid().context("etcd is not running")?,
        })
    }
}

/// The processes whose CPU time the bench reads.
#[derive(Clone, Copy, Debug)]
pub struct Pids {
    /// `rancher-server`.
    pub server: u32,
    /// `rancher-agent`.
    pub agent: u32,
    /// kube-apiserver.
    pub api_server: u32,
    /// etcd.
    pub etcd: u32,
}

impl Pids {
    /// In the order the bench prints them.
    pub fn all(&self) -> [u32; 4] {
        [self.server, self.agent, self.api_server, self.etcd]
    }
}

/// Only the `Impersonate-*` headers of `headers` (the load generator sends `accept` itself).
fn impersonation_only(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for (name, value) in headers {
        if name.as_str().starts_with("impersonate-") {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}
