//! Where a cluster's API server is and how to reach it: the caller's [`UpstreamResolver`] gives an
//! [`Upstream`] per cluster — a dialer ([`Connector`], e.g. the tunnel), the base URL, the CA and the
//! bearer token the proxy uses downstream. This module turns that into a TLS connector for hyper.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use http::{HeaderValue, Uri};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt as _};

use super::error::BoxError;

/// A byte stream to an API server: a TCP socket, a tunnel stream, anything duplex.
pub trait UpstreamStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> UpstreamStream for T {}

/// A boxed [`UpstreamStream`].
pub type BoxStream = Box<dyn UpstreamStream>;

/// Dials the API server named by a URI (scheme, host and port), returning a plain byte stream; TLS is
/// done on top by the proxy. The server plugs its tunnel dialer in here.
pub type Connector = BoxCloneSyncService<Uri, BoxStream, BoxError>;

/// A [`Connector`] that opens a TCP connection to the URI's host and port (default 443 / 80).
pub fn tcp_connector() -> Connector {
    BoxCloneSyncService::new(tower::service_fn(|uri: Uri| async move {
        let host = uri.host().ok_or("upstream URI has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 });
        let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        stream.set_nodelay(true)?;
        Ok::<BoxStream, BoxError>(Box::new(stream))
    }))
}

/// How to reach one cluster's API server.
#[derive(Clone)]
pub struct Upstream {
    /// The API server's base URL, `https://host:port` (a path prefix is kept).
    pub base_url: Uri,
    /// How to open a byte stream to it.
    pub connector: Connector,
    /// How to open one for a long-running request (watch, exec, attach, port-forward, `logs -f`),
    /// where that differs (the tunnel keeps some streams for ordinary requests); `None`: `connector`.
    pub long_running_connector: Option<Connector>,
    /// TLS client configuration trusting the API server's CA; `None` only for an `http://` base URL.
    pub tls: Option<Arc<ClientConfig>>,
    /// The token the proxy authenticates with downstream (an identity allowed to impersonate).
    pub bearer_token: Option<String>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base_url", &self.base_url)
            .field("tls", &self.tls.is_some())
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why no upstream could be found for a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The cluster does not exist (404).
    #[error("not found")]
    UnknownCluster,
    /// The cluster's agent has no tunnel session right now (503).
    #[error("no agent session; the cluster is not connected")]
    NoSession,
    /// The upstream description is unusable, e.g. `https` without TLS settings (503).
    #[error("invalid upstream: {0}")]
    Invalid(String),
    /// Anything else (503).
    #[error(transparent)]
    Other(BoxError),
}

/// Finds the [`Upstream`] of a cluster. Called once per cluster and then cached by the proxy until the
/// client is idle, a connection fails, or it is invalidated.
#[async_trait]
pub trait UpstreamResolver: Send + Sync {
    /// The upstream of `cluster_id`.
    async fn resolve(&self, cluster_id: &str) -> Result<Upstream, ResolveError>;
}

#[async_trait]
impl<T: UpstreamResolver + ?Sized> UpstreamResolver for Arc<T> {
    async fn resolve(&self, cluster_id: &str) -> Result<Upstream, ResolveError> {
        (**self).resolve(cluster_id).await
    }
}

/// A fixed table of cluster id → upstream, for tests, examples and static setups.
#[derive(Clone, Debug, Default)]
pub struct StaticUpstreams {
    upstreams: BTreeMap<String, Upstream>,
}

impl StaticUpstreams {
    /// No clusters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reaches `cluster` through `upstream`.
    pub fn with(mut self, cluster: impl Into<String>, upstream: Upstream) -> Self {
        self.upstreams.insert(cluster.into(), upstream);
        self
    }
}

#[async_trait]
impl UpstreamResolver for StaticUpstreams {
    async fn resolve(&self, cluster_id: &str) -> Result<Upstream, ResolveError> {
        self.upstreams.get(cluster_id).cloned().ok_or(ResolveError::UnknownCluster)
    }
}

// === impl Upstream ===

/// An upstream checked and prepared for hyper.
pub(crate) struct Prepared {
    pub(crate) connector: TlsConnector,
    /// For long-running requests (see [`Upstream::long_running_connector`]).
    pub(crate) long_running_connector: TlsConnector,
    /// `scheme://authority`.
    pub(crate) origin: Uri,
    /// Path prefix without a trailing `/` (often empty).
    pub(crate) path_prefix: String,
    pub(crate) authorization: Option<HeaderValue>,
}

impl Upstream {
    /// Checks the description and builds the connector. The TLS config's ALPN is set to HTTP/1.1,
    /// because upgrades (exec, attach, port-forward) need HTTP/1.1 downstream.
    pub(crate) fn prepare(self, connect_timeout: Duration) -> Result<Prepared, ResolveError> {
        let invalid = |m: &str| ResolveError::Invalid(m.to_owned());
        let scheme = self.base_url.scheme_str().ok_or_else(|| invalid("base URL has no scheme"))?;
        let authority = self.base_url.authority().ok_or_else(|| invalid("base URL has no host"))?.clone();
        let tls = match (scheme, self.tls) {
            ("https", Some(config)) => {
                let host = authority.host().trim_start_matches('[').trim_end_matches(']');
                let name =
                    ServerName::try_from(host.to_owned()).map_err(|_| invalid("host is not a TLS name"))?;
                let mut config = (*config).clone();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
            }
            ("https", None) => return Err(invalid("https base URL without a TLS configuration")),
            ("http", None) => None,
            ("http", Some(_)) => return Err(invalid("TLS configuration given for an http base URL")),
            _ => return Err(invalid("base URL scheme must be https or http")),
        };
        let authorization = match &self.bearer_token {
            Some(t) => {
                let mut v = HeaderValue::try_from(format!("Bearer {t}"))
                    .map_err(|_| invalid("bearer token is not a valid header value"))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let origin = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build()
            .map_err(|_| invalid("base URL"))?;
        let long_running = TlsConnector(Arc::new(TlsConnectorParts {
            dial: self.long_running_connector.unwrap_or_else(|| self.connector.clone()),
            tls: tls.clone(),
            connect_timeout,
        }));
        Ok(Prepared {
            connector: TlsConnector(Arc::new(TlsConnectorParts {
                dial: self.connector,
                tls,
                connect_timeout,
            })),
            long_running_connector: long_running,
            origin,
            path_prefix: self.base_url.path().trim_end_matches('/').to_owned(),
            authorization,
        })
    }
}

// === impl TlsConnector ===

/// Dials with the caller's [`Connector`], then does the TLS handshake; a connector for hyper's client.
/// Cheap to clone: hyper's client clones its connector for every request, pooled or not.
#[derive(Clone)]
pub(crate) struct TlsConnector(Arc<TlsConnectorParts>);

struct TlsConnectorParts {
    dial: Connector,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
}

/// A connect that failed within this long is tried once more.
const RETRY_WITHIN: Duration = Duration::from_secs(1);

impl Service<Uri> for TlsConnector {
    type Response = UpstreamIo;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<UpstreamIo, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dial = self.0.dial.clone();
        let tls = self.0.tls.clone();
        let timeout = self.0.connect_timeout;
        Box::pin(async move {
            let attempt =
                |dial: Connector,
                 uri: Uri,
                 tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>| async move {
                    let stream = dial.oneshot(uri).await?;
                    let stream: BoxStream = match tls {
                        Some((connector, name)) => Box::new(connector.connect(name, stream).await?),
                        None => stream,
                    };
                    Ok::<_, BoxError>(UpstreamIo(TokioIo::new(stream)))
                };
            // Nothing is sent before the connection is up: one that failed at once (refused, or
            // closed during the handshake by an API server going down) is tried once more — not
            // one that timed out, which would double the wait.
            let connect = async {
                let started = tokio::time::Instant::now();
                match attempt(dial.clone(), uri.clone(), tls.clone()).await {
                    Err(e) if started.elapsed() < RETRY_WITHIN => {
                        tracing::debug!(error = %e, "connecting to the API server failed; once more");
                        attempt(dial, uri, tls).await
                    }
                    done => done,
                }
            };
            tokio::time::timeout(timeout, connect)
                .await
                .map_err(|_| format!("connecting timed out after {timeout:?}"))?
        })
    }
}

/// A connected (and, for https, TLS-wrapped) stream as hyper wants it.
pub(crate) struct UpstreamIo(TokioIo<BoxStream>);

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(url: &str, tls: bool) -> Upstream {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let config = ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        Upstream {
            base_url: url.parse().unwrap(),
            connector: tcp_connector(),
            long_running_connector: None,
            tls: tls.then(|| Arc::new(config)),
            bearer_token: Some("sim-admin-token".into()),
        }
    }

    #[test]
    fn scheme_and_tls_must_agree() {
        let t = Duration::from_secs(1);
        assert!(upstream("https://127.0.0.1:6443", true).prepare(t).is_ok());
        assert!(upstream("http://127.0.0.1:8080", false).prepare(t).is_ok());
        assert!(matches!(
            upstream("https://127.0.0.1:6443", false).prepare(t),
            Err(ResolveError::Invalid(_))
        ));
        assert!(matches!(upstream("http://127.0.0.1:6443", true).prepare(t), Err(ResolveError::Invalid(_))));
        assert!(matches!(upstream("/relative", false).prepare(t), Err(ResolveError::Invalid(_))));
    }

    #[test]
    fn path_prefix_is_kept_and_token_is_sensitive() {
        let prepared =
            upstream("https://api.example:443/base/", true).prepare(Duration::from_secs(1)).unwrap();
        assert_eq!(prepared.path_prefix, "/base");
        assert_eq!(prepared.origin, "https://api.example:443/");
        assert!(prepared.authorization.unwrap().is_sensitive());
    }

    #[test]
    fn debug_redacts_the_token() {
        assert!(!format!("{:?}", upstream("https://h", true)).contains("sim-admin-token"));
    }
}
