//! The cluster agent behind `rancher-agent`: it runs in (or beside) a downstream cluster, dials out
//! to the server's `/v3/connect`, and serves the streams the server opens to its cluster's API
//! server — and nothing else. A cluster agent also reports the cluster's version, nodes, capacity
//! and pods to [`wire::REPORT_PATH`]; a node agent (`--node`) holds the fallback session
//! `<cluster>:<node>`.
//!
//! Start-up follows Rancher's agent: `CATTLE_SERVER`/ping → download `/v3/settings/cacerts`
//! unverified → refuse unless its SHA-256 is `CATTLE_CA_CHECKSUM` → from then on trust only that CA.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rancher::agent::AgentError> {
//! use clap::Parser;
//! use rancher::agent::{AgentArgs, run};
//! use tokio_util::sync::CancellationToken;
//!
//! // CATTLE_SERVER, CATTLE_CA_CHECKSUM and CATTLE_TOKEN come from the environment.
//! let args = AgentArgs::parse_from(["rancher-agent", "--kubeconfig", "/tmp/kc"]);
//! run(args, &|k| std::env::var(k).ok(), CancellationToken::new()).await?;
//! # Ok(()) }
//! ```

pub mod ace;
mod cacerts;
mod downstream;
mod quantity;
mod report;
mod settings;
pub mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use rancher_tunnel::{
    Agent, AgentConfig, AllowList, Metrics, PARAMS_HEADER, SessionConfig, TOKEN_HEADER, WsTransport,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use cacerts::normalize_ca;
pub use settings::{Mode, Settings};

use self::wire::{NodeParams, TunnelParams};

/// The container image this agent is published as: what the server's import manifest deploys by
/// default (`rancher-server --agent-image`), what `scripts/agent-image.sh` and the `Dockerfile` tag.
pub const IMAGE_REF: &str = concat!("rancher-rs/rancher-agent:v", env!("CARGO_PKG_VERSION"));

/// On SIGTERM the tunnel session is closed at once, without waiting for open streams: nearly all of
/// them are the server's long-lived watches, which would hold any drain for its whole length and keep
/// the cluster marked connected meanwhile. The server's clients re-dial through the next session.
const SHUTDOWN_DRAIN: Duration = Duration::ZERO;

/// `rancher-agent`'s flags. The rest comes from the environment: `CATTLE_SERVER`,
/// `CATTLE_CA_CHECKSUM`, `CATTLE_TOKEN` (or the mounted `/cattle-credentials/{url,token}`),
/// `CATTLE_CLUSTER`, `CATTLE_NODE_NAME`.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "rancher-agent", version, about, long_about)]
pub struct AgentArgs {
    /// A kubeconfig for the downstream cluster; without it the in-cluster service account is used.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Run the node agent (the fallback session `<cluster>:<node>`) instead of the cluster agent.
    #[arg(long)]
    pub node: bool,
    /// The node's name for --node (default: CATTLE_NODE_NAME).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Where the registration Secret is mounted (files `url` and `token`).
    #[arg(long, value_name = "DIR", default_value = "/cattle-credentials")]
    pub credentials_dir: PathBuf,
    /// The authorized cluster endpoint's webhook.
    #[command(flatten)]
    pub ace: ace::AceArgs,
    /// Print the container image reference this agent is published as, and exit.
    #[arg(long)]
    pub print_image_ref: bool,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A setting is missing or malformed.
    #[error("configuration: {0}")]
    Config(String),
    /// The server could not be reached or answered unexpectedly before the tunnel started.
    #[error("server: {0}")]
    Server(String),
    /// The server's CA is not the one the agent was told to trust.
    #[error(
        "the server's cacerts checksum ({server}) does not match the configured CATTLE_CA_CHECKSUM \
         ({configured}); refusing to connect"
    )]
    CaChecksumMismatch {
        /// `CATTLE_CA_CHECKSUM`.
        configured: String,
        /// The checksum of what the server published.
        server: String,
    },
    /// The downstream cluster could not be read (kubeconfig, CA, credential).
    #[error("downstream cluster: {0}")]
    Downstream(String),
    /// The tunnel failed permanently.
    #[error("tunnel: {0}")]
    Tunnel(#[source] rancher_tunnel::Error),
}

/// First wait between attempts to reach the server before the tunnel starts.
const BOOT_RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Longest such wait.
const BOOT_RETRY_MAX: Duration = Duration::from_secs(10);

/// Checks the server's CA, retrying while the server is unreachable; a checksum mismatch is final.
async fn server_ca(s: &Settings, stop: &CancellationToken) -> Result<Option<cacerts::ServerCa>, AgentError> {
    let mut wait = BOOT_RETRY_INITIAL;
    loop {
        match cacerts::fetch_server_ca(&s.server, &s.ca_checksum).await {
            Ok(ca) => return Ok(Some(ca)),
            Err(e @ AgentError::Server(_)) => warn!(error = %e, retry_in = ?wait, "server not reachable yet"),
            Err(e) => return Err(e),
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(None),
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(BOOT_RETRY_MAX);
    }
}

fn header(value: &str, what: &str) -> Result<HeaderValue, AgentError> {
    HeaderValue::from_str(value).map_err(|_| AgentError::Config(format!("{what} cannot be sent as a header")))
}

/// Runs the agent until `stop` is cancelled (then closes the tunnel session at once) or a permanent
/// error.
///
/// # Errors
/// [`AgentError`]: bad settings, a CA checksum mismatch, an unreadable downstream cluster.
pub async fn run(
    args: AgentArgs,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    stop: CancellationToken,
) -> Result<(), AgentError> {
    let settings = Settings::resolve(&args, env)?;
    info!(server = %settings.server, mode = ?settings.mode, "rancher-agent starting");
    // The webhook answers from the cluster itself: it starts before, and does not need, the server.
    let ace = ace::start(&args.ace, settings.kubeconfig.as_deref(), stop.clone()).await?;
    let Some(ca) = server_ca(&settings, &stop).await? else { return Ok(()) };
    info!(checksum = %settings.ca_checksum, "the server's CA matches CATTLE_CA_CHECKSUM");

    let (downstream, params) = match &settings.mode {
        Mode::Cluster => {
            let d = downstream::connect(settings.kubeconfig.as_deref()).await?;
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
    let api_address = params.cluster.as_ref().map(|c| c.address.clone());
    info!(
        api_server = api_address.as_deref().unwrap_or("-"),
        "destination policy: only the cluster's API server"
    );
    let policy = Arc::new(AllowList::new(api_address));

    let mut headers = HeaderMap::new();
    headers.insert(TOKEN_HEADER, header(&settings.token, "CATTLE_TOKEN")?);
    headers.insert(PARAMS_HEADER, header(&params.encode(), "the tunnel params")?);
    let base = settings.server.as_str().trim_end_matches('/');
    let connect_url = format!("{base}{}", rancher_tunnel::CONNECT_PATH);
    let transport = WsTransport::new(&connect_url, ca.tls.clone(), SessionConfig::default())
        .map_err(AgentError::Tunnel)?;
    let mut cfg = AgentConfig::default();
    cfg.headers = headers;
    // Rancher's agent retries every few seconds; a server back from a restart should see its agents
    // within seconds, not after a 30 s backoff.
    cfg.backoff_initial = Duration::from_millis(500);
    cfg.backoff_max = Duration::from_secs(10);
    cfg.drain_timeout = SHUTDOWN_DRAIN;
    let agent =
        Agent::new(Arc::new(transport), policy, cfg, Metrics::unregistered()).map_err(AgentError::Tunnel)?;

    let reporter = match downstream {
        Some(d) => {
            let http = reqwest::Client::builder()
                .tls_backend_preconfigured((*ca.tls).clone())
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| AgentError::Config(format!("building the report client: {e}")))?;
            let r = report::Reporter {
                http,
                url: format!("{base}{}", wire::REPORT_PATH),
                token: settings.token.clone(),
                client: d.client,
            };
            Some(tokio::spawn(r.run(agent.connected(), stop.clone())))
        }
        None => None,
    };
    let result = agent.run(stop.clone()).await.map_err(AgentError::Tunnel);
    stop.cancel();
    if let Some(r) = reporter {
        let _ = r.await;
    }
    if let Some(a) = ace {
        let _ = a.await;
    }
    info!("rancher-agent stopped");
    result
}
