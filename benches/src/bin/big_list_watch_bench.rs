//! Big responses and many watches through the proxy (issue 14, item 3): a `rancher-sim` process
//! holding 10,000 pods, imported into a `rancher-server` process by a `rancher-agent` process. Direct
//! to the sim (its admin) against through `/k8s/clusters/<id>` (an admin API token), interleaved:
//!
//! - (a) `GET /api/v1/pods` (all namespaces) read to its last byte on a keep-alive connection;
//! - (b) 1,000 watches of configmaps (one HTTP/1.1 connection each, spread over the namespaces),
//!   then writes straight to the sim at a steady rate, and the delay from each write's answer to
//!   its event at each watcher, p50 and p99;
//! - (c) the resident memory of the server and the agent: idle (empty cluster, then 10,000 pods),
//!   at the peak of the lists and of the watches, and after the watches closed.
//!
//! Prints one table with the targets beside. `cargo build --release --workspace --bins`, then
//! `flock /tmp/rrs-heavy.lock target/release/big_list_watch_bench`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use rancher_benches::big_list::{Read, populate, read};
use rancher_benches::http_load::{Target, connect};
use rancher_benches::proc_memory::{PeakRss, rss_kb};
use rancher_benches::rke::{bin_dir, mb};
use rancher_benches::sim_import::{ImportedSim, Pids};
use rancher_benches::watch_latency::{self, latencies_ms, quantile, watch_path};

#[derive(Parser)]
struct Args {
    /// Pods in the sim.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Namespaces the pods and the watches are spread over.
    #[arg(long, default_value_t = 100)]
    namespaces: usize,
    /// Simulated nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Pod creates in flight while filling the sim.
    #[arg(long, default_value_t = 32)]
    create_in_flight: usize,
    /// Reads of the pod list per path (interleaved).
    #[arg(long, default_value_t = 7)]
    list_rounds: usize,
    /// Watches open at once.
    #[arg(long, default_value_t = 1_000)]
    watches: usize,
    /// Configmap writes per watch round and path.
    #[arg(long, default_value_t = 500)]
    writes: usize,
    /// Writes per second.
    #[arg(long, default_value_t = 50.0)]
    write_rate: f64,
    /// Watch rounds per path (interleaved).
    #[arg(long, default_value_t = 3)]
    watch_rounds: usize,
    /// Seconds to let the programs settle before an idle reading.
    #[arg(long, default_value_t = 10.0)]
    settle: f64,
    /// Where `rancher-server`, `rancher-agent` and `rancher-sim` are (default: beside this bench).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

const LIST: &str = "/api/v1/pods";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    Proxied,
}

/// Both paths, the first one changing every round.
fn order(round: usize) -> [Path; 2] {
    if round.is_multiple_of(2) { [Path::Direct, Path::Proxied] } else { [Path::Proxied, Path::Direct] }
}

/// Resident memory of the three programs, kB.
#[derive(Clone, Copy, Default)]
struct Mem {
    server: u64,
    agent: u64,
    sim: u64,
}

impl Mem {
    fn now(p: Pids) -> Mem {
        Mem { server: rss_kb(p.server), agent: rss_kb(p.agent), sim: rss_kb(p.sim) }
    }
}

/// One watch round of one path.
struct WatchRound {
    p50: f64,
    p99: f64,
    received: usize,
    expected: usize,
    opened_in: Duration,
    /// Server and agent once every watch was answered; their peaks; and after the watches closed.
    open: Mem,
    peak: Mem,
    after: Mem,
}

/// Median, minimum and maximum.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn ms_spread(v: Vec<f64>) -> String {
    let (m, lo, hi) = spread(v);
    format!("{m:.1} ms ({lo:.1}–{hi:.1})")
}

fn mb_spread(v: Vec<u64>) -> String {
    let (m, lo, hi) = spread(v.into_iter().map(|k| k as f64).collect());
    format!("{} ({:.1}–{:.1})", mb(m as u64), lo / 1024.0, hi / 1024.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

async fn settle(args: &Args) {
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
}

/// (a): `rounds` reads of the pod list per path, interleaved, after one unmeasured read each.
async fn list_rounds(env: &ImportedSim, rounds: usize) -> Result<(Vec<Read>, Vec<Read>, Mem)> {
    let (direct, proxied) = (env.direct(LIST)?, env.proxied(LIST)?);
    let (mut to_sim, mut to_server) = (connect(&direct).await?, connect(&proxied).await?);
    read(&mut to_sim, &direct).await.context("direct list")?;
    read(&mut to_server, &proxied).await.context("proxied list")?;
    let pids = env.pids();
    let peak = PeakRss::start(vec![pids.server, pids.agent, pids.sim], Duration::from_millis(20));
    let (mut d, mut p) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for path in order(round) {
            match path {
                Path::Direct => d.push(read(&mut to_sim, &direct).await.context("direct list")?),
                Path::Proxied => p.push(read(&mut to_server, &proxied).await.context("proxied list")?),
            }
        }
        eprintln!(
            "list round {}: direct {:.1} ms, proxied {:.1} ms",
            round + 1,
            d[round].last_byte.as_secs_f64() * 1e3,
            p[round].last_byte.as_secs_f64() * 1e3
        );
    }
    let peak = peak.stop().await;
    Ok((d, p, Mem { server: peak[0], agent: peak[1], sim: peak[2] }))
}

/// (b): one watch round on `path`; sequence numbers from `first_seq`.
async fn watch_round(env: &ImportedSim, args: &Args, path: Path, first_seq: u64) -> Result<WatchRound> {
    let targets = (0..args.watches)
        .map(|i| {
            let p = watch_path(i % args.namespaces);
            if path == Path::Direct { env.direct(&p) } else { env.proxied(&p) }
        })
        .collect::<Result<Vec<Target>>>()?;
    let pids = env.pids();
    let peak = PeakRss::start(vec![pids.server, pids.agent, pids.sim], Duration::from_millis(50));
    let watches = watch_latency::open(targets, 64, first_seq).await?;
    let opened_in = watches.opened_in;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let open = Mem::now(pids);
    let answered =
        watch_latency::write(&env.sim_access, args.namespaces, args.writes, args.write_rate, first_seq)
            .await?;
    let per_namespace = |n: usize| (0..args.watches).filter(|i| i % args.namespaces == n).count();
    let expected = (0..args.writes).map(|w| per_namespace(w % args.namespaces)).sum();
    let arrivals = watches.close(expected, Duration::from_secs(5)).await;
    let peak = peak.stop().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = Mem::now(pids);
    let ms = latencies_ms(&answered, &arrivals);
    Ok(WatchRound {
        p50: quantile(&ms, 0.50),
        p99: quantile(&ms, 0.99),
        received: ms.len(),
        expected,
        opened_in,
        open,
        peak: Mem { server: peak[0], agent: peak[1], sim: peak[2] },
        after,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let bins = bin_dir(args.bin_dir.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(&args, &bins))
}

async fn run(args: &Args, bins: &std::path::Path) -> Result<()> {
    let load_before = loadavg();
    let env = ImportedSim::start(bins, args.nodes).await?;
    let pids = env.pids();
    eprintln!("sim, server and agent up; their logs: {}", env.log_dir().display());
    settle(args).await;
    let idle_empty = Mem::now(pids);
    let filled_in = populate(&env.sim_access, args.namespaces, args.pods, args.create_in_flight).await?;
    eprintln!("{} pods running after {:.1} s", args.pods, filled_in.as_secs_f64());
    settle(args).await;
    let idle_pods = Mem::now(pids);

    let (direct_lists, proxied_lists, list_peak) = list_rounds(&env, args.list_rounds).await?;

    watch_latency::prepare(&env.sim_access, args.namespaces).await?;
    settle(args).await;
    let idle_before_watches = Mem::now(pids);
    let (mut direct_watch, mut proxied_watch) = (Vec::new(), Vec::new());
    let mut seq = 1;
    for round in 0..args.watch_rounds {
        for path in order(round) {
            let r = watch_round(&env, args, path, seq).await?;
            seq += args.writes as u64;
            eprintln!(
                "watch round {} {}: opened in {:.1} s, {}/{} events, p50 {:.2} ms, p99 {:.2} ms",
                round + 1,
                if path == Path::Direct { "direct" } else { "proxied" },
                r.opened_in.as_secs_f64(),
                r.received,
                r.expected,
                r.p50,
                r.p99
            );
            if path == Path::Direct { direct_watch.push(r) } else { proxied_watch.push(r) }
        }
    }
    let idle_end = Mem::now(pids);

    print_table(
        args,
        &Figures {
            idle_empty,
            idle_pods,
            direct_lists,
            proxied_lists,
            list_peak,
            idle_before_watches,
            direct_watch,
            proxied_watch,
            idle_end,
        },
    );
    println!("\nload average before: {load_before}; after: {}", loadavg());
    Ok(())
}

struct Figures {
    idle_empty: Mem,
    idle_pods: Mem,
    direct_lists: Vec<Read>,
    proxied_lists: Vec<Read>,
    list_peak: Mem,
    idle_before_watches: Mem,
    direct_watch: Vec<WatchRound>,
    proxied_watch: Vec<WatchRound>,
    idle_end: Mem,
}

/// "yes", or "no" with how far off.
fn met(ok: bool, off: impl FnOnce() -> String) -> String {
    if ok { "yes".into() } else { format!("**no**: {}", off()) }
}

fn print_table(args: &Args, f: &Figures) {
    let secs = |v: &[Read], pick: fn(&Read) -> Duration| -> Vec<f64> {
        v.iter().map(|r| pick(r).as_secs_f64() * 1e3).collect()
    };
    let (d_ttlb, p_ttlb) =
        (spread(secs(&f.direct_lists, |r| r.last_byte)).0, spread(secs(&f.proxied_lists, |r| r.last_byte)).0);
    let (d_ttfb, p_ttfb) = (
        spread(secs(&f.direct_lists, |r| r.first_byte)).0,
        spread(secs(&f.proxied_lists, |r| r.first_byte)).0,
    );
    let bytes = |v: &[Read]| v.first().map_or(0, |r| r.bytes);
    let watch = |v: &[WatchRound], pick: fn(&WatchRound) -> f64| v.iter().map(pick).collect::<Vec<f64>>();
    let (d_p50, p_p50) =
        (spread(watch(&f.direct_watch, |r| r.p50)).0, spread(watch(&f.proxied_watch, |r| r.p50)).0);
    let (d_p99, p_p99) =
        (spread(watch(&f.direct_watch, |r| r.p99)).0, spread(watch(&f.proxied_watch, |r| r.p99)).0);
    let events = |v: &[WatchRound]| {
        format!(
            "{}/{}",
            v.iter().map(|r| r.received).sum::<usize>(),
            v.iter().map(|r| r.expected).sum::<usize>()
        )
    };
    let opened = |v: &[WatchRound]| spread(v.iter().map(|r| r.opened_in.as_secs_f64()).collect());
    let mem = |v: &[WatchRound], pick: fn(&WatchRound) -> u64| mb_spread(v.iter().map(pick).collect());
    let agent_limit = 15.0 * 1024.0;

    println!(
        "{} pods in {} namespaces on {} nodes; lists: median (min–max) of {} per path; watches: {} at once \
         (HTTP/1.1, one connection each, spread over the namespaces), {} writes at {}/s per round, median \
         (min–max) of {} rounds per path; direct and proxied interleaved; sim, server and agent each a \
         process; memory is VmRSS\n",
        args.pods,
        args.namespaces,
        args.nodes,
        args.list_rounds,
        args.watches,
        args.writes,
        args.write_rate,
        args.watch_rounds
    );
    println!("| measure | direct (sim) | through rancher-rs | ratio / difference | target | met |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| `GET {LIST}`: time to last byte | {} | {} | {:.2}× | ≤ 1.25× | {} |",
        ms_spread(secs(&f.direct_lists, |r| r.last_byte)),
        ms_spread(secs(&f.proxied_lists, |r| r.last_byte)),
        p_ttlb / d_ttlb,
        met(p_ttlb / d_ttlb <= 1.25, || format!("{:.0} % over", (p_ttlb / d_ttlb / 1.25 - 1.0) * 100.0)),
    );
    println!(
        "| `GET {LIST}`: time to first byte | {} | {} | {:+.1} ms | | |",
        ms_spread(secs(&f.direct_lists, |r| r.first_byte)),
        ms_spread(secs(&f.proxied_lists, |r| r.first_byte)),
        p_ttfb - d_ttfb,
    );
    println!(
        "| `GET {LIST}`: bytes | {} | {} | {:.3}× | | |",
        bytes(&f.direct_lists),
        bytes(&f.proxied_lists),
        bytes(&f.proxied_lists) as f64 / bytes(&f.direct_lists).max(1) as f64,
    );
    println!(
        "| watch event delivery p50 | {} | {} | {:+.2} ms | | |",
        ms_spread(watch(&f.direct_watch, |r| r.p50)),
        ms_spread(watch(&f.proxied_watch, |r| r.p50)),
        p_p50 - d_p50,
    );
    println!(
        "| watch event delivery p99 | {} | {} | {:+.2} ms | ≤ +10 ms | {} |",
        ms_spread(watch(&f.direct_watch, |r| r.p99)),
        ms_spread(watch(&f.proxied_watch, |r| r.p99)),
        p_p99 - d_p99,
        met(p_p99 - d_p99 <= 10.0, || format!("{:.1} ms over", p_p99 - d_p99 - 10.0)),
    );
    println!(
        "| watch events received / expected | {} | {} | | | |",
        events(&f.direct_watch),
        events(&f.proxied_watch)
    );
    let (d_open, p_open) = (opened(&f.direct_watch), opened(&f.proxied_watch));
    println!(
        "| {} watches opened in (median) | {:.2} s | {:.2} s | {:.2}× | | |",
        args.watches,
        d_open.0,
        p_open.0,
        p_open.0 / d_open.0
    );
    let agent_row = |what: &str, kb: u64| {
        println!(
            "| agent RSS, {what} | — | {} | | ≤ 15 MB | {} |",
            mb(kb),
            met(kb as f64 <= agent_limit, || format!("{:.1} MB over", (kb as f64 - agent_limit) / 1024.0)),
        );
    };
    agent_row("idle, empty cluster", f.idle_empty.agent);
    agent_row(&format!("idle, {} pods", args.pods), f.idle_pods.agent);
    println!("| agent RSS, peak while listing | — | {} | | | |", mb(f.list_peak.agent));
    println!("| agent RSS, before the watches | — | {} | | | |", mb(f.idle_before_watches.agent));
    println!(
        "| agent RSS, {} watches open | — | {} | | | |",
        args.watches,
        mem(&f.proxied_watch, |r| r.open.agent)
    );
    println!(
        "| agent RSS, peak during the watches | — | {} | | | |",
        mem(&f.proxied_watch, |r| r.peak.agent)
    );
    println!(
        "| agent RSS, 5 s after the watches closed | — | {} | | | |",
        mem(&f.proxied_watch, |r| r.after.agent)
    );
    println!("| server RSS, idle, empty cluster | — | {} | | | |", mb(f.idle_empty.server));
    println!("| server RSS, idle, {} pods | — | {} | | | |", args.pods, mb(f.idle_pods.server));
    println!("| server RSS, peak while listing | — | {} | | | |", mb(f.list_peak.server));
    println!("| server RSS, before the watches | — | {} | | | |", mb(f.idle_before_watches.server));
    println!(
        "| server RSS, {} watches open | — | {} | | | |",
        args.watches,
        mem(&f.proxied_watch, |r| r.open.server)
    );
    println!(
        "| server RSS, peak during the watches | — | {} | | | |",
        mem(&f.proxied_watch, |r| r.peak.server)
    );
    println!(
        "| server RSS, 5 s after the watches closed | — | {} | | | |",
        mem(&f.proxied_watch, |r| r.after.server)
    );
    println!(
        "| server / agent RSS at the end | — | {} / {} | | | |",
        mb(f.idle_end.server),
        mb(f.idle_end.agent)
    );
    println!(
        "| sim RSS (the API server): empty, {} pods, peak with {} watches direct / proxied | {} / {} / {} | {} | | | |",
        args.pods,
        args.watches,
        mb(f.idle_empty.sim),
        mb(f.idle_pods.sim),
        mem(&f.direct_watch, |r| r.peak.sim),
        mem(&f.proxied_watch, |r| r.peak.sim),
    );
}
