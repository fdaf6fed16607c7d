//! The HTTP load generator the proxy benchmarks share: keep-alive HTTPS clients sending GETs back to back,
//! with requests/s and latency percentiles over a measured window after a warm-up ([`load`]), or over a
//! fixed number of requests on connections opened beforehand ([`Clients`]), so that what a server spends
//! per request can be read around the run without the TLS handshakes in it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::HeaderMap;
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
    /// Headers sent with every request besides `host`, `authorization` and `accept`.
    pub headers: HeaderMap,
}

impl Target {
    /// `GET` of the target's path as its token's bearer, asking for JSON, with its headers.
    ///
    /// # Errors
    /// A path or token that cannot be a request line or header.
    pub fn get(&self) -> Result<http::Request<Empty<Bytes>>> {
        let mut req = http::Request::get(self.path.as_str())
            .header("host", "127.0.0.1")
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/json")
            .body(Empty::<Bytes>::new())?;
        for (name, value) in &self.headers {
            req.headers_mut().append(name, value.clone());
        }
        Ok(req)
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
    /// Requests measured.
    pub requests: usize,
}

impl Stats {
    fn of(mut samples: Vec<Duration>, window: Duration) -> Stats {
        samples.sort();
        let pick = |q: f64| {
            samples.get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1))).copied()
        };
        Stats {
            rps: samples.len() as f64 / window.as_secs_f64(),
            p50: pick(0.50).unwrap_or_default(),
            p99: pick(0.99).unwrap_or_default(),
            requests: samples.len(),
        }
    }
}

/// `clients` keep-alive connections, each sending requests back to back for `measure`.
pub async fn load(target: &Target, clients: usize, warmup: Duration, measure: Duration) -> Result<Stats> {
    let mut conns = Clients::connect(target, clients).await?;
    conns.run_for(warmup).await?;
    conns.run_for(measure).await
}

/// Open keep-alive connections to one [`Target`]; closed on drop.
pub struct Clients {
    target: Arc<Target>,
    senders: Vec<SendRequest<Empty<Bytes>>>,
}

/// How long a client keeps sending.
#[derive(Clone)]
enum Until {
    /// Until this instant.
    Time(Instant),
    /// While the shared budget of requests lasts.
    Budget(Arc<AtomicUsize>),
}

impl Until {
    fn another(&self) -> bool {
        match self {
            Until::Time(end) => Instant::now() < *end,
            Until::Budget(left) => {
                left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
            }
        }
    }
}

impl Clients {
    /// Opens `n` connections (TCP, TLS, HTTP/1.1 handshake) to `target`.
    ///
    /// # Errors
    /// A connection or handshake that fails.
    pub async fn connect(target: &Target, n: usize) -> Result<Clients> {
        let mut senders = Vec::with_capacity(n);
        for _ in 0..n {
            senders.push(connect(target).await?);
        }
        Ok(Clients { target: Arc::new(target.clone()), senders })
    }

    /// Every connection sends requests back to back for `d`; the window is `d`.
    ///
    /// # Errors
    /// A request that fails or is answered with another status than 200.
    pub async fn run_for(&mut self, d: Duration) -> Result<Stats> {
        let samples = self.run(Until::Time(Instant::now() + d)).await?;
        Ok(Stats::of(samples, d))
    }

    /// The connections send `requests` requests between them, back to back; the window is from the
    /// first request to the last answer.
    ///
    /// # Errors
    /// As [`Clients::run_for`].
    pub async fn run_count(&mut self, requests: usize) -> Result<Stats> {
        let start = Instant::now();
        let samples = self.run(Until::Budget(Arc::new(AtomicUsize::new(requests)))).await?;
        Ok(Stats::of(samples, start.elapsed()))
    }

    async fn run(&mut self, until: Until) -> Result<Vec<Duration>> {
        let mut tasks = tokio::task::JoinSet::new();
        for mut send in self.senders.drain(..) {
            let (target, until) = (self.target.clone(), until.clone());
            tasks.spawn(async move {
                let mut samples = Vec::with_capacity(16_384);
                while until.another() {
                    let t0 = Instant::now();
                    let req = target.get()?;
                    send.ready().await?;
                    let resp = send.send_request(req).await?;
                    let status = resp.status();
                    let body = resp.into_body().collect().await?.to_bytes();
                    if status != 200 {
                        bail!("status {status}: {}", String::from_utf8_lossy(&body));
                    }
                    samples.push(t0.elapsed());
                }
                Ok::<_, anyhow::Error>((send, samples))
            });
        }
        let mut all = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (send, samples) = done.context("a load client panicked")??;
            self.senders.push(send);
            all.extend(samples);
        }
        Ok(all)
    }
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
