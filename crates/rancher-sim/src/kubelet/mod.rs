//! `rancher-sim kubelet`: a simulated kubelet for a real API server. It registers its Node as
//! `system:node:<name>` (so the Node authorizer and NodeRestriction apply), keeps the Node's status and
//! its Lease fresh, and runs the pods the scheduler binds to it as simulated containers: their status
//! says Running and Ready with an address from the node's pod CIDR. Nothing is executed.
//!
//! Out of scope, said plainly: container restarts and exit codes (`restartPolicy` is not acted on;
//! containers run until their pod is deleted), probes, static pods (`--pod-manifest-path`), volumes,
//! logs/exec/port-forward (no kubelet server listens), events, and eviction.
//!
//! ```no_run
//! # async fn run() -> Result<(), rancher_sim::kubelet::KubeletError> {
//! use clap::Parser;
//! use rancher_sim::kubelet::{KubeletArgs, run};
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     kubelet: KubeletArgs,
//! }
//! let cli = Cli::parse_from(["kubelet", "--kubeconfig", "/etc/kubernetes/kubelet.conf",
//!                            "--hostname-override", "worker-1", "--node-labels", "pool=a"]);
//! let config = cli.kubelet.into_config()?;
//! run(config, tokio_util::sync::CancellationToken::new()).await
//! # }
//! ```

mod flags;
mod node;
mod pod_status;
mod pods;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use flags::{KubeletArgs, KubeletConfig, strip_ignored_flags};

/// What stops the simulated kubelet.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// A flag's value is not usable.
    #[error("--{flag}: {reason}")]
    Flag {
        /// The flag, without the dashes.
        flag: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The kubeconfig could not be read or parsed.
    #[error("--kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No client could be built from the kubeconfig (bad certificate or key, unsupported auth).
    #[error("--kubeconfig {}: building a client: {source}", path.display())]
    Client {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<kube::Error>,
    },
    /// The API server refused the kubeconfig's credentials.
    #[error("the API server refused the credentials of --kubeconfig {}: {source}", path.display())]
    Unauthorized {
        /// The file.
        path: PathBuf,
        /// The API server's answer.
        #[source]
        source: Box<kube::Error>,
    },
    /// The Node could not be registered or taken up.
    #[error("registering node {node}: {source}")]
    Register {
        /// The node's name.
        node: String,
        /// The API server's answer.
        #[source]
        source: kube::Error,
    },
    /// An object the kubelet built could not be encoded (a bug).
    #[error("encoding an object: {0}")]
    Encode(#[source] serde_json::Error),
}

/// What the kubelet's loops share: the checked flags, the client and the facts found at start.
pub(crate) struct Shared {
    pub(crate) config: KubeletConfig,
    pub(crate) client: kube::Client,
    pub(crate) node_ip: IpAddr,
    /// The API server's version (`v1.20.2`), reported as the kubelet's.
    pub(crate) kubelet_version: String,
    /// A new one per run, as a machine's boot ID is per boot.
    pub(crate) boot_id: String,
}

/// How long to wait between attempts to reach the API server at start.
const CONNECT_RETRY: Duration = Duration::from_secs(2);

/// Runs the kubelet until `cancel`: reaches the API server (waiting while it is not up), then
/// registers the Node and keeps it, its Lease and its pods up to date.
///
/// # Errors
/// A kubeconfig that cannot be read or used, or credentials the API server does not accept (`401`).
/// Failures while running (the API server going away, a refused update) are logged and retried, as
/// is a `403` at start.
pub async fn run(config: KubeletConfig, cancel: CancellationToken) -> Result<(), KubeletError> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let path = config.kubeconfig.clone();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .map_err(|source| KubeletError::Kubeconfig { path: path.clone(), source })?;
    let client_config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|source| KubeletError::Kubeconfig { path: path.clone(), source })?;
    let client = kube::Client::try_from(client_config)
        .map_err(|source| KubeletError::Client { path: path.clone(), source: Box::new(source) })?;

    let version = loop {
        match client.apiserver_version().await {
            Ok(v) => break v.git_version,
            Err(kube::Error::Api(s)) if s.code == 401 => {
                return Err(KubeletError::Unauthorized { path, source: Box::new(kube::Error::Api(s)) });
            }
            // What a freshly started API server says until its authorizer has read the RBAC
            // bindings (its health check does not wait for that), or while they are missing: the
            // real kubelet waits it out too.
            Err(kube::Error::Api(s)) if s.code == 403 => {
                tracing::warn!(error = %s.message, "the API server does not let this kubelet in yet; retrying");
            }
            Err(e) => tracing::warn!(error = %e, "the API server is not reachable yet; retrying"),
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(CONNECT_RETRY) => {}
        }
    };
    let node_ip = match config.node_ip {
        Some(ip) => ip,
        None => resolve(&config.node_name).await,
    };
    tracing::info!(node = %config.node_name, %node_ip, kubelet_version = %version, "simulated kubelet starting");
    let shared = Arc::new(Shared {
        config,
        client,
        node_ip,
        kubelet_version: version,
        boot_id: uuid::Uuid::new_v4().to_string(),
    });

    let (node_tx, node_rx) = watch::channel(None);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(pods::pod_loop(shared.clone(), node_rx.clone(), cancel.clone()));
    tasks.spawn(node::lease_loop(shared.clone(), node_rx, cancel.clone()));
    tasks.spawn(node::node_loop(shared.clone(), node_tx, cancel.clone()));
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "a kubelet task failed");
            cancel.cancel();
        }
    }
    tracing::info!(node = %shared.config.node_name, "simulated kubelet stopped");
    Ok(())
}

/// The address `name` resolves to (not loopback when there is a choice), else 127.0.0.1, as the real
/// kubelet falls back from `--node-ip` to resolving its host name.
async fn resolve(name: &str) -> IpAddr {
    let addrs: Vec<IpAddr> = match tokio::net::lookup_host((name, 0)).await {
        Ok(a) => a.map(|a| a.ip()).collect(),
        Err(_) => Vec::new(),
    };
    addrs
        .iter()
        .find(|a| !a.is_loopback() && a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}
