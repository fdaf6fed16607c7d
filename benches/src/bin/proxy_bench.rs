//! Proxy-path benchmark: `GET /api/v1/namespaces/default` with a bearer token over keep-alive HTTPS,
//! directly against a `rancher-sim` cluster and through the authentication proxy stack
//! (authenticate → cluster access → audit (off) → impersonate → forward) to the same sim, at 1 and
//! 64 concurrent clients, in one run. Prints requests/s, p50, p99 and the ratios.
//!
//! `cargo run --release -p rancher-benches --bin proxy_bench`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use rancher_auth::proxy::{self, AuditLayer, ForwardConfig, StaticUpstreams, Upstream, UserInfo};
use rancher_benches::http_load::{Target, client_tls, load};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

#[derive(Parser)]
struct Args {
    /// Seconds measured per row (after a warm-up of a quarter of that).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent clients of the second pair of rows.
    #[arg(long, default_value_t = 64)]
    clients: usize,
}

const PATH: &str = "/api/v1/namespaces/default";
const USER_TOKEN: &str = "token-bench:0123456789abcdef";

/// The proxy on a loopback TLS listener, forwarding cluster `c1` to the sim as its admin.
async fn start_proxy(sim_url: &str, sim_ca: &str, sim_token: &str) -> Result<(SocketAddr, String)> {
    let user = UserInfo {
        username: "u-bench".into(),
        uid: "u-bench".into(),
        groups: vec!["system:masters".into()],
        ..Default::default()
    };
    let users = proxy::StaticAuthenticator::new().with_token(USER_TOKEN, user);
    let access = proxy::StaticClusterAccess::new().allow("c1", "u-bench");
    let upstreams = StaticUpstreams::new().with(
        "c1",
        Upstream {
            base_url: sim_url.parse()?,
            connector: proxy::tcp_connector(),
            long_running_connector: None,
            tls: Some(client_tls(sim_ca)?),
            bearer_token: Some(sim_token.to_owned()),
        },
    );
    let service =
        proxy::proxy_service(users, access, upstreams, AuditLayer::disabled(), ForwardConfig::default());

    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let mut server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(proxy::serve(listener, Some(Arc::new(server)), service));
    Ok((addr, cert.cert.pem()))
}

struct SimInfo {
    _handle: rancher_sim::SimHandle,
    addr: SocketAddr,
    url: String,
    ca_pem: String,
    admin_token: String,
}

async fn start_sim() -> Result<SimInfo> {
    let sim = rancher_sim::Sim::builder().name("bench").start().await?;
    Ok(SimInfo {
        addr: sim.addr(),
        url: sim.url(),
        ca_pem: sim.ca_pem().to_owned(),
        admin_token: sim.admin_token().to_owned(),
        _handle: sim,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let sim = start_sim().await?;
        let (proxy_addr, proxy_ca) = start_proxy(&sim.url, &sim.ca_pem, &sim.admin_token).await?;
        let direct = Target {
            addr: sim.addr,
            tls: client_tls(&sim.ca_pem)?,
            path: PATH.into(),
            token: sim.admin_token.clone(),
            headers: http::HeaderMap::new(),
        };
        let proxied = Target {
            addr: proxy_addr,
            tls: client_tls(&proxy_ca)?,
            path: format!("/k8s/clusters/c1{PATH}"),
            token: USER_TOKEN.into(),
            headers: http::HeaderMap::new(),
        };
        let measure = Duration::from_secs_f64(args.seconds);
        let warmup = measure / 4;
        println!("GET {PATH}, keep-alive HTTPS, {:.1} s per row\n", args.seconds);
        println!("| clients | path | requests/s | p50 | p99 |");
        println!("|---|---|---|---|---|");
        let mut ratios = Vec::new();
        for clients in [1, args.clients] {
            let d = load(&direct, clients, warmup, measure).await.context("direct")?;
            println!("| {clients} | direct | {:.0} | {} | {} |", d.rps, ms(d.p50), ms(d.p99));
            let p = load(&proxied, clients, warmup, measure).await.context("through the proxy")?;
            println!("| {clients} | proxy | {:.0} | {} | {} |", p.rps, ms(p.p50), ms(p.p99));
            ratios.push((
                clients,
                p.rps / d.rps,
                p.p50.as_secs_f64() - d.p50.as_secs_f64(),
                p.p99.as_secs_f64() - d.p99.as_secs_f64(),
            ));
        }
        println!("\n| clients | proxy/direct requests/s | added p50 | added p99 |");
        println!("|---|---|---|---|");
        for (clients, ratio, p50, p99) in ratios {
            println!("| {clients} | {ratio:.2}x | {:+.3} ms | {:+.3} ms |", p50 * 1000.0, p99 * 1000.0);
        }
        println!("\nanchor: >= 0.80x requests/s at 64 clients, <= +0.3 ms p50 at 1 client");
        Ok(())
    })
}
