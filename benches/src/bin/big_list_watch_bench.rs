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
use rancher_benches::http_load::connect;
use rancher_benches::proc_memory::{PeakRss, rss_kb, rss_split_kb};
use rancher_benches::rke::{bin_dir, mb};
use rancher_benches::sim_import::{ImportedSim, Pids, SimShape};
use rancher_benches::watch_latency::{self, latencies_ms, quantile, status_of, watch_path};
use tokio::time::Instant;

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
    /// Events the sim keeps per namespace: each pod's start makes four, and the sim's controllers
    /// go over every Event on every change, so 40,000 of them would make each write cost the sim
    /// a core for a fraction of a second (a real API server's do not).
    #[arg(long, default_value_t = 10)]
    sim_events_per_namespace: usize,
    /// Pod creates in flight while filling the sim.
    #[arg(long, default_value_t = 32)]
    create_in_flight: usize,
    /// Reads of the pod list per path (interleaved).
    #[arg(long, default_value_t = 7)]
    list_rounds: usize,
    /// Watches open at once; each count is measured in its own rounds (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,200")]
    watches: Vec<usize>,
    /// Configmap writes per watch round and path.
    #[arg(long, default_value_t = 300)]
    writes: usize,
    /// Writes per second (a sim of 10,000 pods answers about 16 writes/s: its controllers go over
    /// every pod on every change).
    #[arg(long, default_value_t = 12.0)]
    write_rate: f64,
    /// Watch rounds per path (interleaved).
    #[arg(long, default_value_t = 3)]
    watch_rounds: usize,
    /// Seconds to let the programs settle before an idle reading.
    #[arg(long, default_value_t = 10.0)]
    settle: f64,
    /// Seconds to keep the programs running after the table (to profile them: their pids are
    /// printed).
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
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
    /// The agent's anonymous and file-backed resident memory.
    agent_split: (u64, u64),
}

impl Mem {
    fn now(p: Pids) -> Mem {
        let agent_split = rss_split_kb(p.agent);
        Mem { server: rss_kb(p.server), agent: rss_kb(p.agent), sim: rss_kb(p.sim), agent_split }
    }

    fn peak(kb: &[u64]) -> Mem {
        Mem { server: kb[0], agent: kb[1], sim: kb[2], agent_split: (0, 0) }
    }
}

/// One watch round of one path.
struct WatchRound {
    /// Watches asked for, and those refused (with the first refusal).
    attempted: usize,
    refused: (usize, Option<String>),
    /// The status of a `GET /api/v1/namespaces/default` on the same path while the watches are open.
    probe: u16,
    /// The writes' rate as achieved (each waits for the previous one's answer).
    writes_per_s: f64,
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

fn rate_spread(v: Vec<f64>) -> String {
    let (m, lo, hi) = spread(v);
    format!("{m:.1} ({lo:.1}–{hi:.1})")
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
    Ok((d, p, Mem::peak(&peak)))
}

/// (b): one round of `count` watches on `path`; sequence numbers from `first_seq`.
async fn watch_round(
    env: &ImportedSim,
    args: &Args,
    path: Path,
    count: usize,
    first_seq: u64,
) -> Result<WatchRound> {
    let target = |p: &str| if path == Path::Direct { env.direct(p) } else { env.proxied(p) };
    let targets = (0..count).map(|i| target(&watch_path(i % args.namespaces))).collect::<Result<Vec<_>>>()?;
    let pids = env.pids();
    let peak = PeakRss::start(vec![pids.server, pids.agent, pids.sim], Duration::from_millis(50));
    let watches = watch_latency::open(targets, 64, first_seq).await?;
    let (opened_in, refused) = (watches.opened_in, watches.refused.clone());
    let mut per_namespace = vec![0; args.namespaces];
    for i in &watches.opened {
        per_namespace[i % args.namespaces] += 1;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let open = Mem::now(pids);
    let probe = status_of(&target("/api/v1/namespaces/default")?).await?;
    let writing = Instant::now();
    let answered =
        watch_latency::write(&env.sim_access, args.namespaces, args.writes, args.write_rate, first_seq)
            .await?;
    let writes_per_s = args.writes as f64 / writing.elapsed().as_secs_f64();
    let expected = (0..args.writes).map(|w| per_namespace[w % args.namespaces]).sum();
    let arrivals = watches.close(expected, Duration::from_secs(5)).await;
    let peak = peak.stop().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = Mem::now(pids);
    let ms = latencies_ms(&answered, &arrivals);
    Ok(WatchRound {
        writes_per_s,
        attempted: count,
        refused,
        probe,
        p50: quantile(&ms, 0.50),
        p99: quantile(&ms, 0.99),
        received: ms.len(),
        expected,
        opened_in,
        open,
        peak: Mem::peak(&peak),
        after,
    })
}

/// The rounds of one count of watches.
struct WatchSet {
    count: usize,
    direct: Vec<WatchRound>,
    proxied: Vec<WatchRound>,
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
    let shape = SimShape { nodes: args.nodes, events_per_namespace: args.sim_events_per_namespace };
    let env = ImportedSim::start(bins, shape).await?;
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
    let mut watch = Vec::new();
    let mut seq = 1;
    for &count in &args.watches {
        let mut set = WatchSet { count, direct: Vec::new(), proxied: Vec::new() };
        for round in 0..args.watch_rounds {
            for path in order(round) {
                let r = watch_round(&env, args, path, count, seq).await?;
                seq += args.writes as u64;
                eprintln!(
                    "{count} watches, round {} {}: {} refused, opened in {:.1} s, a GET meanwhile {}, \
                     {}/{} events, p50 {:.2} ms, p99 {:.2} ms",
                    round + 1,
                    if path == Path::Direct { "direct" } else { "proxied" },
                    r.refused.0,
                    r.opened_in.as_secs_f64(),
                    r.probe,
                    r.received,
                    r.expected,
                    r.p50,
                    r.p99
                );
                if path == Path::Direct { set.direct.push(r) } else { set.proxied.push(r) }
            }
        }
        watch.push(set);
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
            watch,
            idle_end,
        },
    );
    println!("\nload average before: {load_before}; after: {}", loadavg());
    if args.hold > 0.0 {
        eprintln!(
            "holding for {} s: server {}, agent {}, sim {}",
            args.hold, pids.server, pids.agent, pids.sim
        );
        tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    }
    Ok(())
}

struct Figures {
    idle_empty: Mem,
    idle_pods: Mem,
    direct_lists: Vec<Read>,
    proxied_lists: Vec<Read>,
    list_peak: Mem,
    idle_before_watches: Mem,
    watch: Vec<WatchSet>,
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
    let median = |v: Vec<f64>| spread(v).0;
    let (d_ttlb, p_ttlb) =
        (median(secs(&f.direct_lists, |r| r.last_byte)), median(secs(&f.proxied_lists, |r| r.last_byte)));
    let (d_ttfb, p_ttfb) =
        (median(secs(&f.direct_lists, |r| r.first_byte)), median(secs(&f.proxied_lists, |r| r.first_byte)));
    let bytes = |v: &[Read]| v.first().map_or(0, |r| r.bytes);
    let agent_limit = 15.0 * 1024.0;

    println!(
        "{} pods in {} namespaces on {} nodes; lists: median (min–max) of {} per path; watches: {} at \
         once (HTTP/1.1, one connection each, spread over the namespaces), {} writes at {}/s per round, \
         median (min–max) of {} rounds per path; direct and proxied interleaved; sim, server and agent \
         each a process; memory is VmRSS\n",
        args.pods,
        args.namespaces,
        args.nodes,
        args.list_rounds,
        args.watches.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and "),
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
    for set in &f.watch {
        print_watch_rows(set);
    }
    let agent_row = |what: &str, m: &Mem| {
        let kb = m.agent;
        println!(
            "| agent RSS, {what} | — | {} (anonymous {}, file {}) | | ≤ 15 MB | {} |",
            mb(kb),
            mb(m.agent_split.0),
            mb(m.agent_split.1),
            met(kb as f64 <= agent_limit, || format!("{:.1} MB over", (kb as f64 - agent_limit) / 1024.0)),
        );
    };
    agent_row("idle, empty cluster", &f.idle_empty);
    agent_row(&format!("idle, {} pods", args.pods), &f.idle_pods);
    let rss_rows = |who: &str, pick: fn(&Mem) -> u64| {
        if who == "server" {
            println!("| server RSS, idle, empty cluster | — | {} | | | |", mb(pick(&f.idle_empty)));
            println!("| server RSS, idle, {} pods | — | {} | | | |", args.pods, mb(pick(&f.idle_pods)));
        }
        println!("| {who} RSS, peak while listing | — | {} | | | |", mb(pick(&f.list_peak)));
        println!("| {who} RSS, before the watches | — | {} | | | |", mb(pick(&f.idle_before_watches)));
        for set in &f.watch {
            let n = set.count;
            let of = |m: fn(&WatchRound) -> Mem| mb_spread(set.proxied.iter().map(|r| pick(&m(r))).collect());
            println!("| {who} RSS, {n} watches asked for, open | — | {} | | | |", of(|r| r.open));
            println!("| {who} RSS, {n} watches, peak | — | {} | | | |", of(|r| r.peak));
            println!("| {who} RSS, {n} watches, 5 s after they closed | — | {} | | | |", of(|r| r.after));
        }
        println!("| {who} RSS at the end | — | {} | | | |", mb(pick(&f.idle_end)));
    };
    rss_rows("agent", |m| m.agent);
    rss_rows("server", |m| m.server);
    let sim_peaks = f
        .watch
        .iter()
        .map(|set| {
            let peak = |v: &[WatchRound]| mb(spread(v.iter().map(|r| r.peak.sim as f64).collect()).0 as u64);
            format!("{}: {} / {}", set.count, peak(&set.direct), peak(&set.proxied))
        })
        .collect::<Vec<_>>()
        .join("; ");
    println!(
        "| sim RSS (the API server): empty; {} pods; peak with N watches direct / proxied | {}; {}; {sim_peaks} | | | | |",
        args.pods,
        mb(f.idle_empty.sim),
        mb(f.idle_pods.sim),
    );
}

/// The rows of one count of watches.
fn print_watch_rows(set: &WatchSet) {
    let n = set.count;
    let pick = |v: &[WatchRound], p: fn(&WatchRound) -> f64| v.iter().map(p).collect::<Vec<f64>>();
    let median = |v: &[WatchRound], p: fn(&WatchRound) -> f64| spread(pick(v, p)).0;
    let open = |v: &[WatchRound]| {
        let refused: usize = v.iter().map(|r| r.refused.0).sum();
        let asked: usize = v.iter().map(|r| r.attempted).sum();
        let why = v.iter().find_map(|r| r.refused.1.clone()).map(|w| format!(" (refused: {w})"));
        format!("{}/{asked}{}", asked - refused, why.unwrap_or_default().replace('|', "/").replace('\n', " "))
    };
    println!(
        "| {n} watches: open / asked for, all rounds | {} | {} | | | |",
        open(&set.direct),
        open(&set.proxied)
    );
    let probes = |v: &[WatchRound]| v.iter().map(|r| r.probe.to_string()).collect::<Vec<_>>().join(", ");
    println!(
        "| {n} watches: status of a `GET /api/v1/namespaces/default` meanwhile | {} | {} | | | |",
        probes(&set.direct),
        probes(&set.proxied)
    );
    let (d50, p50) = (median(&set.direct, |r| r.p50), median(&set.proxied, |r| r.p50));
    println!(
        "| {n} watches: event delivery p50 | {} | {} | {:+.2} ms | | |",
        ms_spread(pick(&set.direct, |r| r.p50)),
        ms_spread(pick(&set.proxied, |r| r.p50)),
        p50 - d50,
    );
    let (d99, p99) = (median(&set.direct, |r| r.p99), median(&set.proxied, |r| r.p99));
    let refused: usize = set.proxied.iter().map(|r| r.refused.0).sum();
    println!(
        "| {n} watches: event delivery p99 | {} | {} | {:+.2} ms | ≤ +10 ms | {} |",
        ms_spread(pick(&set.direct, |r| r.p99)),
        ms_spread(pick(&set.proxied, |r| r.p99)),
        p99 - d99,
        met(p99 - d99 <= 10.0 && refused == 0, || if refused > 0 {
            format!("{refused} of the watches refused")
        } else {
            format!("{:.1} ms over", p99 - d99 - 10.0)
        }),
    );
    println!(
        "| {n} watches: writes/s achieved (each waits for the last answer) | {} | {} | | | |",
        rate_spread(pick(&set.direct, |r| r.writes_per_s)),
        rate_spread(pick(&set.proxied, |r| r.writes_per_s)),
    );
    let events = |v: &[WatchRound]| {
        format!(
            "{}/{}",
            v.iter().map(|r| r.received).sum::<usize>(),
            v.iter().map(|r| r.expected).sum::<usize>()
        )
    };
    println!(
        "| {n} watches: events received / expected (of the open watches) | {} | {} | | | |",
        events(&set.direct),
        events(&set.proxied)
    );
    let (d_open, p_open) = (
        median(&set.direct, |r| r.opened_in.as_secs_f64()),
        median(&set.proxied, |r| r.opened_in.as_secs_f64()),
    );
    println!(
        "| {n} watches: all answered in (median) | {d_open:.2} s | {p_open:.2} s | {:.2}× | | |",
        p_open / d_open
    );
}
