//! The cluster agent behind `rancher-agent`: it runs in (or beside) a downstream cluster, dials out
//! to the server's `/v3/connect`, and serves the streams the server opens to its cluster's API
//! server — and nothing else. A cluster agent also reports the cluster's version, nodes, capacity
//! and pods to [`REPORT_PATH`](crate::protocol::report::REPORT_PATH); a node agent (`--node`) holds
//! the fallback session `<cluster>:<node>` and does the node's work: it serves the plan API
//! ([`crate::protocol::node_plan`]) in-process through that session, writes the plan's files and keeps
//! its processes running — detached, so that they outlive the node agent, which adopts them when it
//! starts again (state in `--state-dir`, files and binaries only under `--plan-root`).
//!
//! Start-up follows Rancher's agent: `CATTLE_SERVER`/ping → download `/v3/settings/cacerts`
//! unverified → refuse unless its SHA-256 is `CATTLE_CA_CHECKSUM` → from then on trust only that CA.
//!
//! Start it from code with [`AgentBuilder`]; the `rancher-agent` binary parses its flags and the
//! `CATTLE_*` environment into one ([`AgentBuilder::from_args`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), rancher::agent::AgentError> {
//! use rancher::agent::AgentBuilder;
//! use tokio_util::sync::CancellationToken;
//!
//! // The three values the import manifest gives an agent.
//! AgentBuilder::new("https://rancher.example.org", "<CATTLE_CA_CHECKSUM>", "<registration token>")
//!     .kubeconfig("/tmp/kc")
//!     .run(CancellationToken::new())
//!     .await?;
//! # Ok(()) }
//! ```

pub mod ace;
mod api_servers;
mod builder;
mod cacerts;
mod digests;
mod downstream;
mod generation;
mod node;
mod quantity;
mod reload;
mod report;
mod settings;

use std::path::PathBuf;
use std::time::Duration;

use http::HeaderValue;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use builder::AgentBuilder;
pub use settings::{Mode, Settings};

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
    /// Another address of the cluster's API server (`https://host:port`, repeatable): the API server
    /// on another control-plane host, with a serving certificate for the kubeconfig's address too.
    /// The server's streams then go to the kubeconfig's address or, while it is down or not ready,
    /// to the first of these that is.
    #[arg(long = "api-server-alternate", value_name = "URL")]
    pub api_server_alternates: Vec<String>,
    /// Run the node agent (the fallback session `<cluster>:<node>`) instead of the cluster agent.
    #[arg(long)]
    pub node: bool,
    /// The node's name for --node (default: CATTLE_NODE_NAME).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// The node agent's state: the plan applied last, the processes it started, their logs.
    #[arg(long, value_name = "DIR", default_value = node::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// A directory under which the node agent may write a plan's files and run its binaries
    /// (repeatable; default `/`). A plan with a path outside every root is refused.
    #[arg(long = "plan-root", value_name = "DIR")]
    pub plan_roots: Vec<PathBuf>,
    /// Where the registration Secret is mounted (files `url` and `token`).
    #[arg(long, value_name = "DIR", default_value = "/cattle-credentials")]
    pub credentials_dir: PathBuf,
    /// The authorized cluster endpoint's webhook.
    #[command(flatten)]
    pub ace: ace::AceArgs,
    /// Print the container image reference this agent is published as, and exit.
    #[arg(long)]
    pub print_image_ref: bool,
    /// With --node: stop every process the node agent recorded in --state-dir (each only while it is
    /// still the very process recorded), forget them, and exit. For cleaning a host up with its node
    /// agent stopped; a running node agent would start them again.
    #[arg(long, requires = "node")]
    pub stop_processes: bool,
}

/// What `rancher-agent --node --stop-processes` does: stops every process recorded in `state_dir`
/// that still runs as recorded (same pid, start time and command line: never a recycled pid) with
/// SIGTERM, then SIGKILL after a grace period, and forgets the records. Returns the names of the
/// processes stopped; a missing state directory has none.
///
/// # Errors
/// [`AgentError::Config`] when the records cannot be rewritten.
pub async fn stop_node_processes(state_dir: &std::path::Path) -> Result<Vec<String>, AgentError> {
    node::stop_recorded(state_dir).await
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
    /// A call to the downstream API server failed (it may not be up yet); the agent retries it.
    #[error("downstream cluster: {0}")]
    DownstreamCall(String),
    /// The tunnel failed permanently.
    #[error("tunnel: {0}")]
    Tunnel(#[source] rancher_tunnel::Error),
}

/// First wait between attempts to reach the server before the tunnel starts.
const BOOT_RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Longest such wait.
const BOOT_RETRY_MAX: Duration = Duration::from_secs(10);

impl AgentError {
    /// Whether the error may pass by itself while the agent starts: the server is not reachable
    /// yet, or a call to the downstream API server failed (not up or not ready yet, the import
    /// manifest not applied yet). Bad settings and a CA checksum mismatch will not.
    fn may_pass(&self) -> bool {
        matches!(self, AgentError::Server(_) | AgentError::DownstreamCall(_))
    }
}

/// Runs `attempt` until it succeeds or fails with an error that will not pass
/// ([`AgentError::may_pass`]), waiting `initial` after the first failure and twice as long after each
/// next one, up to [`BOOT_RETRY_MAX`]; `None` when `stop` comes first. `waiting_for` names what is
/// not ready in the log.
async fn until_ready<T, F, Fut>(
    initial: Duration,
    waiting_for: &str,
    stop: &CancellationToken,
    mut attempt: F,
) -> Result<Option<T>, AgentError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AgentError>>,
{
    let mut wait = initial;
    loop {
        match attempt().await {
            Ok(t) => return Ok(Some(t)),
            Err(e) if !e.may_pass() => return Err(e),
            Err(e) => warn!(error = %e, retry_in = ?wait, "{waiting_for} is not ready yet"),
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(None),
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(BOOT_RETRY_MAX);
    }
}

/// Checks the server's CA, retrying while the server is unreachable; a checksum mismatch is final.
async fn server_ca(s: &Settings, stop: &CancellationToken) -> Result<Option<cacerts::ServerCa>, AgentError> {
    until_ready(BOOT_RETRY_INITIAL, "the server", stop, || {
        cacerts::fetch_server_ca(&s.server, &s.ca_checksum)
    })
    .await
}

/// Connects to the downstream cluster, retrying while its API server does not answer yet (an agent
/// started with its cluster, as on a host the server built, comes up before the API server is
/// ready); a kubeconfig that cannot be read is final.
async fn downstream_when_ready(
    kubeconfig: Option<&std::path::Path>,
    alternates: &[String],
    stop: &CancellationToken,
) -> Result<Option<downstream::Downstream>, AgentError> {
    until_ready(Duration::from_millis(500), "the cluster's API server", stop, || {
        downstream::connect_any(kubeconfig, alternates)
    })
    .await
}

fn header(value: &str, what: &str) -> Result<HeaderValue, AgentError> {
    HeaderValue::from_str(value).map_err(|_| AgentError::Config(format!("{what} cannot be sent as a header")))
}
