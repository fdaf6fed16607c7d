//! The accept loop: TLS (or plain TCP with --insecure-http), HTTP/1.1 and HTTP/2 with upgrades on one
//! port, bounded for clients that have not authenticated — connection caps checked at accept, a TLS
//! handshake timeout, header and idle timeouts ([`watchdog`]), HTTP/2 stream and header limits — and
//! a graceful shutdown that drains in-flight requests, answering too the connections it had accepted
//! that had not sent their request yet ([`serve_until_drained`]).

mod limits;
mod plain_http;
mod watchdog;

pub use limits::ListenerLimits;
pub(crate) use limits::{Resolved, client_of};

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use futures::future::BoxFuture;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use self::limits::Caps;
use self::watchdog::{Activity, TrackedBody, Watched};
use super::metrics::Metrics;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long in-flight requests get to finish after shutdown is requested.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection accepted before the listener closed, and still without a request then,
/// has to send its first request head while the server drains (a balancer's connection on its
/// way, in or just past its TLS handshake).
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(2);
/// The largest HTTP/1.1 read buffer, and so the largest request head (nginx allows 32 KiB): what a
/// slow client can make the server hold per connection.
const MAX_HTTP1_BUFFER: usize = 64 * 1024;
/// The largest HTTP/2 header list.
const MAX_HTTP2_HEADER_LIST: u32 = 64 * 1024;
/// Streams at once on one HTTP/2 connection (kube-apiserver's default is 250).
const MAX_HTTP2_STREAMS: u32 = 250;
/// HTTP/2 keep-alive: a ping after this much silence, and the connection closes without an answer
/// within [`HTTP2_PING_TIMEOUT`].
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);

fn http_builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    // No HTTP/1.1 timer: hyper's header timeout would also cut idle keep-alive connections at the same
    // short time; the watchdog times both phases instead.
    builder.http1().max_buf_size(MAX_HTTP1_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_HTTP2_STREAMS)
        .max_header_list_size(MAX_HTTP2_HEADER_LIST)
        .keep_alive_interval(HTTP2_PING_INTERVAL)
        .keep_alive_timeout(HTTP2_PING_TIMEOUT);
    builder
}

/// Serves `app` on `listener` until `shutdown` completes, then drains open connections.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Resolved,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let draining = CancellationToken::new();
    let builder = http_builder();
    let caps = Caps::new(&limits);
    let mut shutdown = std::pin::pin!(shutdown);
    // Every connection's task: drained below, and aborted if still open after the drain timeout (or
    // when this future is dropped).
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Over a cap the socket is closed before any TLS or HTTP work is spent on it.
        let admission = match caps.admit(peer.ip()) {
            Ok(admission) => admission,
            Err(why) => {
                metrics.connection_refused(why);
                tracing::debug!(%peer, ?why, "connection refused");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok().map(LocalAddr);
        let conn = Conn {
            peer,
            local,
            app: app.clone(),
            builder: builder.clone(),
            limits,
            metrics: metrics.clone(),
        };
        let draining = draining.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            conn.metrics.connections_open_add(1);
            match tls {
                Some(acceptor) => {
                    let handshake = async {
                        if plain_http::starts_plain_http(&tcp).await {
                            plain_http::refuse(tcp).await;
                            return None;
                        }
                        Some(acceptor.accept(tcp).await)
                    };
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Some(Ok(stream))) => conn.serve(stream, &draining).await,
                        Ok(Some(Err(e))) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Ok(None) => tracing::debug!(%peer, "plain HTTP on the TLS port: answered 400"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => conn.serve(tcp, &draining).await,
            }
            conn.metrics.connections_open_add(-1);
            drop(admission);
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining open connections");
    draining.cancel();
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
    connections.shutdown().await;
}

/// The server's own address of a connection (in each request's extensions): a client whose address is
/// this one runs on the server's host.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocalAddr(pub(crate) SocketAddr);

/// One accepted connection.
struct Conn {
    peer: SocketAddr,
    local: Option<LocalAddr>,
    app: Router,
    builder: Builder<TokioExecutor>,
    limits: Resolved,
    metrics: Arc<Metrics>,
}

impl Conn {
    async fn serve<S>(&self, stream: S, draining: &CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        let service = ConnService {
            app: self.app.clone(),
            peer: self.peer,
            local: self.local,
            activity: activity.clone(),
        };
        let io = TokioIo::new(Watched::new(stream, activity.clone()));
        let conn = self.builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
        let conn = serve_until_drained(conn, &activity, draining);
        let (header, idle) = (self.limits.header_timeout, self.limits.idle_timeout);
        let peer = self.peer;
        match watchdog::watch(conn, &activity, header, idle).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(%peer, "connection ended: {e}"),
            Err(phase) => {
                self.metrics.connection_timed_out(phase);
                tracing::debug!(%peer, ?phase, "connection closed: too slow or idle too long");
            }
        }
    }
}

/// Drives `conn` until it ends; once the server is `draining`, shuts it down gracefully: requests
/// in progress finish, and no new one starts (an idle keep-alive connection closes at once, an
/// HTTP/2 client is sent `GOAWAY`). A connection that has not had its first request yet is asked
/// only once that request has arrived, or after [`FIRST_REQUEST_GRACE`]: it was accepted before
/// the listener closed, and asked earlier it would close without an answer — a balancer takes that
/// for a broken server, and passes a write on to no other.
async fn serve_until_drained<C: GracefulConnection>(
    conn: C,
    activity: &Activity,
    draining: &CancellationToken,
) -> C::Output {
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        out = &mut conn => return out,
        () = draining.cancelled() => {}
    }
    tokio::select! {
        out = &mut conn => return out,
        () = activity.first_request() => {}
        () = tokio::time::sleep(FIRST_REQUEST_GRACE) => {}
    }
    conn.as_mut().graceful_shutdown();
    conn.await
}

/// The application as one connection sees it: requests carry the client's address (login throttling
/// counts by it) and are counted in progress until their response has been sent.
#[derive(Clone)]
struct ConnService {
    app: Router,
    peer: SocketAddr,
    local: Option<LocalAddr>,
    activity: Arc<Activity>,
}

impl tower::Service<http::Request<Incoming>> for ConnService {
    type Response = http::Response<axum::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.request_started(req.version() == http::Version::HTTP_2);
        req.extensions_mut().insert(axum::extract::ConnectInfo(self.peer));
        if let Some(local) = self.local {
            req.extensions_mut().insert(local);
        }
        let app = self.app.clone();
        Box::pin(async move {
            let resp = tower::ServiceExt::oneshot(app, req).await?;
            Ok(resp.map(|body| axum::body::Body::new(TrackedBody::new(body, in_flight))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A connection the server accepted before it began to drain, and whose request arrives only
    /// after, is answered: closed unanswered, a balancer in front takes the server for a broken one
    /// (and passes a write on to no other). One that never sends a request does not hold the drain
    /// up for longer than [`FIRST_REQUEST_GRACE`].
    #[tokio::test]
    async fn a_draining_server_answers_the_connections_it_had_accepted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(|| async { "hello" });
        let metrics = Arc::new(Metrics::new());
        let limits = Resolved {
            max_connections: 16,
            max_per_client: 0,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
        };
        let stop = CancellationToken::new();
        let server =
            tokio::spawn(serve(listener, None, app, limits, metrics.clone(), stop.clone().cancelled_owned()));
        let mut early = tokio::net::TcpStream::connect(addr).await.unwrap();
        let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        while metrics.connections_open() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
        // Draining once the listener is closed.
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;

        let began = tokio::time::Instant::now();
        early.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        early.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "answered: {answer:?}");
        assert!(answer.ends_with("hello"), "{answer}");
        tokio::time::timeout(FIRST_REQUEST_GRACE + Duration::from_secs(5), server)
            .await
            .expect("the drain ends, the silent connection closed")
            .unwrap();
        assert!(began.elapsed() >= FIRST_REQUEST_GRACE - Duration::from_millis(100), "{:?}", began.elapsed());
        drop(silent);
    }
}
