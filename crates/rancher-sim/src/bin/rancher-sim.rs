//! `rancher-sim`: run one simulated cluster and write its admin kubeconfig, or (`rancher-sim kubelet`)
//! a simulated kubelet against a real API server.

use clap::{Parser, Subcommand};

/// A simulated Kubernetes cluster that kubectl and kube-rs can drive.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A simulated kubelet: registers a Node with a real API server and runs the pods bound to it as
    /// simulated containers. Takes the real kubelet's main flags; some others are accepted and ignored.
    Kubelet(rancher_sim::kubelet::KubeletArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on (HTTPS).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: String,
    /// Write the admin kubeconfig here (written atomically once the server is up).
    #[arg(long)]
    kubeconfig_out: Option<std::path::PathBuf>,
    /// Number of simulated nodes.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Cluster name.
    #[arg(long, default_value = "rancher-sim")]
    name: String,
    /// Fixed admin bearer token (random otherwise).
    #[arg(long, env = "RANCHER_SIM_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Authentication webhook URL for unknown bearer tokens (TokenReview POST).
    #[arg(long)]
    auth_webhook: Option<String>,
    /// PEM file with the CA of the authentication webhook.
    #[arg(long)]
    auth_webhook_ca: Option<std::path::PathBuf>,
    /// Extra host names or IPs for the serving certificate.
    #[arg(long = "san")]
    sans: Vec<String>,
    /// The most Events kept per namespace, the least recently seen going first (default 1000). A
    /// sim of many pods keeps its controllers cheap with a small number: every pass over the
    /// store mirrors each Event into `events.k8s.io`.
    #[arg(long)]
    events_per_namespace: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // No colour codes in a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let mut argv: Vec<String> = std::env::args().collect();
    let mut ignored = Vec::new();
    if argv.get(1).is_some_and(|a| a == "kubelet") {
        let mut rest = argv.split_off(2);
        ignored = rancher_sim::kubelet::strip_ignored_flags(&mut rest);
        argv.extend(rest);
    }
    match Cli::parse_from(argv) {
        Cli { command: Some(Command::Kubelet(args)), .. } => {
            for flag in ignored {
                tracing::warn!(flag = %format!("--{flag}"), "a real kubelet flag the simulated kubelet ignores");
            }
            kubelet(args).await
        }
        Cli { command: None, serve } => serve_sim(serve).await,
    }
}

async fn kubelet(args: rancher_sim::kubelet::KubeletArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("signal received; stopping");
        on_signal.cancel();
    });
    rancher_sim::kubelet::run(config, cancel).await?;
    Ok(())
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

async fn serve_sim(args: ServeArgs) -> anyhow::Result<()> {
    let mut b = rancher_sim::Sim::builder().name(&args.name).nodes(args.nodes).listen(&args.listen);
    if let Some(t) = args.admin_token {
        b = b.admin_token(t);
    }
    if let Some(url) = args.auth_webhook {
        let ca = args.auth_webhook_ca.map(std::fs::read_to_string).transpose()?;
        b = b.auth_webhook(url, ca);
    }
    for s in args.sans {
        b = b.san(s);
    }
    if let Some(n) = args.events_per_namespace {
        b = b.events_per_namespace(n);
    }
    let sim = b.start().await?;
    if let Some(path) = &args.kubeconfig_out {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, sim.kubeconfig_yaml())?;
        std::fs::rename(&tmp, path)?;
    }
    tracing::info!(url = %sim.url(), nodes = args.nodes, "rancher-sim serving");
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
