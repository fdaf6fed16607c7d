//! The fleet process of `fleet_bench`: many imported clusters in one process — the cluster agents
//! (the real [`AgentBuilder`], one tunnel session each) and the `rancher-sim`s they reach, one sim
//! per cluster by default.
//!
//! Several agents may share a sim (`--per-sim`) to save the fleet's memory, ports and file
//! descriptors: each agent still registers with its own cluster's token, holds its own session and
//! reports; but the server renders each cluster's RBAC into its sim and prunes what is not that
//! cluster's, so clusters sharing a sim keep undoing each other's objects.
//!
//! The bench's driver creates the clusters, writes a file of `<cluster> <registration token>` lines
//! per fleet process, and starts `fleet_bench fleet …`; the process prints `started <n>` once every
//! agent runs, and runs until its standard input closes.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rancher::agent::AgentBuilder;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// What one fleet process runs.
#[derive(clap::Args, Debug)]
pub struct FleetArgs {
    /// The servers the agents dial (`https://host:port`), taken in turn (a round-robin balancer).
    #[arg(long, value_delimiter = ',', required = true)]
    pub servers: Vec<String>,
    /// The SHA-256 of the server's `/cacerts` (`CATTLE_CA_CHECKSUM`).
    #[arg(long)]
    pub ca_checksum: String,
    /// A file of `<cluster> <registration token>` lines, one agent each.
    #[arg(long)]
    pub tokens: PathBuf,
    /// How many agents share one sim.
    #[arg(long, default_value_t = 1)]
    pub per_sim: usize,
    /// Where the sims' kubeconfigs go, and `direct.json`: the first sim's URL, CA and admin token
    /// (for the driver's direct requests).
    #[arg(long)]
    pub dir: PathBuf,
}

/// Reads the `<cluster> <token>` lines of `path`.
fn read_tokens(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, token) =
                l.split_once(' ').with_context(|| format!("not `<cluster> <token>`: {l:?}"))?;
            Ok((name.to_owned(), token.trim().to_owned()))
        })
        .collect()
}

/// Runs the fleet of `args` until standard input closes: starts the sims, then every agent at once
/// (the server admits them at its own rate), prints `started <n>`, and on the end of input stops the
/// agents and the sims.
///
/// # Errors
/// A token file that does not parse, or a sim that does not start.
pub async fn run(args: FleetArgs) -> Result<()> {
    if args.per_sim == 0 {
        bail!("--per-sim must be at least 1");
    }
    let clusters = read_tokens(&args.tokens)?;
    std::fs::create_dir_all(&args.dir)?;
    let mut sims = Vec::new();
    let mut kubeconfigs = Vec::new();
    for (k, _) in clusters.chunks(args.per_sim).enumerate() {
        let sim = rancher_sim::Sim::builder().name(format!("fleet-sim-{k}")).nodes(1).start().await?;
        let kc = args.dir.join(format!("sim-{k}.kubeconfig"));
        std::fs::write(&kc, sim.kubeconfig_yaml())?;
        if k == 0 {
            let direct = json!({"url": sim.url(), "ca": sim.ca_pem(), "token": sim.admin_token()});
            std::fs::write(args.dir.join("direct.json"), direct.to_string())?;
        }
        kubeconfigs.push(kc);
        sims.push(sim);
    }
    let stop = CancellationToken::new();
    let mut agents = tokio::task::JoinSet::new();
    for (i, (name, token)) in clusters.iter().enumerate() {
        let server = &args.servers[i % args.servers.len()];
        let agent = AgentBuilder::new(server.as_str(), args.ca_checksum.as_str(), token.as_str())
            .kubeconfig(&kubeconfigs[i / args.per_sim]);
        let (stop, name) = (stop.clone(), Arc::<str>::from(name.as_str()));
        agents.spawn(async move {
            if let Err(e) = agent.run(stop).await {
                eprintln!("agent of {name} stopped: {e}");
            }
        });
    }
    println!("started {}", clusters.len());
    // The driver holds our standard input; its end (the driver closing it, or dying) ends the fleet.
    // (Read on a blocking thread: the workspace's tokio is built without its stdin.)
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = [0u8; 64];
        while std::io::stdin().read(&mut sink).map(|n| n > 0).unwrap_or(false) {}
    })
    .await;
    stop.cancel();
    while agents.join_next().await.is_some() {}
    for sim in sims {
        sim.shutdown().await;
    }
    Ok(())
}
