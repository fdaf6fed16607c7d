//! The path through rancher-rs: an in-process server (memory store) with the engine's cloud
//! endpoints, a cloud credential, and one cluster taken through every [`Phase`] over `/v3` as a
//! client would, with the bench playing kubelet for the cluster agent the server deploys (read back
//! with `rancher_test_support::deployed_agent`, then run as an in-process agent task) — and, where
//! the server cannot reach the cluster's endpoint, the user who applies the import command.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rancher::agent::AgentBuilder;
use rancher::server::Server;
use rancher_core::model::{Cluster, ClusterState, StepState};
use rancher_core::store::MemoryStore;
use rancher_test_support::deployed_agent::AgentSettings;
use rancher_test_support::kubectl::kubectl_at;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Calls, Engine, Measured, Phase};
use crate::{ScratchDir, json_of};

const PASSWORD: &str = "bench-Passw0rd-123";
/// How often the bench looks at the cluster through `/v3` (the resolution of the server's times).
pub const OBSERVE: Duration = Duration::from_millis(100);
/// How often the bench, as kubelet, looks for the agent's Deployment.
pub const KUBELET_POLL: Duration = Duration::from_millis(250);
/// The longest one phase may take.
const PHASE_LIMIT: Duration = Duration::from_secs(120);
/// The cloud credential's name.
const CREDENTIAL: &str = "bench-cred";

/// The server path's phases, and the provider calls the server made between them.
#[derive(Debug)]
pub struct ServerRun {
    /// Each phase.
    pub phases: Vec<Measured>,
    /// Calls after a phase ended and before the next began (none expected: an idle cluster).
    pub between: Calls,
}

/// A server on loopback for one engine, logged in as the admin; stopped on drop.
struct BenchServer {
    url: String,
    http: reqwest::Client,
    token: String,
    stop: CancellationToken,
    served: Option<JoinHandle<()>>,
    dir: ScratchDir,
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(s) = self.served.take() {
            s.abort();
        }
    }
}

impl BenchServer {
    async fn start<E: Engine>(engine: &E) -> Result<BenchServer> {
        let dir = ScratchDir::new()?;
        let server = Server::builder()
            .data_dir(dir.path())
            .store(Arc::new(MemoryStore::new()))
            .https_listen("127.0.0.1:0".parse()?)
            .bootstrap_password(PASSWORD)
            .cloud_endpoints(engine.endpoints())
            .build()
            .await?;
        let url = server.url();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(server.ca_pem().as_bytes())?)
            .build()?;
        let stop = CancellationToken::new();
        let s = stop.clone();
        let served = tokio::spawn(async move {
            if let Err(e) = server.run(async move { s.cancelled().await }).await {
                eprintln!("the server stopped: {e}");
            }
        });
        let login = http
            .post(format!("{url}/v3-public/localProviders/local?action=login"))
            .json(&json!({"username": "admin", "password": PASSWORD}))
            .send()
            .await?;
        let token = json_of(login, "login").await?["token"].as_str().context("login: no token")?.to_owned();
        Ok(BenchServer { url, http, token, stop, served: Some(served), dir })
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let what = format!("{method} {path}");
        let mut req = self.http.request(method, format!("{}{path}", self.url)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        json_of(req.send().await?, &what).await
    }

    /// The cluster, `None` once it is gone.
    async fn cluster(&self, id: &str) -> Result<Option<Cluster>> {
        let resp =
            self.http.get(format!("{}/v3/clusters/{id}", self.url)).bearer_auth(&self.token).send().await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let v = json_of(resp, "GET cluster").await?;
        Ok(Some(serde_json::from_value(v).context("the server's cluster does not parse")?))
    }

    /// Waits until `id` is `Active` with `generation` observed. With `import` (the downstream
    /// cluster's kubeconfig), the bench plays the user of a cluster whose endpoint the server cannot
    /// reach: once the status shows the import command, it applies it there.
    async fn until_active(
        &self,
        id: &str,
        generation: i64,
        since: Instant,
        import: Option<&Path>,
    ) -> Result<Watched> {
        let deadline = since + PHASE_LIMIT;
        let mut watched = Watched::default();
        loop {
            let c = self.cluster(id).await?.with_context(|| format!("cluster {id} vanished"))?;
            let current = c.status.observed_generation.unwrap_or(0) >= generation;
            let steps = c.status.provisioning.as_ref().map(|p| p.steps.clone()).unwrap_or_default();
            let cloud_done = steps.len() >= 2 && steps[..2].iter().all(|s| s.state == StepState::Done);
            if current && cloud_done && watched.handed_over.is_none() {
                watched.handed_over = Some(since.elapsed());
            }
            let message = c.status.provisioning.as_ref().map(|p| p.message.as_str()).unwrap_or_default();
            if let (Some(kubeconfig), None, Some(url)) = (import, watched.user_import, manifest_url(message))
            {
                self.import(&url, kubeconfig).await?;
                watched.user_import = Some(since.elapsed());
            }
            match c.state() {
                ClusterState::Active if current => return Ok(watched),
                ClusterState::Error => bail!("cluster {id} failed: {message}"),
                _ => {}
            }
            if Instant::now() > deadline {
                bail!("cluster {id} not active within {PHASE_LIMIT:?} ({}: {message})", c.state());
            }
            tokio::time::sleep(OBSERVE).await;
        }
    }

    /// What the user runs: `kubectl apply -f <url>` against the downstream cluster (the manifest
    /// fetched here, as kubectl would, trusting the server's CA).
    async fn import(&self, url: &str, kubeconfig: &Path) -> Result<()> {
        let manifest = self.http.get(url).send().await?.error_for_status()?.text().await?;
        let file = self.dir.path().join("import.yaml");
        std::fs::write(&file, manifest)?;
        let (kc, f) = (kubeconfig.to_owned(), file.clone());
        let (ok, out) = tokio::task::spawn_blocking(move || {
            kubectl_at(&kc, &["apply", "-f", f.to_str().unwrap_or_default()])
        })
        .await?;
        ensure!(ok, "kubectl apply -f <the import manifest>: {out}");
        Ok(())
    }

    async fn until_gone(&self, id: &str, since: Instant) -> Result<()> {
        while self.cluster(id).await?.is_some() {
            if Instant::now() > since + PHASE_LIMIT {
                bail!("cluster {id} still there {PHASE_LIMIT:?} after its deletion");
            }
            tokio::time::sleep(OBSERVE).await;
        }
        Ok(())
    }

    /// `PUT` of the cluster with its engine config replaced; the new generation.
    async fn update(&self, id: &str, field: &str, config: Value) -> Result<i64> {
        let path = format!("/v3/clusters/{id}");
        let mut cluster = self.call(Method::GET, &path, None).await?;
        cluster["spec"][field] = config;
        let updated = self.call(Method::PUT, &path, Some(&cluster)).await?;
        updated.pointer("/metadata/generation").and_then(Value::as_i64).context("no generation in the answer")
    }
}

/// What the bench saw while waiting for a cluster to turn `Active`, in time since the request.
#[derive(Debug, Default)]
struct Watched {
    /// The provisioner handed the cluster over (its cloud steps done).
    handed_over: Option<Duration>,
    /// The bench applied the import command the status showed.
    user_import: Option<Duration>,
}

/// The manifest URL of the import command (`kubectl apply -f <url>`) in a status message.
fn manifest_url(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("kubectl apply -f ")?;
    Some(rest.split_whitespace().next()?.to_owned())
}

/// The kubelet's part: once the server has deployed the cluster agent into the downstream cluster,
/// runs it (in this process) until `stop`.
fn kubelet(kubeconfig: PathBuf, stop: CancellationToken) -> JoinHandle<Result<()>> {
    tokio::spawn(async move {
        let settings = loop {
            let kc = kubeconfig.clone();
            if let Some(s) = tokio::task::spawn_blocking(move || AgentSettings::read(&kc)).await? {
                break s;
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(KUBELET_POLL) => {}
            }
        };
        let agent =
            AgentBuilder::new(settings.server, settings.checksum, settings.token).kubeconfig(&kubeconfig);
        agent.run(stop).await.context("the cluster agent")
    })
}

/// Takes cluster `name` of `engine` through every phase via a fresh in-process server.
///
/// # Errors
/// The server does not start, a request fails, or a phase fails, times out, or leaves the cluster
/// at the provider otherwise than it should.
pub async fn run<E: Engine>(engine: &E, name: &str) -> Result<ServerRun> {
    let server = BenchServer::start(engine).await?;
    let (key, credential) = engine.credential();
    let body =
        json!({"metadata": {"name": CREDENTIAL}, "spec": {"displayName": CREDENTIAL, key: credential}});
    server.call(Method::POST, "/v3/cloudcredentials", Some(&body)).await?;
    let kubeconfig = server.dir.path().join("downstream.kubeconfig");
    std::fs::write(&kubeconfig, engine.downstream_kubeconfig())?;
    let agent_stop = CancellationToken::new();
    let _stop_agent = agent_stop.clone().drop_guard();
    let agent = kubelet(kubeconfig.clone(), agent_stop.clone());

    let field = engine.spec_field();
    let mut id = String::new();
    let mut phases = Vec::new();
    let mut between = Calls::default();
    let mut last_end = engine.call_kinds().len();
    for phase in Phase::ALL {
        let from = engine.call_kinds().len();
        let idle = Calls::since(&engine.call_kinds()[..from], last_end);
        between.api += idle.api;
        between.token += idle.token;
        let started = Instant::now();
        let mut watched = Watched::default();
        match phase {
            Phase::Create => {
                let mut spec = json!({"displayName": name});
                spec[field] = engine.config(name, super::Stage::Created);
                let body = json!({"metadata": {"name": name}, "spec": spec});
                let created = server.call(Method::POST, "/v3/clusters", Some(&body)).await?;
                id = created["id"].as_str().unwrap_or(name).to_owned();
                let generation = created.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
                let import = engine.user_imports().then_some(kubeconfig.as_path());
                watched = server.until_active(&id, generation, started, import).await?;
            }
            Phase::Scale | Phase::Upgrade => {
                let stage = phase.leaves().context("a phase that keeps the cluster")?;
                let generation = server.update(&id, field, engine.config(name, stage)).await?;
                server.until_active(&id, generation, started, None).await?;
            }
            Phase::Delete => {
                server.call(Method::DELETE, &format!("/v3/clusters/{id}"), None).await?;
                server.until_gone(&id, started).await?;
            }
        }
        let wall = started.elapsed();
        let kinds = engine.call_kinds();
        last_end = kinds.len();
        engine
            .check(name, phase.leaves())
            .await
            .with_context(|| format!("after {} through the server", phase.name()))?;
        let Watched { handed_over, user_import } = watched;
        phases.push(Measured { phase, calls: Calls::since(&kinds, from), wall, handed_over, user_import });
        if phase == Phase::Create && agent.is_finished() {
            bail!("the cluster agent stopped: {:?}", agent.await);
        }
    }
    agent_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), agent).await;
    Ok(ServerRun { phases, between })
}
