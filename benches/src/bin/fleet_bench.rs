//! A fleet of imported clusters against one `rancher-server` or several replicas on etcd: how long
//! until every cluster is active from cold and after a restart of every replica, what each connected
//! cluster costs the server in memory, its idle CPU, proxy latency beside the direct path, and the
//! load on etcd.
//!
//! The clusters are those of `fleet_bench fleet` processes ([`rancher_benches::fleet`]): real cluster
//! agents, each with its own registration token and tunnel session, reaching sims shared by
//! `--per-sim` agents; one process holds at most `--per-process` of them (a file descriptor budget).
//! The servers are `rancher-server` processes from beside this binary.
//!
//! `cargo build --release -p rancher -p rancher-benches --features rancher/etcd,rancher-benches/etcd
//!  --bin rancher-server --bin fleet_bench`, then `target/release/fleet_bench --clusters 1000
//!  [--replicas 3]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use futures::{StreamExt as _, TryStreamExt as _};
use rancher_benches::ScratchDir;
use rancher_benches::fanout::{self, FanOut};
use rancher_benches::fleet::FleetArgs;
use rancher_benches::fleet_servers::{Servers, until_quiet};
use rancher_benches::proc_cpu::cpu_seconds;
use rancher_benches::proc_memory::rss_split_kb;
use rancher_benches::rke::ServerProc;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

#[derive(Parser)]
#[command(about = "Time to active, memory per cluster, idle CPU and proxy latency of a fleet of clusters")]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    #[command(flatten)]
    bench: BenchArgs,
}

#[derive(Subcommand)]
enum Role {
    /// Run one fleet process (started by the bench itself).
    Fleet(FleetArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    /// How many clusters.
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
    /// How many `rancher-server` replicas (more than one share an etcd).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// The store of a single server: `embedded` (its default) or `etcd`.
    #[arg(long, default_value = "embedded")]
    store: String,
    /// Clusters per fleet process: each holds some twenty file descriptors in it (its tunnel, its
    /// sim's listener, six watches of the agent and the sim's side of them, pooled connections), and
    /// a process may open 20,000.
    #[arg(long, default_value_t = 800)]
    per_process: usize,
    /// Agents per sim. More than one makes the server's RBAC syncs of the clusters sharing a sim
    /// prune each other's objects (each cluster's are its own), so the sims are busy; for memory only.
    #[arg(long, default_value_t = 1)]
    per_sim: usize,
    /// Proxied requests (and as many direct ones, interleaved) for the latency figures.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// The idle window, in seconds.
    #[arg(long, default_value_t = 20.0)]
    idle_seconds: f64,
    /// How long to wait for the fleet to come up, in seconds.
    #[arg(long, default_value_t = 600.0)]
    timeout: f64,
    /// Where `rancher-server` is (default: beside this binary). `rancherctl` there too times
    /// `rancherctl kubectl --all-clusters -- get nodes` over the fleet.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The fan-out's concurrencies to time (`rancherctl kubectl --all-clusters --concurrency`).
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    fanout: Vec<u16>,
    /// One more argument for every `rancher-server` (repeat for each: `--server-arg=--agent-connect-rate
    /// --server-arg=400`).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.role {
        Some(Role::Fleet(args)) => rt.block_on(rancher_benches::fleet::run(args)),
        None => rt.block_on(bench(cli.bench)),
    }
}

/// Creates the imported clusters `fleet-<i>` and returns each one's registration token.
async fn create_clusters(server: &ServerProc, n: usize) -> Result<Vec<(String, String)>> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let name = format!("fleet-{i}");
            let crt = server.create_imported(&name).await?;
            let token =
                crt["status"]["token"].as_str().context("a registration token without its token")?.to_owned();
            Ok::<_, anyhow::Error>((name, token))
        })
        .buffered(16)
        .try_collect()
        .await
}

/// How many of the clusters are active (one list of all of them).
async fn active(server: &ServerProc) -> Result<usize> {
    let list = server.get("/v3/clusters").await?;
    let items = list["data"].as_array().or_else(|| list["items"].as_array()).context("a cluster list")?;
    Ok(items.iter().filter(|c| c["state"] == "active" || cluster_ready(c)).count())
}

fn cluster_ready(c: &Value) -> bool {
    c["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Seconds from `since` until every one of `n` agents holds a session and every cluster is active.
async fn until_all_back(servers: &Servers, n: usize, since: Instant, timeout: Duration) -> Result<f64> {
    let deadline = since + timeout;
    let mut last = 0.0;
    loop {
        let s = servers.sessions().await.unwrap_or(0.0);
        if s >= n as f64 && active(servers.first()).await? >= n {
            return Ok(since.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            bail!("{s} of {n} agents connected after {timeout:?}");
        }
        if s - last >= n as f64 / 10.0 {
            eprintln!("  {:>5.1} s: {s} sessions", since.elapsed().as_secs_f64());
            last = s;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The fleet processes; dropping them closes their standard input, which ends them.
struct Fleet {
    children: Vec<Child>,
}

impl Fleet {
    async fn start(
        args: &BenchArgs,
        dir: &Path,
        servers: &[String],
        checksum: &str,
        tokens: &[(String, String)],
    ) -> Result<Fleet> {
        let mut children = Vec::new();
        for (p, chunk) in tokens.chunks(args.per_process).enumerate() {
            let pdir = dir.join(format!("fleet-{p}"));
            std::fs::create_dir_all(&pdir)?;
            let file = pdir.join("tokens");
            let lines: String = chunk.iter().map(|(n, t)| format!("{n} {t}\n")).collect();
            std::fs::write(&file, lines)?;
            let log = std::fs::File::create(pdir.join("fleet.log"))?;
            let mut child = Command::new(std::env::current_exe()?)
                .arg("fleet")
                .arg("--servers")
                .arg(servers.join(","))
                .args(["--ca-checksum", checksum, "--per-sim", &args.per_sim.to_string()])
                .arg("--tokens")
                .arg(&file)
                .arg("--dir")
                .arg(&pdir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()?;
            let out = child.stdout.take().context("the fleet's stdout")?;
            let line = BufReader::new(out).lines().next_line().await?.unwrap_or_default();
            if !line.starts_with("started ") {
                bail!("fleet process {p} did not start (see {})", pdir.join("fleet.log").display());
            }
            children.push(child);
        }
        Ok(Fleet { children })
    }

    fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(Child::id).collect()
    }
}

/// The CPU seconds per second of wall time each of `pids` spends over `window`.
async fn cpu_over(pids: &[u32], window: Duration) -> Result<Vec<f64>> {
    let before: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect::<Result<_>>()?;
    let t = Instant::now();
    tokio::time::sleep(window).await;
    let wall = t.elapsed().as_secs_f64();
    let after: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect::<Result<_>>()?;
    Ok(after.iter().zip(&before).map(|(a, b)| (a - b) / wall).collect())
}

/// Resident anonymous memory (heap, stacks) of each of `pids`, in kB.
fn anon_kb(pids: &[u32]) -> Vec<u64> {
    pids.iter().map(|&p| rss_split_kb(p).0).collect()
}

/// etcd's own counters: database size, keys, and the operations it has served.
async fn etcd_counters(url: &str) -> Result<BTreeMap<&'static str, f64>> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    let get = |name: &str| {
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    Ok(BTreeMap::from([
        ("db bytes", get("etcd_mvcc_db_total_size_in_bytes")),
        ("keys", get("etcd_debugging_mvcc_keys_total")),
        ("puts", get("etcd_debugging_mvcc_put_total")),
        ("deletes", get("etcd_debugging_mvcc_delete_total")),
        ("ranges", get("etcd_debugging_mvcc_range_total")),
        ("txns", get("etcd_debugging_mvcc_txn_total")),
        ("watchers", get("etcd_debugging_mvcc_watcher_total")),
    ]))
}

/// p50 and p99 of `samples`, in milliseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64() * 1e3;
    (at(0.50), at(0.99))
}

/// `GET /api/v1/namespaces/default` of random clusters through the servers (in turn, as a
/// round-robin balancer would send them), interleaved with the same request straight to a sim.
async fn latency(
    servers: &Servers,
    clusters: usize,
    direct: &Value,
    requests: usize,
) -> Result<((f64, f64), (f64, f64))> {
    let token = servers.first().token.clone();
    let urls = servers.urls();
    let proxy = reqwest::Client::builder().danger_accept_invalid_certs(true).build()?;
    let sim = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(
            direct["ca"].as_str().context("direct.json: ca")?.as_bytes(),
        )?)
        .build()?;
    let sim_url = direct["url"].as_str().context("direct.json: url")?;
    let sim_token = direct["token"].as_str().context("direct.json: token")?;
    let (mut proxied, mut straight) = (Vec::with_capacity(requests), Vec::with_capacity(requests));
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..requests + 50 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let cluster = (seed % clusters as u64) as usize;
        let url = format!("{}/k8s/clusters/fleet-{cluster}/api/v1/namespaces/default", urls[i % urls.len()]);
        let t = Instant::now();
        let resp = proxy.get(&url).bearer_auth(&token).send().await?;
        let status = resp.status();
        resp.bytes().await?;
        if !status.is_success() {
            bail!("GET {url}: {status}");
        }
        let p = t.elapsed();
        let t = Instant::now();
        let resp =
            sim.get(format!("{sim_url}/api/v1/namespaces/default")).bearer_auth(sim_token).send().await?;
        let status = resp.status();
        resp.bytes().await?;
        if !status.is_success() {
            bail!("GET the sim directly: {status}");
        }
        // The first requests open connections (and the server's to each cluster): not counted.
        if i >= 50 {
            proxied.push(p);
            straight.push(t.elapsed());
        }
    }
    Ok((percentiles(&mut proxied), percentiles(&mut straight)))
}

/// The fan-out at each of `concurrencies`, when `rancherctl` is beside the server (none otherwise).
async fn fan_out(servers: &Servers, dir: &Path, concurrencies: &[u16]) -> Result<Vec<FanOut>> {
    if concurrencies.is_empty() {
        return Ok(Vec::new());
    }
    if !servers.bins.join("rancherctl").exists() {
        println!("(no rancherctl in {}: the fan-out is not timed)", servers.bins.display());
        return Ok(Vec::new());
    }
    let home = dir.join("rancherctl-home");
    fanout::login(&servers.bins, &home, &servers.replicas[0].url()).await?;
    // Each concurrency with kubectl's discovery cache emptied, then the last again with it kept.
    let last = concurrencies.last().copied().unwrap_or(16);
    let plan = concurrencies.iter().map(|&c| (c, false)).chain([(last, true)]);
    let mut runs = Vec::new();
    for (c, warm) in plan {
        let run = fanout::run(&servers.bins, &home, c, warm, Duration::from_secs(60)).await?;
        println!(
            "fan-out at {c}: {:.1} s, {} clusters answered, {} failed",
            run.seconds, run.answered, run.failed
        );
        runs.push(run);
    }
    Ok(runs)
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

async fn bench(args: BenchArgs) -> Result<()> {
    let n = args.clusters;
    let timeout = Duration::from_secs_f64(args.timeout);
    let dir = ScratchDir::new()?;
    let mut servers =
        Servers::start(args.replicas, &args.store, args.bin_dir.clone(), dir.path(), &args.server_args)
            .await?;
    let etcd_url = servers.etcd.as_ref().map(|e| e.endpoints()[0].clone());
    let etcd_pid = servers.etcd.as_ref().and_then(|e| e.members[0].pid());
    let with = if args.server_args.is_empty() {
        String::new()
    } else {
        format!(", servers run with `{}`", args.server_args.join(" "))
    };
    println!(
        "{n} clusters, {} replica(s) on {}, {} fleet process(es), {} agents per sim{with}\n",
        args.replicas,
        if etcd_url.is_some() { "etcd" } else { "the embedded store" },
        n.div_ceil(args.per_process),
        args.per_sim
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let empty = anon_kb(&servers.pids());

    let t = Instant::now();
    let tokens = create_clusters(servers.first(), n).await?;
    let created_in = t.elapsed().as_secs_f64();
    let cacerts = servers.first().get("/v3/settings/cacerts").await?;
    let pem = rancher::protocol::normalize_ca(cacerts["value"].as_str().context("cacerts without a value")?);
    let checksum = rancher_tunnel::ca_checksum(pem.as_bytes());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let created = anon_kb(&servers.pids());
    let etcd0 = match &etcd_url {
        Some(u) => Some(etcd_counters(u).await?),
        None => None,
    };
    let etcd_cpu0 = etcd_pid.map(cpu_seconds).transpose()?;

    let cold = Instant::now();
    let fleet = Fleet::start(&args, dir.path(), &servers.urls(), &checksum, &tokens).await?;
    let cold_s = until_all_back(&servers, n, cold, timeout).await?;
    println!("all {n} active {cold_s:.1} s after the fleet started (clusters created in {created_in:.1} s)");
    let quiet_s = until_quiet(&servers, cold, timeout).await?;
    println!("the servers' work for the new fleet done {quiet_s:.1} s after it started");
    let etcd1 = match &etcd_url {
        Some(u) => Some(etcd_counters(u).await?),
        None => None,
    };
    let etcd_cpu1 = etcd_pid.map(cpu_seconds).transpose()?;

    let connected = anon_kb(&servers.pids());
    let idle_window = Duration::from_secs_f64(args.idle_seconds);
    let mut pids = servers.pids();
    pids.extend(etcd_pid);
    let idle = cpu_over(&pids, idle_window).await?;
    let direct: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("fleet-0/direct.json"))?)?;
    let (p, d) = latency(&servers, n, &direct, args.requests).await?;
    let fanouts = fan_out(&servers, dir.path(), &args.fanout).await?;

    // Every replica stops (SIGTERM: each drains) and starts again on its port and data.
    let down = Instant::now();
    servers.stop_all().await?;
    let stopped_s = down.elapsed().as_secs_f64();
    servers.start_all().await?;
    let up_s = down.elapsed().as_secs_f64();
    let back_s = until_all_back(&servers, n, down, timeout).await?;
    println!(
        "all {n} back {back_s:.1} s after the stop began (stopped in {stopped_s:.1} s, serving again at {up_s:.1} s)"
    );
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after_restart = anon_kb(&servers.pids());

    println!(
        "\n| replica | anon RSS empty | with {n} clusters created | {n} connected | per connected cluster | per cluster, all in | after the restart | idle CPU s/s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for i in 0..servers.replicas.len() {
        let per_connected = connected[i].saturating_sub(created[i]) as f64 / n as f64;
        let per_all = connected[i].saturating_sub(empty[i]) as f64 / n as f64;
        println!(
            "| {i} | {} | {} | {} | {per_connected:.1} KiB | {per_all:.1} KiB | {} | {:.3} |",
            mb(empty[i]),
            mb(created[i]),
            mb(connected[i]),
            mb(after_restart[i]),
            idle[i]
        );
    }
    let total_per = |a: &[u64], b: &[u64]| {
        a.iter().zip(b).map(|(x, y)| x.saturating_sub(*y)).sum::<u64>() as f64 / n as f64
    };
    println!(
        "\nall replicas: {:.1} KiB per connected cluster (sessions and caches), {:.1} KiB per cluster with its stored objects",
        total_per(&connected, &created),
        total_per(&connected, &empty)
    );
    println!("\n| path | p50 | p99 |");
    println!("|---|---|---|");
    println!("| direct to a sim | {:.2} ms | {:.2} ms |", d.0, d.1);
    println!("| through the server(s), random clusters | {:.2} ms | {:.2} ms |", p.0, p.1);
    println!("| added | {:+.2} ms | {:+.2} ms |", p.0 - d.0, p.1 - d.1);
    if !fanouts.is_empty() {
        println!("\n`rancherctl kubectl --all-clusters -- get nodes --no-headers` through the first server:");
        println!(
            "\n| concurrency | kubectl's discovery cache | wall time | clusters answered | failed | rows |"
        );
        println!("|---|---|---|---|---|---|");
        for f in &fanouts {
            let cache = if f.warm { "kept" } else { "empty" };
            println!(
                "| {} | {cache} | {:.1} s | {} | {} | {} |",
                f.concurrency, f.seconds, f.answered, f.failed, f.rows
            );
        }
    }
    if let (Some(e0), Some(e1), Some(c0), Some(c1)) = (&etcd0, &etcd1, etcd_cpu0, etcd_cpu1) {
        println!("\netcd while the fleet came up ({cold_s:.1} s): CPU {:.1} s", c1 - c0);
        for (k, v) in e1 {
            println!("- {k}: {v} ({:+})", v - e0[k]);
        }
        println!("etcd idle: {:.3} CPU s/s", idle.last().copied().unwrap_or(0.0));
    }
    let fleet_cpu = cpu_over(&fleet.pids(), Duration::from_secs(5)).await?;
    println!("\n(the fleet processes themselves, idle: {:.3} CPU s/s in all)", fleet_cpu.iter().sum::<f64>());
    drop(fleet);
    servers.stop_all().await?;
    Ok(())
}
