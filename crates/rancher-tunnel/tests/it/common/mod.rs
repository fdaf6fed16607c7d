//! Shared setup for the integration tests: a CA and server certificate from rcgen, a TLS
//! `/v3/connect` server on loopback, agents, and small destination servers.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rancher_tunnel::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const TOKEN_A: &str = "tok-a-secret";
pub const TOKEN_B: &str = "tok-b-secret";

pub fn init() {
    rancher_test_support::install_crypto();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub struct Pki {
    pub ca_pem: String,
    pub server_tls: Arc<rustls::ServerConfig>,
}

pub fn pki() -> Pki {
    init();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let chain = vec![leaf.der().clone(), CertificateDer::from(ca_cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server_tls =
        rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).unwrap();
    Pki { ca_pem: ca_cert.pem(), server_tls: Arc::new(server_tls) }
}

/// Timings short enough for tests, long enough for a loaded 2-core machine.
pub fn test_session_cfg() -> SessionConfig {
    let mut cfg = SessionConfig::default();
    cfg.keepalive_interval = Duration::from_millis(250);
    cfg.dead_peer_timeout = Duration::from_secs(3);
    cfg.dial_reply_timeout = Duration::from_secs(20);
    cfg
}

pub fn authorizer() -> Arc<dyn Authorizer> {
    Arc::new(|h: &http::HeaderMap| match h.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        Some(TOKEN_A) => Ok("c-a".to_string()),
        Some(TOKEN_B) => Ok("c-b".to_string()),
        Some(_) => Err(Rejection("unknown tunnel token".into())),
        None => Err(Rejection("no tunnel token".into())),
    })
}

pub struct TestServer {
    pub server: TunnelServer,
    pub addr: SocketAddr,
    pub url: String,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
        self.server.shutdown(Duration::from_secs(10)).await;
    }
}

pub async fn start_server(pki: &Pki, cfg: SessionConfig) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_server_on(pki, cfg, listener, ServeOptions::default()).await
}

pub async fn start_server_on(
    pki: &Pki,
    cfg: SessionConfig,
    listener: TcpListener,
    opts: ServeOptions,
) -> TestServer {
    let addr = listener.local_addr().unwrap();
    let server = TunnelServer::new(cfg, Metrics::unregistered()).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve_connect(
        listener,
        Some(pki.server_tls.clone()),
        server.clone(),
        authorizer(),
        opts,
        stop.clone(),
    ));
    let task = tokio::spawn(async move {
        task.await.unwrap().unwrap();
    });
    TestServer { server, addr, url: format!("wss://localhost:{}/v3/connect", addr.port()), stop, task }
}

pub fn transport(pki: &Pki, url: &str, cfg: SessionConfig) -> WsTransport {
    let tls = client_tls_pinned(pki.ca_pem.as_bytes(), &ca_checksum(pki.ca_pem.as_bytes())).unwrap();
    WsTransport::new(url, tls, cfg).unwrap()
}

pub fn agent(pki: &Pki, url: &str, token: &str, allow: &[String]) -> Arc<Agent> {
    let mut cfg = AgentConfig::default();
    cfg.headers.insert(TOKEN_HEADER, token.parse().unwrap());
    cfg.session = test_session_cfg();
    cfg.backoff_initial = Duration::from_millis(100);
    cfg.backoff_max = Duration::from_millis(800);
    cfg.drain_timeout = Duration::from_secs(5);
    let t = transport(pki, url, cfg.session.clone());
    Arc::new(Agent::new(Arc::new(t), Arc::new(AllowList::new(allow)), cfg, Metrics::unregistered()).unwrap())
}

pub struct RunningAgent {
    pub agent: Arc<Agent>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<()>>,
}

pub fn spawn_agent(agent: Arc<Agent>) -> RunningAgent {
    let stop = CancellationToken::new();
    let (a, s) = (agent.clone(), stop.clone());
    let task = tokio::spawn(async move { a.run(s).await });
    RunningAgent { agent, stop, task }
}

/// Echoes every byte; on EOF from the client, finishes writing and closes.
pub async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Writes zeros as fast as the client reads, forever.
pub async fn firehose_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let buf = vec![0u8; 32 * 1024];
                while s.write_all(&buf).await.is_ok() {}
            });
        }
    });
    addr
}

/// An address with nothing listening.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

pub async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `msg`, half-closes, reads everything back.
pub async fn echo_roundtrip(stream: &mut TunnelStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out)).await.unwrap().unwrap();
    out
}

pub type RawWs = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A hand-driven WebSocket client on `/v3/connect` (no multiplexer): for hostile-peer tests.
pub async fn raw_ws(pki: &Pki, addr: SocketAddr, token: &str) -> RawWs {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let tls = client_tls_pinned(pki.ca_pem.as_bytes(), &ca_checksum(pki.ca_pem.as_bytes())).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.unwrap();
    let mut req = format!("wss://localhost:{}/v3/connect", addr.port()).into_client_request().unwrap();
    req.headers_mut().insert(TOKEN_HEADER, token.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

/// Waits for the `Disconnected` event of `key` and returns its reason.
pub async fn next_disconnect(
    events: &mut tokio::sync::broadcast::Receiver<SessionEvent>,
    key: &str,
    limit: Duration,
) -> String {
    tokio::time::timeout(limit, async {
        loop {
            if let SessionEvent::Disconnected { client_key, reason, .. } = events.recv().await.unwrap()
                && client_key == key
            {
                return reason;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no disconnect of {key} within {limit:?}"))
}
