//! How a session's byte stream is made: the [`Transport`] trait and the default WebSocket
//! transport (HTTPS → WebSocket upgrade on `/v3/connect`, TLS by rustls).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderMap, Uri};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::{WebSocketStream, tungstenite};

use crate::config::SessionConfig;
use crate::error::{Error, Result};
use crate::ws_io::{Keepalive, WsIo};

/// A byte stream that carries one session (the multiplexer runs on top of it).
pub trait SessionIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> SessionIo for T {}

/// A boxed [`SessionIo`].
pub type BoxedIo = Box<dyn SessionIo>;

/// Makes session byte streams. Object-safe, so an embedding program can register
/// `Arc<dyn Transport>` of its own (for example a plain-TCP transport inside a private network).
///
/// A custom transport must detect a dead peer itself (the default one sends WebSocket pings and
/// fails the stream when nothing arrives within [`SessionConfig::dead_peer_timeout`]).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Transport: Send + Sync {
    /// Agent side: reach the server, present `headers` (the agent's credentials) and return the
    /// session byte stream.
    ///
    /// # Errors
    /// [`Error::Unauthorized`] when the server refuses the credentials, [`Error::Busy`] when it
    /// asks the agent to come back later, other variants for network, TLS and handshake failures.
    async fn connect(&self, headers: &HeaderMap) -> Result<BoxedIo>;

    /// Server side: turn an accepted raw connection (for WebSocket: the bytes after the HTTP
    /// 101 response) into the session byte stream.
    ///
    /// # Errors
    /// When the transport's own framing cannot be set up.
    async fn accept(&self, raw: BoxedIo) -> Result<BoxedIo>;
}

/// The WebSocket settings derived from a [`SessionConfig`].
pub(crate) fn ws_config(cfg: &SessionConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(cfg.ws_read_buffer_size)
        .write_buffer_size(0)
        .max_message_size(Some(cfg.max_message_size))
        .max_frame_size(Some(cfg.max_message_size))
}

fn keepalive(cfg: &SessionConfig) -> Keepalive {
    Keepalive { interval: cfg.keepalive_interval, timeout: cfg.dead_peer_timeout }
}

/// Server side of the WebSocket transport: wraps the upgraded connection.
pub(crate) async fn ws_accept(raw: BoxedIo, cfg: &SessionConfig) -> BoxedIo {
    let ws = WebSocketStream::from_raw_socket(raw, Role::Server, Some(ws_config(cfg))).await;
    Box::new(WsIo::new(ws, cfg.ws_write_chunk(), keepalive(cfg)))
}

/// The default transport: TCP → TLS (rustls) → HTTP/1.1 `GET /v3/connect` with
/// `Upgrade: websocket` → binary WebSocket messages carrying the multiplexer.
#[derive(Clone)]
pub struct WsTransport {
    url: String,
    uri: Uri,
    tls: Option<Arc<ClientConfig>>,
    session: SessionConfig,
    connect_timeout: Duration,
}

impl std::fmt::Debug for WsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsTransport").field("url", &self.url).field("tls", &self.tls.is_some()).finish()
    }
}

impl WsTransport {
    /// A transport to `url` (`wss://host:port/v3/connect`; `https://` is accepted as a
    /// synonym) that verifies the server with `tls`.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] when the URL is not `wss`/`https` with a host.
    pub fn new(url: &str, tls: Arc<ClientConfig>, session: SessionConfig) -> Result<Self> {
        Self::build(url, Some(tls), session)
    }

    /// A transport without TLS (`ws://` or `http://`), for programs that put TLS elsewhere
    /// (a sidecar, a private network). Say so with a flag where you use it.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] when the URL is not `ws`/`http` with a host.
    pub fn new_insecure(url: &str, session: SessionConfig) -> Result<Self> {
        Self::build(url, None, session)
    }

    /// A server-side only transport (its `connect` fails): what [`TunnelServer`](crate::TunnelServer)
    /// uses to accept upgraded connections.
    pub fn acceptor(session: SessionConfig) -> Self {
        Self {
            url: String::new(),
            uri: Uri::from_static("/"),
            tls: None,
            session,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Changes the limit for TCP connect + TLS + WebSocket handshake (default 10 s).
    pub fn with_connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    fn build(url: &str, tls: Option<Arc<ClientConfig>>, session: SessionConfig) -> Result<Self> {
        session.validate()?;
        let bad = |reason: &str| Error::InvalidUrl { url: url.to_string(), reason: reason.to_string() };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let scheme = uri.scheme_str().unwrap_or_default();
        let secure = matches!(scheme, "wss" | "https");
        if !(secure || matches!(scheme, "ws" | "http")) {
            return Err(bad("scheme must be wss or https (ws/http without TLS)"));
        }
        if secure != tls.is_some() {
            return Err(bad(if secure { "wss/https needs a TLS config" } else { "ws/http cannot use TLS" }));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        Ok(Self { url: url.to_string(), uri, tls, session, connect_timeout: Duration::from_secs(10) })
    }

    async fn connect_inner(&self, headers: &HeaderMap) -> Result<BoxedIo> {
        if self.url.is_empty() {
            return Err(Error::NotImplemented("connect on an accept-only WsTransport"));
        }
        let host = self.uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        let port = self.uri.port_u16().unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let tcp = TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        // The handshake URL must say ws/wss for tungstenite; the path and query stay.
        let ws_scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let ws_url = format!("{ws_scheme}://{}{path}", self.uri.authority().map_or("", |a| a.as_str()));
        let mut request = ws_url.into_client_request().map_err(|e| self.handshake_err(e))?;
        for (name, value) in headers {
            request.headers_mut().append(name, value.clone());
        }
        let cfg = Some(ws_config(&self.session));
        let ka = keepalive(&self.session);
        let chunk = self.session.ws_write_chunk();
        match &self.tls {
            Some(tls) => {
                let name = ServerName::try_from(host.to_string())
                    .map_err(|e| Error::TlsConfig(format!("server name {host:?}: {e}")))?;
                let tls_stream = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await?;
                let (ws, _) = tokio_tungstenite::client_async_with_config(request, tls_stream, cfg)
                    .await
                    .map_err(|e| self.handshake_err(e))?;
                Ok(Box::new(WsIo::new(ws, chunk, ka)))
            }
            None => {
                let (ws, _) = tokio_tungstenite::client_async_with_config(request, tcp, cfg)
                    .await
                    .map_err(|e| self.handshake_err(e))?;
                Ok(Box::new(WsIo::new(ws, chunk, ka)))
            }
        }
    }

    fn handshake_err(&self, e: tungstenite::Error) -> Error {
        match e {
            tungstenite::Error::Http(resp) if matches!(resp.status().as_u16(), 401 | 403) => {
                Error::Unauthorized { status: resp.status().as_u16() }
            }
            tungstenite::Error::Http(resp) if matches!(resp.status().as_u16(), 429 | 503) => {
                Error::Busy { retry_after: retry_after(resp.headers()) }
            }
            e => Error::Handshake { url: self.url.clone(), source: Box::new(e) },
        }
    }
}

/// A `Retry-After` in seconds (its HTTP-date form is not used by servers of agents and reads as
/// absent).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(secs))
}

#[async_trait]
impl Transport for WsTransport {
    async fn connect(&self, headers: &HeaderMap) -> Result<BoxedIo> {
        tokio::time::timeout(self.connect_timeout, self.connect_inner(headers)).await.map_err(|_| {
            Error::Timeout { what: "connecting to the tunnel server", after: self.connect_timeout }
        })?
    }

    async fn accept(&self, raw: BoxedIo) -> Result<BoxedIo> {
        Ok(ws_accept(raw, &self.session).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_trait_is_object_safe_and_mockable() {
        let mut mock = MockTransport::new();
        mock.expect_connect().returning(|_| Err(Error::Unauthorized { status: 401 }));
        mock.expect_accept().returning(Ok);
        let transport: Arc<dyn Transport> = Arc::new(mock);
        let refused = transport.connect(&HeaderMap::new()).await.err().unwrap();
        assert!(matches!(refused, Error::Unauthorized { status: 401 }), "{refused}");
        let (raw, _peer) = tokio::io::duplex(64);
        assert!(transport.accept(Box::new(raw)).await.is_ok());
    }

    /// A server that answers every request with `status_line` and `headers`, once per connection.
    async fn answering(status_line: &'static str, headers: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/v3/connect", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let resp = format!("HTTP/1.1 {status_line}\r\n{headers}content-length: 0\r\n\r\n");
                let _ = tcp.write_all(resp.as_bytes()).await;
            }
        });
        url
    }

    #[tokio::test]
    async fn a_busy_server_says_when_to_come_back() {
        let t = WsTransport::new_insecure(
            &answering("503 Service Unavailable", "retry-after: 7\r\n").await,
            SessionConfig::default(),
        )
        .unwrap();
        let err = t.connect(&HeaderMap::new()).await.err().unwrap();
        assert!(matches!(err, Error::Busy { retry_after: Some(d) } if d == Duration::from_secs(7)), "{err}");

        let t = WsTransport::new_insecure(
            &answering("429 Too Many Requests", "").await,
            SessionConfig::default(),
        )
        .unwrap();
        let err = t.connect(&HeaderMap::new()).await.err().unwrap();
        assert!(
            matches!(err, Error::Busy { retry_after: None }),
            "no Retry-After: the agent's own backoff; {err}"
        );

        let t = WsTransport::new_insecure(
            &answering("503 Service Unavailable", "retry-after: Wed, 21 Oct 2026 07:28:00 GMT\r\n").await,
            SessionConfig::default(),
        )
        .unwrap();
        let err = t.connect(&HeaderMap::new()).await.err().unwrap();
        assert!(matches!(err, Error::Busy { retry_after: None }), "an HTTP-date is not a delay; {err}");

        let t = WsTransport::new_insecure(
            &answering("500 Internal Server Error", "").await,
            SessionConfig::default(),
        )
        .unwrap();
        let err = t.connect(&HeaderMap::new()).await.err().unwrap();
        assert!(matches!(err, Error::Handshake { .. }), "{err}");
    }
}
