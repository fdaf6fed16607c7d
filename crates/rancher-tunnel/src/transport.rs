//! How a session's byte stream is made: the [`Transport`] trait and the default WebSocket
//! transport (HTTPS → WebSocket upgrade on `/v3/connect`, TLS by rustls).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Uri, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::config::SessionConfig;
use crate::error::{Error, Result};
use crate::ws_io::{Keepalive, Role, WsIo};

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

/// `io` (its handshake done, `pre` read past it) framed as a WebSocket with `cfg`'s limits and
/// keepalive.
fn framed<S: SessionIo>(io: S, role: Role, pre: Bytes, cfg: &SessionConfig) -> BoxedIo {
    let keepalive = Keepalive { interval: cfg.keepalive_interval, timeout: cfg.dead_peer_timeout };
    Box::new(WsIo::new(io, role, pre, cfg.max_message_size, cfg.ws_write_chunk(), keepalive))
}

/// Server side of the WebSocket transport: frames the upgraded connection.
pub(crate) fn ws_accept(raw: BoxedIo, cfg: &SessionConfig) -> BoxedIo {
    framed(raw, Role::Server, Bytes::new(), cfg)
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
        match &self.tls {
            Some(tls) => {
                let name = ServerName::try_from(host.to_string())
                    .map_err(|e| Error::TlsConfig(format!("server name {host:?}: {e}")))?;
                let tls_stream = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await?;
                self.upgrade(tls_stream, headers).await
            }
            None => self.upgrade(tcp, headers).await,
        }
    }

    /// The client half of the WebSocket upgrade (RFC 6455 §4.1) over `io`, by hyper's HTTP/1.1
    /// client, which hands back whatever the server sent after its `101` with the connection.
    async fn upgrade<S>(&self, io: S, headers: &HeaderMap) -> Result<BoxedIo>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        let mut request = Request::get(self.uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(header::HOST, self.uri.authority().map_or("", |a| a.as_str()))
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_KEY, &key)
            .body(Empty::<Bytes>::new())
            .map_err(|e| self.handshake_err(e))?;
        for (name, value) in headers {
            request.headers_mut().append(name, value.clone());
        }
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.handshake_err(e))?;
        let mut conn = std::pin::pin!(conn.with_upgrades());
        let mut send = std::pin::pin!(sender.send_request(request));
        let mut conn_done = false;
        // The connection future ends once it has read the 101 and handed the connection over,
        // possibly before the response is taken: wait for the response either way.
        let response = loop {
            tokio::select! {
                biased;
                response = &mut send => break response.map_err(|e| self.handshake_err(e))?,
                end = conn.as_mut(), if !conn_done => {
                    conn_done = true;
                    end.map_err(|e| self.handshake_err(e))?;
                }
            }
        };
        match response.status().as_u16() {
            101 => {}
            401 | 403 => return Err(Error::Unauthorized { status: response.status().as_u16() }),
            429 | 503 => return Err(Error::Busy { retry_after: retry_after(response.headers()) }),
            other => return Err(self.handshake_err(format!("the server answered HTTP {other}, not 101"))),
        }
        let accept = response.headers().get(header::SEC_WEBSOCKET_ACCEPT).map(HeaderValue::as_bytes);
        if accept != Some(derive_accept_key(key.as_bytes()).as_bytes()) {
            return Err(self.handshake_err("the server's Sec-WebSocket-Accept does not match our key"));
        }
        if !conn_done {
            conn.as_mut().await.map_err(|e| self.handshake_err(e))?;
        }
        let upgraded = hyper::upgrade::on(response).await.map_err(|e| self.handshake_err(e))?;
        let parts = upgraded
            .downcast::<TokioIo<S>>()
            .map_err(|_| self.handshake_err("the upgraded connection is not the one handed to hyper"))?;
        Ok(framed(parts.io.into_inner(), Role::Client, parts.read_buf, &self.session))
    }

    fn handshake_err(&self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Handshake { url: self.url.clone(), source: e.into() }
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
        Ok(ws_accept(raw, &self.session))
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

    /// A server that answers the upgrade with `101`, the accept key computed by `accept`, and
    /// `then` in the same write.
    async fn upgrading(accept: fn(&str) -> String, then: &'static [u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/v3/connect", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            while !req.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8];
                tcp.read_exact(&mut byte).await.unwrap();
                req.push(byte[0]);
            }
            let req = String::from_utf8(req).unwrap();
            let key = req.lines().find_map(|l| l.strip_prefix("sec-websocket-key: ")).unwrap();
            let mut resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
                 sec-websocket-accept: {}\r\n\r\n",
                accept(key)
            )
            .into_bytes();
            resp.extend_from_slice(then);
            tcp.write_all(&resp).await.unwrap();
            let _ = tcp.read(&mut [0u8; 64]).await;
        });
        url
    }

    #[tokio::test]
    async fn frames_sent_with_the_101_are_not_lost_and_a_wrong_accept_key_is_refused() {
        use tokio::io::AsyncReadExt;
        // An unmasked binary frame "early" right behind the response headers.
        let url = upgrading(|key| derive_accept_key(key.as_bytes()), b"\x82\x05early").await;
        let t = WsTransport::new_insecure(&url, SessionConfig::default()).unwrap();
        let mut io = t.connect(&HeaderMap::new()).await.unwrap();
        let mut got = [0u8; 5];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"early");

        let url = upgrading(|_| derive_accept_key(b"some other key"), b"").await;
        let t = WsTransport::new_insecure(&url, SessionConfig::default()).unwrap();
        let err = t.connect(&HeaderMap::new()).await.err().unwrap();
        assert!(err.to_string().contains("Sec-WebSocket-Accept does not match"), "{err}");
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
