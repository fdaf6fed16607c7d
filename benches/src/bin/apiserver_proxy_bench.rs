//! The proxy in front of a real API server: `GET /api/v1/namespaces/default` against kube-apiserver
//! 1.20 (`scripts/build-kube.sh`) directly as its admin, directly with the agent's credential and the
//! impersonation headers the proxy sends (the limit for any impersonating proxy), and through a
//! `rancher-server` process, its tunnel and a `rancher-agent` process
//! (`rancher_benches::apiserver_import`), at 1 and 64 clients.
//!
//! Every round runs each path at each client count, the paths' order rotating from round to round;
//! a row opens its connections, warms up, then sends a fixed number of requests, and the CPU time of
//! the server, the agent, the API server and etcd (`/proc/<pid>/stat`) around those requests gives
//! what each spent per request — a figure the machine's other load does not change. Printed: every
//! row, the medians over the rounds with their spread (min–max), and the per-round ratios.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p rancher-benches --bin apiserver_proxy_bench   # about five minutes
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use rancher_benches::apiserver_import::{CLUSTER, Imported, Pids};
use rancher_benches::http_load::{Clients, Stats, Target};
use rancher_benches::proc_cpu::CpuSnapshot;
use rancher_benches::rke::bin_dir;

#[derive(Parser)]
struct Args {
    /// Rounds; each runs every path at every client count.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Concurrent clients of each row kind.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    clients: Vec<usize>,
    /// Requests measured per row, one figure per entry of --clients.
    #[arg(long, value_delimiter = ',', default_value = "5000,20000")]
    requests: Vec<usize>,
    /// The paths measured (of direct, impersonating, proxied); the ratios need all three.
    #[arg(long, value_delimiter = ',', default_value = "direct,impersonating,proxied")]
    paths: Vec<String>,
    /// Seconds of warm-up on a row's connections before its measured requests.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Where `rancher-server`, `rancher-agent` and `rancher-sim` are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

const PATH: &str = "/api/v1/namespaces/default";
/// How the paths are printed, and named in `--paths`.
const PATHS: [(&str, &str); 3] =
    [("direct", "direct"), ("direct + impersonation", "impersonating"), ("proxied", "proxied")];

/// One measured row.
struct Row {
    round: usize,
    clients: usize,
    path: usize,
    stats: Stats,
    /// µs of CPU per request of the server, the agent, the API server and etcd (`Pids::all`).
    cpu: Vec<f64>,
}

async fn measure(
    target: &Target,
    clients: usize,
    requests: usize,
    warmup: Duration,
    pids: &Pids,
) -> Result<(Stats, Vec<f64>)> {
    let mut conns = Clients::connect(target, clients).await?;
    conns.run_for(warmup).await?;
    let before = CpuSnapshot::take(&pids.all())?;
    let stats = conns.run_count(requests).await?;
    let after = CpuSnapshot::take(&pids.all())?;
    let cpu = after.micros_per_request_since(&before, stats.requests);
    Ok((stats, cpu))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The median and the range of `values`.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
    (median, values[0], values[n - 1])
}

/// `median (min–max)` with `decimals`; `-` for no values.
fn cell(values: Vec<f64>, decimals: usize) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let (m, lo, hi) = spread(values);
    format!("{m:.decimals$} ({lo:.decimals$}–{hi:.decimals$})")
}

/// A ratio's [`cell`], with `×` after the median.
fn times(values: Vec<f64>) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let (m, lo, hi) = spread(values);
    format!("{m:.2}× ({lo:.2}–{hi:.2})")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.clients.len() != args.requests.len() || args.rounds == 0 {
        bail!("--requests needs one count per entry of --clients, and --rounds at least 1");
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let bins = bin_dir(args.bin_dir.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(&args, &bins))
}

async fn run(args: &Args, bins: &std::path::Path) -> Result<()> {
    eprintln!("starting etcd, the API server, rancher-server and rancher-agent …");
    let env = Imported::start(bins).await?;
    let identity = env.proxied_identity().await.context("reading whom the proxy impersonates")?;
    let targets = [env.direct(PATH)?, env.impersonating(PATH, &identity)?, env.proxied(PATH)?];
    let pids = env.pids()?;
    eprintln!(
        "pids: rancher-server {}, rancher-agent {}, kube-apiserver {}, etcd {}",
        pids.server, pids.agent, pids.api_server, pids.etcd
    );
    let chosen: Vec<usize> =
        (0..PATHS.len()).filter(|&i| args.paths.iter().any(|p| p == PATHS[i].1)).collect();
    if chosen.is_empty() {
        bail!("--paths names none of direct, impersonating, proxied");
    }
    let warmup = Duration::from_secs_f64(args.warmup);

    println!(
        "GET {PATH} on kube-apiserver 1.20.2, keep-alive HTTPS, {} rounds; cluster `{CLUSTER}` imported",
        args.rounds
    );
    println!(
        "impersonation headers (as the API server's audit saw the proxy's): user {:?}, {} groups, {} extras; \
         credential: the agent's service-account token",
        identity.username,
        identity.groups.len(),
        identity.extra.len()
    );
    println!(
        "per row: {warmup:?} warm-up, then {} requests at {} clients; CPU from /proc/<pid>/stat (10 ms ticks)",
        args.requests.iter().map(ToString::to_string).collect::<Vec<_>>().join(" / "),
        args.clients.iter().map(ToString::to_string).collect::<Vec<_>>().join(" / "),
    );
    println!("load average before: {}\n", loadavg());
    println!(
        "| round | clients | path | requests/s | p50 ms | p99 ms | server µs/req | agent µs/req | API server µs/req | etcd µs/req |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for round in 1..=args.rounds {
        for (&clients, &requests) in args.clients.iter().zip(&args.requests) {
            for k in 0..chosen.len() {
                let path = chosen[(k + round - 1) % chosen.len()];
                let (stats, cpu) = measure(&targets[path], clients, requests, warmup, &pids)
                    .await
                    .with_context(|| format!("round {round}, {clients} clients, {}", PATHS[path].0))?;
                println!(
                    "| {round} | {clients} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |",
                    PATHS[path].0,
                    stats.rps,
                    ms(stats.p50),
                    ms(stats.p99),
                    cpu[0],
                    cpu[1],
                    cpu[2],
                    cpu[3]
                );
                rows.push(Row { round, clients, path, stats, cpu });
            }
        }
    }
    println!("\nload average after: {}\n", loadavg());

    let pick =
        |clients: usize, path: usize| rows.iter().filter(move |r| r.clients == clients && r.path == path);
    println!("Medians over {} rounds (min–max):\n", args.rounds);
    println!(
        "| clients | path | requests/s | p50 ms | p99 ms | server µs/req | agent µs/req | server + agent µs/req | API server µs/req | etcd µs/req |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &clients in &args.clients {
        for &path in &chosen {
            let name = PATHS[path].0;
            let of = |f: &dyn Fn(&Row) -> f64| pick(clients, path).map(f).collect::<Vec<_>>();
            println!(
                "| {clients} | {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(of(&|r| r.stats.rps), 0),
                cell(of(&|r| ms(r.stats.p50)), 2),
                cell(of(&|r| ms(r.stats.p99)), 2),
                cell(of(&|r| r.cpu[0]), 1),
                cell(of(&|r| r.cpu[1]), 1),
                cell(of(&|r| r.cpu[0] + r.cpu[1]), 1),
                cell(of(&|r| r.cpu[2]), 1),
                cell(of(&|r| r.cpu[3]), 1),
            );
        }
    }
    println!("\n(server and agent on the direct rows: their idle background per request of that row)\n");

    println!("Ratios within each round, median (min–max):\n");
    println!(
        "| clients | proxied / direct requests/s | proxied / direct + impersonation requests/s | added p50 over direct + impersonation, ms | server + agent CPU per proxied request, µs |"
    );
    println!("|---|---|---|---|---|");
    for &clients in &args.clients {
        // f(direct, impersonating, proxied) of each round, where it has what f needs.
        type Of<'a> = Option<&'a Row>;
        let per_round = |f: &dyn Fn(Of, Of, Of) -> Option<f64>| {
            (1..=args.rounds)
                .filter_map(|round| {
                    let row = |path| pick(clients, path).find(|r| r.round == round);
                    f(row(0), row(1), row(2))
                })
                .collect::<Vec<_>>()
        };
        println!(
            "| {clients} | {} | {} | {} | {} |",
            times(per_round(&|d, _, p| Some(p?.stats.rps / d?.stats.rps))),
            times(per_round(&|_, i, p| Some(p?.stats.rps / i?.stats.rps))),
            cell(per_round(&|_, i, p| Some(ms(p?.stats.p50) - ms(i?.stats.p50))), 3),
            cell(per_round(&|_, _, p| Some(p?.cpu[0] + p?.cpu[1])), 1),
        );
    }
    println!(
        "\ntargets (issue 14): proxied ≥ 0.80× direct + impersonation at 64 clients; added p50 ≤ 0.3 ms at 1 \
         client; server + agent ≤ 60 µs of CPU per proxied GET"
    );
    Ok(())
}
