//! A `rancher-sim` imported into a `rancher-server`, each program its own process (so that each one's
//! memory can be read on its own): the sim, the server with its embedded defaults and a fresh data
//! dir, and the `rancher-agent` a user would run after applying the import manifest — the manifest
//! applied to the sim with `kubectl`, the agent started with the settings read back from it.
//! Requests go to the sim directly as its admin, or through the server's `/k8s/clusters/<id>/…`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use base64::Engine as _;
use http::HeaderMap;
use rancher_test_support::{Proc, eventually};

use crate::ScratchDir;
use crate::http_load::{Target, client_tls};
use crate::import::{CLUSTER, WAIT, address_of, import, proxied_target, start_agent, wait_proxied};
use crate::rke::{ServerProc, start_server_with};

/// Where a sim listens and how its admin authenticates, from the kubeconfig it writes.
#[derive(Clone)]
pub struct SimAccess {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// Its CA (PEM).
    pub ca_pem: String,
    /// The admin's bearer token.
    pub token: String,
}

impl SimAccess {
    /// Reads the `server`, `certificate-authority-data` and `token` of a sim's kubeconfig (one
    /// cluster, one user: the shape `rancher-sim --kubeconfig-out` writes).
    ///
    /// # Errors
    /// A kubeconfig without one of them, or a CA that is not base64.
    pub fn from_kubeconfig(yaml: &str) -> Result<SimAccess> {
        let field =
            |key: &str| yaml.lines().find_map(|l| l.trim().strip_prefix(key)).map(|v| v.trim().to_owned());
        let ca = field("certificate-authority-data:").context("the sim's kubeconfig has no CA")?;
        Ok(SimAccess {
            url: field("server:").context("the sim's kubeconfig has no server")?,
            ca_pem: String::from_utf8(base64::engine::general_purpose::STANDARD.decode(ca)?)?,
            token: field("token:").context("the sim's kubeconfig has no token")?,
        })
    }

    /// A client for the sim's API as its admin (HTTP/1.1 or HTTP/2, as the sim offers).
    ///
    /// # Errors
    /// A CA that is not PEM.
    pub fn client(&self) -> Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", self.token).parse()?);
        Ok(reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes())?)
            .default_headers(headers)
            .build()?)
    }
}

/// The sim, the server and the agent, killed when dropped (the agent first: fields drop in order).
pub struct ImportedSim {
    agent: Proc,
    server: ServerProc,
    server_ca: String,
    sim: Proc,
    /// The sim's address and admin.
    pub sim_access: SimAccess,
    dir: ScratchDir,
}

/// The shape of the sim: its nodes, and the Events it keeps per namespace.
#[derive(Clone, Copy, Debug)]
pub struct SimShape {
    /// Simulated nodes.
    pub nodes: usize,
    /// Events kept per namespace (`rancher-sim --events-per-namespace`).
    pub events_per_namespace: usize,
}

/// Starts `bins/rancher-sim` of `shape`; returns it with the kubeconfig it wrote.
async fn start_sim(bins: &Path, dir: &Path, shape: SimShape) -> Result<(Proc, PathBuf)> {
    let kubeconfig = dir.join("sim.kubeconfig");
    let mut cmd = Command::new(bins.join("rancher-sim"));
    cmd.args(["--listen", "127.0.0.1:0", "--name", CLUSTER, "--nodes", &shape.nodes.to_string()])
        .args(["--events-per-namespace", &shape.events_per_namespace.to_string()])
        .arg("--kubeconfig-out")
        .arg(&kubeconfig)
        .env("RUST_LOG", "warn");
    let sim = Proc::spawn(cmd, &dir.join("sim.log"));
    let written = kubeconfig.clone();
    eventually(WAIT, "rancher-sim writes its kubeconfig", || {
        let done = written.exists().then_some(());
        async move { done }
    })
    .await;
    Ok((sim, kubeconfig))
}

impl ImportedSim {
    /// Starts a sim of `shape`, a `rancher-server` (fresh data dir), creates the imported
    /// cluster [`CLUSTER`], applies its import manifest to the sim, starts `rancher-agent` with the
    /// deployed agent's settings and the sim's admin kubeconfig, and waits until a proxied read
    /// succeeds. The programs come from `bins`.
    ///
    /// # Errors
    /// A step that fails; the programs' logs stay in the scratch directory until the drop.
    ///
    /// # Panics
    /// When a step does not finish within two minutes.
    pub async fn start(bins: &Path, shape: SimShape) -> Result<ImportedSim> {
        let dir = ScratchDir::new()?;
        let (sim, kubeconfig) = start_sim(bins, dir.path(), shape).await?;
        let sim_access = SimAccess::from_kubeconfig(&std::fs::read_to_string(&kubeconfig)?)?;

        let server = start_server_with(dir.path(), bins, "127.0.0.1", &[]).await?;
        let server_ca = server.http.get(format!("{}/cacerts", server.url)).send().await?.text().await?;
        let settings = import(&server, &kubeconfig, dir.path()).await?;
        let agent = start_agent(bins, &settings, &kubeconfig, &dir.path().join("agent.log"));
        let imported = ImportedSim { agent, server, server_ca, sim, sim_access, dir };
        wait_proxied(&imported.server).await;
        Ok(imported)
    }

    /// `path` on the sim as its admin.
    ///
    /// # Errors
    /// A sim URL that is not `https://<address>`, or a CA that is not PEM.
    pub fn direct(&self, path: &str) -> Result<Target> {
        Ok(Target {
            addr: address_of(&self.sim_access.url)?,
            tls: client_tls(&self.sim_access.ca_pem)?,
            path: path.to_owned(),
            token: self.sim_access.token.clone(),
            headers: HeaderMap::new(),
        })
    }

    /// `path` through the server's proxy, `/k8s/clusters/<id><path>`, with the admin's API token.
    ///
    /// # Errors
    /// As [`ImportedSim::direct`].
    pub fn proxied(&self, path: &str) -> Result<Target> {
        proxied_target(&self.server, &self.server_ca, path)
    }

    /// The process ids of the server, the agent and the sim.
    pub fn pids(&self) -> Pids {
        Pids { server: self.server.pid(), agent: self.agent.child.id(), sim: self.sim.child.id() }
    }

    /// Where the programs' logs are (`sim.log`, `server.log`, `agent.log`).
    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The processes whose memory the bench reads.
#[derive(Clone, Copy, Debug)]
pub struct Pids {
    /// `rancher-server`.
    pub server: u32,
    /// `rancher-agent`.
    pub agent: u32,
    /// `rancher-sim`.
    pub sim: u32,
}
