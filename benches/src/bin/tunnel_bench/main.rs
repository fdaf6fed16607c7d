//! Tunnel benchmark: `cargo run --release -p rancher-benches --bin tunnel_bench`.
//!
//! Compares the rancher-tunnel path (server → WebSocket/TLS session → agent → destination)
//! with a direct TCP path and a direct TLS path in the same run, on loopback:
//! bulk throughput over fresh streams, 1 KiB ping-pong latency, the effect of one stalled
//! stream, and server memory per idle session (agents in a child process, the server in its
//! own child process so each measurement starts from a fresh heap).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use rancher_tunnel::{
    Agent, AgentConfig, Authorizer, Metrics, PARAMS_HEADER, Rejection, ServeOptions, SessionConfig,
    TOKEN_HEADER, TunnelServer, WsTransport, ca_checksum, client_tls_pinned, serve_connect,
};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

mod memory;
mod stall;

const CHUNK: usize = 32 * 1024;
const TOKEN: &str = "bench-token";
const KEY: &str = "bench-agent";

#[derive(Parser, Debug)]
#[command(about = "rancher-tunnel benchmark against direct TCP and TLS paths")]
struct Args {
    /// MiB written per bulk run.
    #[arg(long, default_value_t = 512)]
    total_mib: usize,
    /// Bulk runs per cell (the best is reported, the median in brackets).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Repeats of the stalled-stream measurement per path (interleaved; median and range reported).
    #[arg(long, default_value_t = 7)]
    stall_repeats: usize,
    /// Ping-pong round trips per path.
    #[arg(long, default_value_t = 10_000)]
    pings: usize,
    /// Idle-session counts for the memory measurement (comma-separated; empty skips it).
    #[arg(long, default_value = "1000,10000")]
    sessions: String,
    /// Run only these parts (comma-separated: bulk, latency, stall, memory); default all.
    #[arg(long, default_value = "bulk,latency,stall,memory")]
    only: String,
    /// Run the agent on its own single-threaded runtime on its own thread (as a separate agent
    /// process would) instead of the benchmark's shared runtime.
    #[arg(long)]
    agent_own_runtime: bool,
    /// yamux frame size (bytes).
    #[arg(long)]
    frame_size: Option<usize>,
    /// Internal: run as the memory-measuring server for N sessions.
    #[arg(long, hide = true)]
    memory_server: Option<usize>,
    /// Internal: run N agents against --url.
    #[arg(long, hide = true)]
    agents: Option<usize>,
    #[arg(long, hide = true)]
    url: Option<String>,
    #[arg(long, hide = true)]
    ca_file: Option<PathBuf>,
}

type Io = Pin<Box<dyn AsyncReadWrite>>;
trait AsyncReadWrite: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> AsyncReadWrite for T {}

struct Pki {
    ca_pem: String,
    server_tls: Arc<rustls::ServerConfig>,
}

fn pki() -> Result<Pki> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["localhost".to_string()])?.signed_by(&leaf_key, &issuer)?;
    let chain = vec![leaf.der().clone(), CertificateDer::from(ca_cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server_tls = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key)?;
    Ok(Pki { ca_pem: ca_cert.pem(), server_tls: Arc::new(server_tls) })
}

fn session_cfg(args: &Args) -> SessionConfig {
    let mut cfg = SessionConfig::default();
    if let Some(f) = args.frame_size {
        cfg.frame_size = f;
        cfg.max_message_size = cfg.max_message_size.max(4 * f);
    }
    cfg
}

fn authorizer() -> Arc<dyn Authorizer> {
    Arc::new(|h: &http::HeaderMap| {
        if h.get(TOKEN_HEADER).is_none_or(|v| v != TOKEN) {
            return Err(Rejection("bad token".into()));
        }
        let key = h.get(PARAMS_HEADER).and_then(|v| v.to_str().ok()).unwrap_or(KEY);
        Ok(key.to_string())
    })
}

// ---- destinations ---------------------------------------------------------------------------

/// Reads to EOF, then answers one byte: the writer knows every byte was drained.
/// A tunnel server with `cfg` behind a TLS `/v3/connect` listener on a free port: the server, the URL
/// agents dial, and the token that stops the listener.
async fn start_tunnel_server(
    pki: &Pki,
    cfg: SessionConfig,
) -> Result<(TunnelServer, String, CancellationToken)> {
    let server = TunnelServer::new(cfg, Metrics::unregistered())?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("wss://localhost:{}/v3/connect", listener.local_addr()?.port());
    let stop = CancellationToken::new();
    tokio::spawn(serve_connect(
        listener,
        Some(pki.server_tls.clone()),
        server.clone(),
        authorizer(),
        ServeOptions::default(),
        stop.clone(),
    ));
    Ok((server, url, stop))
}

async fn discard<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
    let _ = s.write_all(b"k").await;
    let _ = s.shutdown().await;
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(s: S) {
    let (mut r, mut w) = tokio::io::split(s);
    let _ = tokio::io::copy(&mut r, &mut w).await;
    let _ = w.shutdown().await;
}

async fn firehose<S: AsyncWrite + Unpin>(mut s: S) {
    let buf = vec![0u8; CHUNK];
    while s.write_all(&buf).await.is_ok() {}
}

#[derive(Clone, Copy)]
enum Kind {
    Discard,
    Echo,
    Firehose,
}

async fn serve_dest(kind: Kind, tls: Option<Arc<rustls::ServerConfig>>) -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let io: Io = match acceptor {
                    Some(a) => match a.accept(s).await {
                        Ok(t) => Box::pin(t),
                        Err(_) => return,
                    },
                    None => Box::pin(s),
                };
                match kind {
                    Kind::Discard => discard(io).await,
                    Kind::Echo => echo(io).await,
                    Kind::Firehose => firehose(io).await,
                }
            });
        }
    });
    Ok(addr)
}

// ---- paths ----------------------------------------------------------------------------------

#[derive(Clone)]
enum Path {
    Tcp,
    Tls(tokio_rustls::TlsConnector),
    Tunnel(TunnelServer),
}

impl Path {
    fn name(&self) -> &'static str {
        match self {
            Path::Tcp => "direct TCP",
            Path::Tls(_) => "direct TLS",
            Path::Tunnel(_) => "tunnel (WS+TLS)",
        }
    }

    async fn open(&self, dest: SocketAddr) -> Result<Io> {
        Ok(match self {
            Path::Tcp => {
                let s = TcpStream::connect(dest).await?;
                s.set_nodelay(true)?;
                Box::pin(s)
            }
            Path::Tls(c) => {
                let s = TcpStream::connect(dest).await?;
                s.set_nodelay(true)?;
                Box::pin(c.connect(ServerName::try_from("localhost")?, s).await?)
            }
            Path::Tunnel(server) => Box::pin(server.dial(KEY, "tcp", &dest.to_string()).await?),
        })
    }
}

/// Destinations for one path (TLS destinations for the TLS path).
#[derive(Clone, Copy)]
struct Dests {
    discard: SocketAddr,
    echo: SocketAddr,
    firehose: SocketAddr,
}

async fn bulk(path: &Path, dest: SocketAddr, streams: usize, total: usize) -> Result<f64> {
    let per = total / streams / CHUNK * CHUNK;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let path = path.clone();
        tasks.spawn(async move {
            let mut s = path.open(dest).await?;
            let buf = vec![0x5au8; CHUNK];
            for _ in 0..per / CHUNK {
                s.write_all(&buf).await?;
            }
            s.shutdown().await?;
            let mut done = [0u8; 1];
            s.read_exact(&mut done).await?;
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok((per * streams) as f64 / (1024.0 * 1024.0) / start.elapsed().as_secs_f64())
}

fn best_and_median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| b.total_cmp(a));
    (v[0], v[v.len() / 2])
}

async fn ping_pong(path: &Path, dest: SocketAddr, n: usize) -> Result<(Duration, Duration)> {
    let mut s = path.open(dest).await?;
    let msg = vec![7u8; 1024];
    let mut back = vec![0u8; 1024];
    let mut times = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        s.write_all(&msg).await?;
        s.flush().await?;
        s.read_exact(&mut back).await?;
        if i >= n / 10 {
            times.push(t.elapsed());
        }
    }
    times.sort();
    Ok((times[times.len() / 2], times[times.len() * 99 / 100]))
}

// ---- main -----------------------------------------------------------------------------------

fn main() -> Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        if let Some(n) = args.memory_server {
            return memory::memory_server(&args, n).await;
        }
        if let Some(n) = args.agents {
            return memory::agents(&args, n).await;
        }
        run(&args).await
    })
}

async fn run(args: &Args) -> Result<()> {
    let pki = pki()?;
    let cfg = session_cfg(args);
    println!(
        "rancher-tunnel benchmark: loopback; server, clients and destinations on 2 tokio workers; agent {}",
        if args.agent_own_runtime {
            "on its own single-threaded runtime (like a separate process)"
        } else {
            "on the same runtime"
        }
    );
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string();
    println!("load average at start: {} (2 cores; other work on the machine skews absolute figures)", load());
    println!("session: frame {} B, max message {} B\n", cfg.frame_size, cfg.max_message_size);

    let plain = Dests {
        discard: serve_dest(Kind::Discard, None).await?,
        echo: serve_dest(Kind::Echo, None).await?,
        firehose: serve_dest(Kind::Firehose, None).await?,
    };
    let tls_dests = Dests {
        discard: serve_dest(Kind::Discard, Some(pki.server_tls.clone())).await?,
        echo: serve_dest(Kind::Echo, Some(pki.server_tls.clone())).await?,
        firehose: serve_dest(Kind::Firehose, Some(pki.server_tls.clone())).await?,
    };

    // The tunnel: server with a TLS /v3/connect listener, one agent allowed to reach the plain
    // destinations.
    let (server, url, stop) = start_tunnel_server(&pki, cfg.clone()).await?;
    let tls = client_tls_pinned(pki.ca_pem.as_bytes(), &ca_checksum(pki.ca_pem.as_bytes()))?;
    let mut acfg = AgentConfig::default();
    acfg.session = cfg.clone();
    acfg.headers.insert(TOKEN_HEADER, TOKEN.parse()?);
    let allow =
        rancher_tunnel::AllowList::new([plain.discard, plain.echo, plain.firehose].map(|a| a.to_string()));
    let agent = Agent::new(
        Arc::new(WsTransport::new(&url, tls.clone(), cfg.clone())?),
        Arc::new(allow),
        acfg,
        Metrics::unregistered(),
    )?;
    let agent_stop = CancellationToken::new();
    let s2 = agent_stop.clone();
    if !args.agent_own_runtime {
        tokio::spawn(async move { agent.run(s2).await });
    } else {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(agent.run(s2))?;
            anyhow::Ok(())
        });
    }
    let t0 = Instant::now();
    while !server.has_session(KEY) {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("agent did not connect");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let paths =
        [Path::Tcp, Path::Tls(tokio_rustls::TlsConnector::from(tls.clone())), Path::Tunnel(server.clone())];
    let dests = |p: &Path| if matches!(p, Path::Tls(_)) { tls_dests } else { plain };
    let total = args.total_mib * 1024 * 1024;

    let want = |part: &str| args.only.split(',').any(|p| p.trim() == part);
    // Bulk throughput.
    if want("bulk") {
        println!(
            "Bulk throughput, {} MiB in 32 KiB writes over fresh streams, MiB/s best (median) of {}",
            args.total_mib, args.runs
        );
        println!("{:<18} {:>18} {:>18} {:>18}", "path", "1 stream", "16 streams", "128 streams");
        // Runs are interleaved across paths so that each path sees the same background load.
        let mut cells = vec![vec![Vec::new(); 3]; paths.len()];
        for _ in 0..args.runs {
            for (j, streams) in [1, 16, 128].into_iter().enumerate() {
                for (i, p) in paths.iter().enumerate() {
                    cells[i][j].push(bulk(p, dests(p).discard, streams, total).await?);
                }
            }
        }
        let mut bulk_best = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            let row: Vec<(f64, f64)> = cells[i].iter().map(|v| best_and_median(v.clone())).collect();
            println!(
                "{:<18} {:>18} {:>18} {:>18}",
                p.name(),
                format!("{:.0} ({:.0})", row[0].0, row[0].1),
                format!("{:.0} ({:.0})", row[1].0, row[1].1),
                format!("{:.0} ({:.0})", row[2].0, row[2].1)
            );
            bulk_best.push(row);
        }
        let anchors = [243.0, 330.0, 460.0]; // remotedialer, anchors-measured.md (mid-range)
        let fmt_ratio = |i: usize, j: usize| format!("{:.2}", bulk_best[2][j].0 / bulk_best[i][j].0);
        println!(
            "{:<18} {:>18} {:>18} {:>18}",
            "tunnel / TCP",
            fmt_ratio(0, 0),
            fmt_ratio(0, 1),
            fmt_ratio(0, 2)
        );
        println!(
            "{:<18} {:>18} {:>18} {:>18}",
            "tunnel / TLS",
            fmt_ratio(1, 0),
            fmt_ratio(1, 1),
            fmt_ratio(1, 2)
        );
        println!(
            "{:<18} {:>18} {:>18} {:>18}\n",
            "tunnel / remotedialer",
            format!("{:.1}x", bulk_best[2][0].0 / anchors[0]),
            format!("{:.1}x", bulk_best[2][1].0 / anchors[1]),
            format!("{:.1}x", bulk_best[2][2].0 / anchors[2])
        );
    }

    // Latency.
    if want("latency") {
        println!("1 KiB request/response over one established stream, {} round trips", args.pings);
        println!("{:<18} {:>10} {:>10} {:>14}", "path", "p50 µs", "p99 µs", "added p50 µs");
        let mut p50s = Vec::new();
        for p in &paths {
            let (p50, p99) = ping_pong(p, dests(p).echo, args.pings).await?;
            p50s.push(p50);
            let added = p50.as_secs_f64() * 1e6 - p50s[0].as_secs_f64() * 1e6;
            println!(
                "{:<18} {:>10.1} {:>10.1} {:>14.1}",
                p.name(),
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6,
                added
            );
        }
        println!("(remotedialer anchor: +61 µs added p50 over direct TCP; target ≤ +30 µs)\n");
    }

    // Stalled stream.
    if want("stall") {
        stall::table(&[&paths[0], &paths[2]], &dests, total / 2, args.stall_repeats).await?;
    }

    println!("load average after the transfer tests: {}\n", load());
    agent_stop.cancel();
    stop.cancel();
    server.shutdown(Duration::from_secs(10)).await;

    // Memory per idle session.
    let counts: Vec<usize> = args.sessions.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    if want("memory") && !counts.is_empty() {
        println!("Server memory per idle session (server in a child process, agents in a grandchild, TLS)");
        println!(
            "{:<10} {:>14} {:>14} {:>16}",
            "sessions", "RSS before MB", "RSS after MB", "per session KB"
        );
        for n in counts {
            let (before, after) = memory::measure_memory(args, n).await?;
            println!(
                "{:<10} {:>14.1} {:>14.1} {:>16.1}",
                n,
                before as f64 / 1024.0,
                after as f64 / 1024.0,
                (after.saturating_sub(before)) as f64 * 1.024 / n as f64
            );
        }
        println!("(remotedialer anchor: ≈ 43 KB per session; target ≤ 25 KB)");
    }
    Ok(())
}
