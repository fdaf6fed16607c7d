//! `sim_bench`: idle memory per sim (many sims in one process) and the request rate one sim serves
//! (GET a namespace over HTTPS with keep-alive, 1 and 64 clients), next to `/healthz` on the same
//! sim as the floor of TLS + HTTP + authentication cost. Prints a table.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

#[derive(Debug, Parser)]
struct Args {
    /// Sims to start for the memory measurement.
    #[arg(long, default_value_t = 1000)]
    sims: usize,
    /// Nodes per sim.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Seconds per throughput run.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(sim: &rancher_sim::SimHandle) -> anyhow::Result<Sender> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(sim.ca_pem().as_bytes()) {
        roots.add(c?)?;
    }
    let cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(sim.addr()).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect("127.0.0.1".try_into()?, tcp).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Requests per second over `clients` keep-alive connections for `secs`.
async fn rate(sim: &rancher_sim::SimHandle, path: &str, clients: usize, secs: u64) -> anyhow::Result<f64> {
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = vec![];
    for _ in 0..clients {
        let mut sender = connect(sim).await?;
        let (count, token, path) = (count.clone(), sim.admin_token().to_string(), path.to_string());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let req = http::Request::get(&path)
                    .header("authorization", format!("Bearer {token}"))
                    .header("accept", "application/json")
                    .header("host", "127.0.0.1")
                    .body(Empty::<Bytes>::new())?;
                let resp = sender.send_request(req).await?;
                anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
                resp.into_body().collect().await?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / secs as f64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();

    let base = rss_kib();
    let start = Instant::now();
    let mut sims = Vec::with_capacity(args.sims);
    for i in 0..args.sims {
        sims.push(rancher_sim::Sim::builder().name(format!("sim{i}")).nodes(args.nodes).start().await?);
    }
    let started_in = start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib();
    let per_sim = (after.saturating_sub(base)) as f64 / args.sims.max(1) as f64;

    println!("| measurement | value |");
    println!("|---|---|");
    println!("| sims started | {} ({} nodes each) |", args.sims, args.nodes);
    println!(
        "| start time | {:.2} s ({:.2} ms/sim) |",
        started_in.as_secs_f64(),
        started_in.as_secs_f64() * 1000.0 / args.sims.max(1) as f64
    );
    println!("| RSS before / after | {} MiB / {} MiB |", base / 1024, after / 1024);
    println!("| idle memory per sim | {:.0} KiB |", per_sim);

    let sim = &sims[0];
    for clients in [1usize, 64] {
        let floor = rate(sim, "/healthz", clients, args.seconds).await?;
        let ns = rate(sim, "/api/v1/namespaces/default", clients, args.seconds).await?;
        println!(
            "| GET namespace, {clients} client(s) | {ns:.0} req/s (/healthz on the same sim: {floor:.0} req/s, ratio {:.2}) |",
            ns / floor.max(1.0)
        );
    }
    for s in sims {
        s.shutdown().await;
    }
    Ok(())
}
