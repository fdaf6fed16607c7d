//! Idle cost of a connected fleet: one server (MemoryStore, temp data dir) and N imported clusters,
//! each a `rancher-sim` with its cluster agent, all in this process. Once every cluster is connected
//! and the fleet has settled, nothing is asked of anyone for a fixed window, and the bench prints the
//! CPU time the server's threads used in it, per second of wall time (1.00 = one core busy).
//!
//! The server runs on its own runtime, whose threads are named `rancher-server`, and only those
//! threads are counted (from `/proc/self/task/*/stat`); the sims and agents run on the main runtime.
//! The same window is measured for the sims and agents, as the direct side: the work the fleet
//! itself does while idle.
//!
//! `cargo run --release -p rancher-benches --bin fleet_idle_bench -- --clusters 100 --seconds 20`

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use rancher::agent::AgentBuilder;
use rancher::server::Server;
use rancher_benches::json_of;
use rancher_core::store::MemoryStore;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// How many clusters (a sim and its agent each).
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// The idle window measured, in seconds.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// How long the fleet settles after the last cluster connected, in seconds.
    #[arg(long, default_value_t = 15.0)]
    settle: f64,
}

const PASSWORD: &str = "bench-Passw0rd-123";
/// The server runtime's thread name; the threads counted as the server's.
const SERVER_THREADS: &str = "rancher-server";

/// CPU time (user + system, in clock ticks) of this process's threads, split into those named
/// [`SERVER_THREADS`] and the rest.
fn thread_ticks() -> Result<(u64, u64)> {
    let (mut server, mut rest) = (0, 0);
    for task in std::fs::read_dir("/proc/self/task").context("reading /proc/self/task")? {
        let Ok(stat) = std::fs::read_to_string(task?.path().join("stat")) else { continue };
        // `pid (comm) state ...`: comm may hold spaces; the fields after the last ')' are fixed.
        let Some((head, tail)) = stat.rsplit_once(')') else { continue };
        let comm = head.split_once('(').map_or("", |(_, c)| c);
        let fields: Vec<&str> = tail.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the state.
        let ticks: u64 =
            fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
        if comm.starts_with(SERVER_THREADS) {
            server += ticks;
        } else {
            rest += ticks;
        }
    }
    Ok((server, rest))
}

/// Clock ticks per second (`getconf CLK_TCK`); 100 on every Linux this runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// Creates `count` imported clusters, starts a sim and an agent for each, and waits until all are
/// connected. Returns the sims (dropping one stops it).
async fn start_fleet(
    url: &str,
    server_ca: &str,
    checksum: &str,
    count: usize,
    dir: &std::path::Path,
    stop: &CancellationToken,
) -> Result<Vec<rancher_sim::SimHandle>> {
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(server_ca.as_bytes())?)
        .build()?;
    let login = http
        .post(format!("{url}/v3-public/localProviders/local?action=login"))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await?;
    let admin = json_of(login, "login").await?["token"].as_str().context("login: no token")?.to_owned();
    let mut sims = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("idle-{i}");
        let created = http
            .post(format!("{url}/v3/clusters"))
            .bearer_auth(&admin)
            .json(&json!({"metadata": {"name": name}, "spec": {"importedConfig": {}}}))
            .send()
            .await?;
        json_of(created, "creating a cluster").await?;
        let crt = http
            .get(format!("{url}/v3/clusterregistrationtokens/{name}:default-token"))
            .bearer_auth(&admin)
            .send()
            .await?;
        let crt = json_of(crt, "registration token").await?;
        let token = crt["status"]["token"].as_str().context("no registration token")?.to_owned();
        let sim = rancher_sim::Sim::builder().name(&name).start().await?;
        let kc = dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&kc, sim.kubeconfig_yaml())?;
        let agent = AgentBuilder::new(url, checksum, token).kubeconfig(&kc);
        let s = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = agent.run(s).await {
                eprintln!("agent stopped: {e}");
            }
        });
        sims.push(sim);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = http.get(format!("{url}/v3/clusters")).bearer_auth(&admin).send().await?;
        let list = json_of(list, "listing clusters").await?;
        let items = list["data"].as_array().or_else(|| list["items"].as_array()).cloned().unwrap_or_default();
        let connected = items
            .iter()
            .filter(|c| {
                c["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Connected" && c["status"] == "True"))
            })
            .count();
        if connected >= count {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {connected} of {count} clusters connected within 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(sims)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name(SERVER_THREADS)
        .worker_threads(2)
        .enable_all()
        .build()?;
    let fleet_rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dir = rancher_benches::ScratchDir::new()?;
    let stop = CancellationToken::new();
    let server = server_rt.block_on(
        Server::builder()
            .data_dir(dir.path())
            .store(Arc::new(MemoryStore::new()))
            .https_listen("127.0.0.1:0".parse()?)
            .bootstrap_password(PASSWORD)
            .build(),
    )?;
    let (url, ca, checksum) =
        (server.url(), server.ca_pem().to_owned(), server.registration().ca_checksum().to_owned());
    let s = stop.clone();
    let served = server_rt.spawn(server.run(async move { s.cancelled().await }));

    fleet_rt.block_on(async {
        let started = Instant::now();
        let sims = start_fleet(&url, &ca, &checksum, args.clusters, dir.path(), &stop).await?;
        println!("{} clusters connected in {:.1} s", args.clusters, started.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
        let (server0, rest0) = thread_ticks()?;
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
        let wall = t0.elapsed().as_secs_f64();
        let (server1, rest1) = thread_ticks()?;
        let per_second = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / wall;
        println!("\nidle window: {wall:.1} s, {} connected clusters\n", args.clusters);
        println!("| threads | CPU s per s |");
        println!("|---|---|");
        println!("| server | {:.3} |", per_second(server1.saturating_sub(server0)));
        println!("| sims + agents (the fleet) | {:.3} |", per_second(rest1.saturating_sub(rest0)));
        stop.cancel();
        drop(sims);
        Ok::<_, anyhow::Error>(())
    })?;
    let _ = server_rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), served).await });
    Ok(())
}
