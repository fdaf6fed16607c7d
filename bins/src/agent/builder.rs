//! [`AgentBuilder`]: the agent's settings given from code — the three values of the import manifest,
//! the downstream cluster's kubeconfig, the webhook, and the tunnel's transport and session settings —
//! and [`AgentBuilder::run`], which starts everything and stops it when told.

use std::path::PathBuf;
use std::sync::Arc;

use rancher_tunnel::{LocalService, Metrics, SessionConfig, Transport};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::generation::{self, TunnelSetup};
use super::reload::KubeconfigWatch;
use super::{AgentArgs, AgentError, Mode, Settings, ace, downstream, downstream_when_ready, node, server_ca};
use crate::protocol::connect::{NodeParams, TunnelParams};

/// Configures and runs a cluster or node agent. Settings are checked when [`run`](Self::run) starts.
#[derive(Clone)]
pub struct AgentBuilder {
    server: String,
    ca_checksum: String,
    token: String,
    mode: Mode,
    kubeconfig: Option<PathBuf>,
    api_server_alternates: Vec<String>,
    state_dir: PathBuf,
    plan_roots: Vec<PathBuf>,
    ace: ace::AceArgs,
    transport: Option<Arc<dyn Transport>>,
    session_config: SessionConfig,
    metrics: Metrics,
    tunnel_thread: bool,
}

impl std::fmt::Debug for AgentBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBuilder")
            .field("server", &self.server)
            .field("ca_checksum", &self.ca_checksum)
            .field("token", &"<redacted>")
            .field("mode", &self.mode)
            .field("kubeconfig", &self.kubeconfig)
            .field("api_server_alternates", &self.api_server_alternates)
            .field("state_dir", &self.state_dir)
            .field("plan_roots", &self.plan_roots)
            .field("ace", &self.ace)
            .field("transport", &self.transport.as_ref().map(|_| "<given>"))
            .field("tunnel_thread", &self.tunnel_thread)
            .finish_non_exhaustive()
    }
}

impl AgentBuilder {
    /// A cluster agent for the server at `server` (`https://host[:port]`, `CATTLE_SERVER`) whose
    /// `cacerts` have the SHA-256 `ca_checksum` (`CATTLE_CA_CHECKSUM`), registering with the
    /// cluster's registration `token` (`CATTLE_TOKEN`). It reaches its cluster in-cluster unless
    /// [`kubeconfig`](Self::kubeconfig) is given.
    pub fn new(server: impl Into<String>, ca_checksum: impl Into<String>, token: impl Into<String>) -> Self {
        AgentBuilder {
            server: server.into(),
            ca_checksum: ca_checksum.into(),
            token: token.into(),
            mode: Mode::Cluster,
            kubeconfig: None,
            api_server_alternates: Vec::new(),
            state_dir: PathBuf::from(node::DEFAULT_STATE_DIR),
            plan_roots: Vec::new(),
            ace: ace::AceArgs::default(),
            transport: None,
            session_config: SessionConfig::default(),
            metrics: Metrics::unregistered(),
            tunnel_thread: false,
        }
    }

    /// What `rancher-agent` runs: its flags, and the `CATTLE_*` variables looked up with `env`
    /// (`std::env::var` in the binary) or read from the mounted credentials directory.
    ///
    /// # Errors
    /// [`AgentError::Config`] naming the missing or malformed setting.
    pub fn from_args(
        args: &AgentArgs,
        env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    ) -> Result<Self, AgentError> {
        let s = Settings::resolve(args, env)?;
        let mut builder = AgentBuilder::new(s.server.as_str(), s.ca_checksum, s.token);
        builder.mode = s.mode;
        builder.kubeconfig = s.kubeconfig;
        builder.api_server_alternates = args.api_server_alternates.clone();
        builder.state_dir = args.state_dir.clone();
        builder.plan_roots = args.plan_roots.clone();
        builder.ace = args.ace.clone();
        builder.tunnel_thread = true;
        Ok(builder)
    }

    /// A kubeconfig for the downstream cluster instead of the in-cluster service account.
    pub fn kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    /// Other addresses of the cluster's API server (`https://host:port`): the server's streams go to
    /// the kubeconfig's address or, while it is down or not ready, to the first of these that is
    /// (see `--api-server-alternate`). Only a cluster agent uses them.
    pub fn api_server_alternates<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.api_server_alternates = urls.into_iter().map(Into::into).collect();
        self
    }

    /// Run the node agent of node `name` (the fallback session `<cluster>:<node>`) instead of the
    /// cluster agent.
    pub fn node(mut self, name: impl Into<String>) -> Self {
        self.mode = Mode::Node { name: name.into() };
        self
    }

    /// The node agent's state directory (default `/var/lib/rancher/node-agent`): the plan applied
    /// last, a record of each process it started (so that a restarted node agent adopts them), their
    /// logs under `logs/`. Only a node agent uses it.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = dir.into();
        self
    }

    /// The directories under which a node agent may write a plan's files and run its binaries
    /// (default: `/`); a plan with a path outside all of them is refused.
    pub fn plan_roots<I, P>(mut self, roots: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        self.plan_roots = roots.into_iter().map(Into::into).collect();
        self
    }

    /// Serve the authorized cluster endpoint's TokenReview webhook with these settings.
    pub fn ace(mut self, ace: ace::AceArgs) -> Self {
        self.ace = ace;
        self
    }

    /// Connect with `transport` instead of the WebSocket one to `<server>/v3/connect`; the server must
    /// accept it (`rancher::server::ServerBuilder::tunnel_transport`).
    /// The server's CA is still checked against the checksum over HTTPS first.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// The tunnel's session settings (default: [`SessionConfig::default`]).
    pub fn session_config(mut self, config: SessionConfig) -> Self {
        self.session_config = config;
        self
    }

    /// Serve the tunnel on a thread of its own: its session and every stream it carries run on a
    /// single-threaded runtime there, so that a proxied request's bytes cross one thread instead of
    /// waking the caller's runtime's workers in turn (a sixth less of the agent's CPU per request;
    /// `benches/README.md`). The reporter, the probe and the webhook stay on the caller's runtime.
    /// `rancher-agent` does this ([`from_args`](Self::from_args)); off by default, since every
    /// agent run so then starts a thread.
    pub fn tunnel_thread(mut self, own_thread: bool) -> Self {
        self.tunnel_thread = own_thread;
        self
    }

    /// Registers the agent's tunnel metrics (`tunnel_reconnects_total`, …) into `registry`.
    pub fn metrics_registry(self, registry: &mut prometheus_client::registry::Registry) -> Self {
        self.metrics.register_into(registry);
        self
    }

    /// Runs the agent until `stop` is cancelled (then closes the tunnel session at once) or a
    /// permanent error. Every task it starts (the tunnel, the reporter, the webhook) has stopped when
    /// it returns.
    ///
    /// # Errors
    /// [`AgentError`]: bad settings, a CA checksum mismatch, an unreadable downstream cluster.
    pub async fn run(self, stop: CancellationToken) -> Result<(), AgentError> {
        let settings =
            Settings::checked(&self.server, &self.ca_checksum, &self.token, self.mode, self.kubeconfig)?;
        info!(server = %settings.server, mode = ?settings.mode, "rancher-agent starting");
        // The node work starts before the server is reached: the processes of the last plan are
        // supervised (and adopted) whether or not the server is up.
        let node_work = match &settings.mode {
            Mode::Node { .. } => {
                let roots = node::checked_roots(&self.plan_roots)?;
                Some(node::start(&self.state_dir, roots, stop.child_token())?)
            }
            Mode::Cluster => None,
        };
        // The webhook answers from the cluster itself: it starts before, and does not need, the server.
        let ace = ace::start(&self.ace, settings.kubeconfig.as_deref(), stop.clone()).await?;
        let Some(ca) = server_ca(&settings, &stop).await? else { return Ok(()) };
        info!(checksum = %settings.ca_checksum, "the server's CA matches CATTLE_CA_CHECKSUM");

        // Read before the credentials are: a change made meanwhile is taken up, not missed.
        let reloads = match (&settings.mode, &settings.kubeconfig) {
            (Mode::Cluster, Some(path)) => Some(KubeconfigWatch::new(path)),
            _ => None,
        };
        let (downstream, params) = match &settings.mode {
            Mode::Cluster => {
                let Some(d) =
                    downstream_when_ready(settings.kubeconfig.as_deref(), &self.api_server_alternates, &stop)
                        .await?
                else {
                    return Ok(());
                };
                let params = TunnelParams { cluster: Some(d.params.clone()), node: None };
                (Some(d), params)
            }
            Mode::Node { name } => {
                // The node agent can stand in for the cluster agent only when it can name the API server.
                let node = Some(NodeParams { requested_hostname: name.clone() });
                match downstream::connect(settings.kubeconfig.as_deref()).await {
                    Ok(d) => (None, TunnelParams { cluster: Some(d.params), node }),
                    Err(e) => {
                        warn!(error = %e, "node agent without cluster access: it cannot carry API traffic");
                        (None, TunnelParams { cluster: None, node })
                    }
                }
            }
        };
        let setup = TunnelSetup {
            base: settings.server.as_str().trim_end_matches('/').to_owned(),
            token: settings.token.clone(),
            tls: ca.tls.clone(),
            transport: self.transport,
            session_config: self.session_config,
            metrics: self.metrics,
            alternates: self.api_server_alternates,
            own_thread: self.tunnel_thread,
            local_service: node_work
                .as_ref()
                .map(|w| (rancher_provision::plan::PLAN_SERVICE, w.service.clone() as Arc<dyn LocalService>)),
        };
        let current = setup.start(downstream, &params, stop.child_token())?;
        let result = match reloads {
            Some(reloads) => {
                let kubeconfig = settings.kubeconfig.as_deref();
                generation::follow_credentials(&setup, current, reloads, kubeconfig, &stop).await
            }
            None => current.stop_when_finished().await,
        };
        stop.cancel();
        if let Some(a) = ace {
            let _ = a.await;
        }
        if let Some(work) = node_work {
            let _ = work.task.await;
        }
        info!("rancher-agent stopped");
        result
    }
}
