//! `rancher-sim`: run one simulated cluster and write its admin kubeconfig.

use clap::Parser;

/// A simulated Kubernetes cluster that kubectl and kube-rs can drive.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
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
    let args = Args::parse();
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
