//! The HTTP load generator the proxy benchmarks share: keep-alive HTTPS clients sending GETs back to back,
//! with requests/s and latency percentiles over a measured window after a warm-up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Where a client sends its requests.
#[derive(Clone)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// TLS settings trusting the server's CA.
    pub tls: Arc<rustls::ClientConfig>,
    /// The request path.
    pub path: String,
    /// The bearer token.
    pub token: String,
}

impl Target {
    /// `GET` of the target's path as its token's bearer, asking for JSON.
    ///
    /// # Errors
    /// A path or token that cannot be a request line or header.
    pub fn get(&self) -> Result<http::Request<Empty<Bytes>>> {
        Ok(http::Request::get(self.path.as_str())
            .header("host", "127.0.0.1")
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/json")
            .body(Empty::<Bytes>::new())?)
    }
}

/// What one load run measured.
pub struct Stats {
    /// Requests per second over the measured window.
    pub rps: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
}

/// `clients` keep-alive connections, each sending requests back to back for `measure`.
pub async fn load(target: &Target, clients: usize, warmup: Duration, measure: Duration) -> Result<Stats> {
    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let target = target.clone();
        tasks.spawn(async move {
            let mut send = connect(&target).await?;
            tokio::time::sleep_until(start).await;
            let mut samples = Vec::with_capacity(16_384);
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let req = target.get()?;
                send.ready().await?;
                let resp = send.send_request(req).await?;
                let status = resp.status();
                let body = resp.into_body().collect().await?.to_bytes();
                if status != 200 {
                    bail!("status {status}: {}", String::from_utf8_lossy(&body));
                }
                if t0 >= measure_from {
                    samples.push(t0.elapsed());
                }
            }
            Ok::<_, anyhow::Error>(samples)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    all.sort();
    let pick = |q: f64| all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1))).copied();
    Ok(Stats {
        rps: all.len() as f64 / measure.as_secs_f64(),
        p50: pick(0.50).unwrap_or_default(),
        p99: pick(0.99).unwrap_or_default(),
    })
}

/// One keep-alive HTTP/1.1 connection to `target` over TLS (TCP, TLS and HTTP handshakes done), as
/// kubectl and client-go open them; the connection's task ends when the sender and the bodies it
/// answered are dropped.
///
/// # Errors
/// A connection or handshake that fails.
pub async fn connect(target: &Target) -> Result<SendRequest<Empty<Bytes>>> {
    let tcp = TcpStream::connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("127.0.0.1")?;
    let tls = tokio_rustls::TlsConnector::from(target.tls.clone()).connect(name, tcp).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(send)
}

/// A client TLS config trusting `ca_pem`, speaking HTTP/1.1.
pub fn client_tls(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        let cert: CertificateDer<'static> = cert.context("CA PEM")?;
        roots.add(cert)?;
    }
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
