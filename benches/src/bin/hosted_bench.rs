//! Hosted clusters through the server against the direct path: per engine (GKE, AKS, EKS), one cluster
//! with two pools is created until `Active`, a pool scaled, the control plane and pools upgraded,
//! and the cluster deleted through an in-process server (memory store), with the engine's stand-in
//! (EKS: moto behind one) as the cloud and a `rancher-sim` as the cluster's endpoint (EKS: moto's
//! endpoint is unreachable, so the bench imports the sim as the user would); then the same phases are driven with
//! the provider's client alone, waiting on each operation. It prints, per phase, the provider calls
//! (API and token calls, from the stand-in's record; a downstream cluster's TokenReview is not
//! counted) and the wall time of both paths, and their ratios.
//!
//! `cargo run --release -p rancher-benches --bin hosted_bench -- [--engines gke,aks,eks]
//! [--operation-ms 2000] [--direct-poll-ms 1000]`

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use rancher_benches::hosted::report::{EngineResult, render};
use rancher_benches::hosted::{Engine, aks::Aks, eks::Eks, gke::Gke, run_direct, server};

#[derive(Parser)]
struct Args {
    /// The engines, comma-separated: gke, aks, eks.
    #[arg(long, value_delimiter = ',', default_value = "gke,aks,eks")]
    engines: Vec<String>,
    /// How long each provider operation takes at the GKE and AKS stand-ins, in milliseconds (EKS:
    /// moto's and its stand-in's own timing).
    #[arg(long, default_value_t = 2000)]
    operation_ms: u64,
    /// How often the direct path polls a GKE operation or an EKS cluster, node group or update, in
    /// milliseconds (AKS: Azure's Retry-After).
    #[arg(long, default_value_t = 1000)]
    direct_poll_ms: u64,
    /// The `Retry-After` (seconds) the AKS stand-in sends on operation polls.
    #[arg(long, default_value_t = 1)]
    aks_retry_after: u64,
}

/// Both paths of one engine: the server's cluster first, then the direct path's (another name).
async fn bench<E: Engine>(engine: E) -> Result<EngineResult> {
    let name = engine.name().to_ascii_lowercase();
    eprintln!("{}: through the server …", engine.name());
    let server = server::run(&engine, &format!("bench-{name}-server")).await?;
    eprintln!("{}: direct …", engine.name());
    let direct = run_direct(&engine, &format!("bench-{name}-direct")).await?;
    Ok(EngineResult { engine: engine.name(), timing: engine.timing(), server, direct })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let op = Duration::from_millis(args.operation_ms);
    let mut results = Vec::new();
    for engine in &args.engines {
        let r = match engine.trim().to_ascii_lowercase().as_str() {
            "gke" => bench(Gke::start(op, Duration::from_millis(args.direct_poll_ms)).await?).await?,
            "aks" => bench(Aks::start(op, args.aks_retry_after).await?).await?,
            "eks" => bench(Eks::start(Duration::from_millis(args.direct_poll_ms)).await?).await?,
            other => bail!("--engines: unknown engine {other:?} (gke, aks, eks)"),
        };
        results.push(r);
    }
    println!("\n{}", render(&results));
    println!(
        "The server (rancher::server::HOSTED_POLL) looks at a cloud operation {} s after starting it, then at GKE's and EKS's every {} s and AKS's as \
         Retry-After says (1–60 s); the bench reads the cluster every {} ms and, as kubelet, looks for \
         the agent's Deployment every {} ms.",
        rancher::server::HOSTED_POLL.as_secs(),
        rancher::server::HOSTED_POLL.as_secs(),
        server::OBSERVE.as_millis(),
        server::KUBELET_POLL.as_millis()
    );
    Ok(())
}
