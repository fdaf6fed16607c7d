//! Full-path proxy benchmark: `GET /api/v1/namespaces/default` over keep-alive HTTPS, directly against
//! a `rancher-sim` (its admin token) and through the real server's `/k8s/clusters/<id>/…` proxy (an
//! admin API token), which authenticates against the store, checks access, and forwards through the
//! reverse tunnel and the cluster agent to the same sim. Everything runs in this one process: the sim,
//! the server (`rancher::server::Server::builder()`, MemoryStore, temp data dir) and the agent
//! (`rancher::agent::AgentBuilder`), so the numbers include their CPU use on the same cores as the clients.
//! Rows at 1 and 64 clients, direct and proxied interleaved, twice; prints requests/s, p50, p99, the
//! ratios and the load average.
//!
//! `cargo run --release -p rancher-benches --bin proxy_e2e_bench`

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use rancher::agent::AgentBuilder;
use rancher::server::Server;
use rancher_benches::http_load::{Target, client_tls, load};
use rancher_benches::json_of;
use rancher_core::store::MemoryStore;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// Seconds measured per row (after a warm-up of a quarter of that).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent clients of the second pair of rows.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How many times the direct/proxy pairs are repeated (interleaved).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

const PATH: &str = "/api/v1/namespaces/default";
const CLUSTER: &str = "bench";
const PASSWORD: &str = "bench-Passw0rd-123";

/// Polls `f` every 100 ms for up to a minute.
async fn eventually<F, Fut>(what: &str, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        if Instant::now() > deadline {
            bail!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The running pieces; dropping the tokens' owners stops nothing, `stop` does.
struct Env {
    _dir: rancher_benches::ScratchDir,
    _sim: rancher_sim::SimHandle,
    stop: CancellationToken,
    direct: Target,
    proxied: Target,
}

/// Starts a sim, a server and an agent, imports the sim and logs in as admin.
async fn start() -> Result<Env> {
    let dir = rancher_benches::ScratchDir::new()?;
    let server = Server::builder()
        .data_dir(dir.path())
        .store(Arc::new(MemoryStore::new()))
        .https_listen("127.0.0.1:0".parse()?)
        .bootstrap_password(PASSWORD)
        .build()
        .await?;
    let url = server.url();
    let server_addr = server.local_addr();
    let server_ca = server.ca_pem().to_owned();
    let reg = server.registration();
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(server.run(async move { s.cancelled().await }));

    let sim = rancher_sim::Sim::builder().name(CLUSTER).start().await?;
    let kc = dir.path().join("sim.kubeconfig");
    std::fs::write(&kc, sim.kubeconfig_yaml())?;

    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(server_ca.as_bytes())?)
        .build()?;
    let login = http
        .post(format!("{url}/v3-public/localProviders/local?action=login"))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await?;
    let admin_token = json_of(login, "login").await?["token"].as_str().context("login: no token")?.to_owned();
    let created = http
        .post(format!("{url}/v3/clusters"))
        .bearer_auth(&admin_token)
        .json(&json!({"metadata": {"name": CLUSTER}, "spec": {"importedConfig": {}}}))
        .send()
        .await?;
    json_of(created, "creating the cluster").await?;
    let crt = http
        .get(format!("{url}/v3/clusterregistrationtokens/{CLUSTER}:default-token"))
        .bearer_auth(&admin_token)
        .send()
        .await?;
    let crt = json_of(crt, "registration token").await?;
    let token = crt["status"]["token"].as_str().context("no registration token")?.to_owned();

    let agent = AgentBuilder::new(url.clone(), reg.ca_checksum(), token).kubeconfig(&kc);
    let s = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = agent.run(s).await {
            eprintln!("agent stopped: {e}");
        }
    });
    let proxied_url = format!("{url}/k8s/clusters/{CLUSTER}{PATH}");
    eventually("the proxy reaches the sim through the agent", || {
        let req = http.get(&proxied_url).bearer_auth(&admin_token).send();
        async move { req.await.is_ok_and(|r| r.status().is_success()) }
    })
    .await?;

    let direct = Target {
        addr: sim.addr(),
        tls: client_tls(sim.ca_pem())?,
        path: PATH.into(),
        token: sim.admin_token().to_owned(),
        headers: http::HeaderMap::new(),
    };
    let proxied = Target {
        addr: server_addr,
        tls: client_tls(&server_ca)?,
        path: format!("/k8s/clusters/{CLUSTER}{PATH}"),
        token: admin_token,
        headers: http::HeaderMap::new(),
    };
    Ok(Env { _dir: dir, _sim: sim, stop, direct, proxied })
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let env = start().await?;
        let measure = Duration::from_secs_f64(args.seconds);
        let warmup = measure / 4;
        println!(
            "GET {PATH}, keep-alive HTTPS, {:.1} s per row; sim, server and agent in this process",
            args.seconds
        );
        println!("load average before: {}\n", loadavg());
        println!("| round | clients | path | requests/s | p50 | p99 |");
        println!("|---|---|---|---|---|---|");
        let mut ratios = Vec::new();
        for round in 1..=args.rounds.max(1) {
            for clients in [1, args.clients] {
                let d = load(&env.direct, clients, warmup, measure).await.context("direct")?;
                println!("| {round} | {clients} | direct | {:.0} | {} | {} |", d.rps, ms(d.p50), ms(d.p99));
                let p = load(&env.proxied, clients, warmup, measure).await.context("through the proxy")?;
                println!("| {round} | {clients} | proxy | {:.0} | {} | {} |", p.rps, ms(p.p50), ms(p.p99));
                ratios.push((
                    round,
                    clients,
                    p.rps / d.rps,
                    p.p50.as_secs_f64() - d.p50.as_secs_f64(),
                    p.p99.as_secs_f64() - d.p99.as_secs_f64(),
                ));
            }
        }
        println!("\n| round | clients | proxy/direct requests/s | added p50 | added p99 |");
        println!("|---|---|---|---|---|");
        for (round, clients, ratio, p50, p99) in ratios {
            println!(
                "| {round} | {clients} | {ratio:.2}x | {:+.3} ms | {:+.3} ms |",
                p50 * 1000.0,
                p99 * 1000.0
            );
        }
        println!("\nload average after: {}", loadavg());
        println!("anchor: >= 0.80x requests/s at 64 clients, <= +0.3 ms p50 at 1 client");
        env.stop.cancel();
        Ok(())
    })
}
