//! Keep-alive HTTP/1.1 connections to one API server, each driven by the request using it.
//!
//! hyper's pooled client runs every connection as a task of its own: a request crosses to that task
//! and its response crosses back, two more wake-ups per request (often from one worker thread to the
//! other) on top of the tunnel's. In [`ConnPool`] the request's own task polls the connection — while
//! it waits for the response head, then, inside [`PooledBody`], while the response body is read —
//! and the connection goes back to the pool when the body has ended.
//!
//! A large response (or one of unknown length) has its connection driven by a task of its own
//! instead, as hyper's client would ([`OWN_TASK_FROM`]).
//!
//! For requests that end by themselves; long-running ones (watches, `logs -f`) and upgrades keep
//! hyper's client ([`super::forward`]). An idle connection is polled by no one: it is found closed
//! when it is taken (and another taken), and dropped after the idle timeout by a sweep.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::error::{BoxError, ProxyBody};
use super::upstream::{TlsConnector, UpstreamIo};

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No connection could be made: nothing was sent.
    #[error("connecting: {0}")]
    Connect(#[source] BoxError),
    /// The connection failed or closed before the response's head.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// One connection: the handle that sends on it and the state machine that reads and writes it.
struct Conn {
    send: http1::SendRequest<ProxyBody>,
    /// `None` once it returned: the connection is closed (or failed).
    io: Option<http1::Connection<UpstreamIo, ProxyBody>>,
}

impl Conn {
    /// Reads and writes what the connection can; whether it is still open.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(io) = &mut self.io
            && Pin::new(io).poll(cx).is_ready()
        {
            // Dropped at once: a request still queued on it (the API server closed the connection
            // before it was written) comes back unsent instead of waiting for good.
            self.io = None;
        }
        self.io.is_some()
    }

    /// Whether it can take a request now (it is open and idle).
    fn ready(&mut self, cx: &mut Context<'_>) -> bool {
        self.drive(cx) && matches!(self.send.poll_ready(cx), Poll::Ready(Ok(())))
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// The keep-alive connections to one API server.
pub(crate) struct ConnPool {
    connector: TlsConnector,
    /// Oldest first; taken from the back (the most recently used is the likeliest to be open).
    idle: Mutex<VecDeque<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    /// The sweep runs (from the first connection kept on, for as long as the pool lives).
    sweeping: AtomicBool,
}

impl ConnPool {
    /// A pool dialing with `connector` that keeps at most `max_idle` idle connections, each for at
    /// most `idle_timeout` (a task sweeps them, for as long as the pool lives, from the first one
    /// kept). With either zero, no connection is kept.
    pub(crate) fn new(connector: TlsConnector, max_idle: usize, idle_timeout: Duration) -> Arc<Self> {
        let max_idle = if idle_timeout.is_zero() { 0 } else { max_idle };
        Arc::new(ConnPool {
            connector,
            idle: Mutex::default(),
            max_idle,
            idle_timeout,
            sweeping: AtomicBool::new(false),
        })
    }

    /// Sends `req` (its URI in origin form, with a `Host` header) on an idle connection or a new
    /// one dialed to `origin`, and returns the response once its head has arrived.
    ///
    /// # Errors
    /// [`SendError::Connect`] when no connection could be made, else the connection's failure.
    pub(crate) async fn send(
        self: &Arc<Self>,
        origin: &Uri,
        req: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        let mut req = req;
        loop {
            let (mut conn, reused) = match self.take().await {
                Some(conn) => (conn, true),
                None => (self.connect(origin).await?, false),
            };
            let mut response = std::pin::pin!(conn.send.try_send_request(req));
            // The connection first: it writes the request, reads the answer and hands it over.
            let sent = poll_fn(|cx| {
                conn.drive(cx);
                response.as_mut().poll(cx)
            })
            .await;
            match sent {
                Ok(head) => {
                    let pool = Arc::downgrade(self);
                    if large(&head) {
                        tokio::spawn(drive_until_idle(conn, pool));
                        return Ok(head.map(|body| PooledBody {
                            body,
                            conn: None,
                            pool: Weak::new(),
                            ended: false,
                        }));
                    }
                    return Ok(head.map(|body| PooledBody { body, conn: Some(conn), pool, ended: false }));
                }
                Err(mut failed) => match failed.take_message() {
                    // A kept connection the API server had closed, found out before anything was
                    // written: the request goes on another.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(failed.into_error().into()),
                },
            }
        }
    }

    async fn connect(&self, origin: &Uri) -> Result<Conn, SendError> {
        let io = self.connector.clone().oneshot(origin.clone()).await.map_err(SendError::Connect)?;
        let (send, io) = http1::Builder::new().handshake(io).await?;
        Ok(Conn { send, io: Some(io) })
    }

    /// The most recently used idle connection that is still open and idle.
    async fn take(&self) -> Option<Conn> {
        loop {
            let Idle { mut conn, since } = self.lock().pop_back()?;
            if since.elapsed() >= self.idle_timeout {
                // The others are older still; closed outside the lock.
                let expired = std::mem::take(&mut *self.lock());
                drop((conn, expired));
                return None;
            }
            if poll_fn(|cx| Poll::Ready(conn.ready(cx))).await {
                return Some(conn);
            }
        }
    }

    /// Keeps `conn` for a later request, unless the pool is full. The first connection kept starts
    /// the sweep.
    fn put(self: &Arc<Self>, conn: Conn) {
        {
            let mut idle = self.lock();
            if idle.len() >= self.max_idle {
                return;
            }
            idle.push_back(Idle { conn, since: Instant::now() });
        }
        if !self.sweeping.swap(true, Ordering::Relaxed)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(sweep(Arc::downgrade(self), self.idle_timeout));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many idle connections the pool holds.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.lock().len()
    }
}

/// A response body this large or larger, or of a length not known ahead (chunked), is read by its
/// connection in a task of its own, as hyper's client does: the API server's bytes are read and
/// decrypted on one thread while the caller's are encrypted and written on the other (a 10,000-pod
/// list, 20 MB). Smaller ones are read in the request's task.
const OWN_TASK_FROM: u64 = 64 * 1024;

fn large(resp: &Response<Incoming>) -> bool {
    http_body::Body::size_hint(resp.body()).exact().is_none_or(|len| len >= OWN_TASK_FROM)
}

/// Drives `conn` until the response on it is done; then back to `pool` if it is idle, else closed.
async fn drive_until_idle(mut conn: Conn, pool: Weak<ConnPool>) {
    let idle = poll_fn(|cx| {
        if !conn.drive(cx) {
            return Poll::Ready(false);
        }
        conn.send.poll_ready(cx).map(|ready| ready.is_ok())
    })
    .await;
    if idle && let Some(pool) = pool.upgrade() {
        pool.put(conn);
    }
}

/// Drops the connections idle for longer than `idle_timeout`, every half of it, until the pool is gone.
async fn sweep(pool: Weak<ConnPool>, idle_timeout: Duration) {
    let mut every = tokio::time::interval((idle_timeout / 2).max(Duration::from_millis(1)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let expired = {
            let mut idle = pool.lock();
            let fresh = idle.iter().position(|i| i.since.elapsed() < idle_timeout).unwrap_or(idle.len());
            idle.drain(..fresh).collect::<Vec<_>>()
        };
        // Closed outside the lock.
        drop(expired);
    }
}

/// A response body that drives its connection while it is read, and returns the connection to its
/// pool once it has ended. Dropped before its end, it closes the connection. (A large body holds no
/// connection: a task of its own drives it, [`drive_until_idle`].)
pub(crate) struct PooledBody {
    body: Incoming,
    /// Until it is returned.
    conn: Option<Conn>,
    pool: Weak<ConnPool>,
    /// The body's end was read.
    ended: bool,
}

impl PooledBody {
    /// Returns the connection to the pool if it is idle again (it has taken in the body's end).
    fn give_back(&mut self, cx: &mut Context<'_>) {
        if let Some(mut conn) = self.conn.take()
            && conn.ready(cx)
            && let Some(pool) = self.pool.upgrade()
        {
            pool.put(conn);
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body known to be empty is dropped unread (a `204`, a `HEAD`): its connection is idle
        // all the same. Polled with a waker that does nothing: the pool's next user polls it again.
        if self.conn.is_some() && (self.ended || http_body::Body::is_end_stream(&self.body)) {
            self.give_back(&mut Context::from_waker(std::task::Waker::noop()));
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(conn) = &mut this.conn {
            conn.drive(cx);
        }
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        if frame.is_none() || this.body.is_end_stream() {
            this.ended = true;
            this.give_back(cx);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt as _;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;
    use tower::util::BoxCloneSyncService;

    use super::*;
    use crate::proxy::upstream::{Upstream, tcp_connector};

    /// A pool for `addr` (plain HTTP) and how many connections it dialed.
    fn pool(addr: std::net::SocketAddr, idle_timeout: Duration) -> (Arc<ConnPool>, Arc<AtomicUsize>, Uri) {
        let dials = Arc::new(AtomicUsize::new(0));
        let counted = dials.clone();
        let tcp = tcp_connector();
        let connector = BoxCloneSyncService::new(tower::service_fn(move |uri: Uri| {
            counted.fetch_add(1, Ordering::SeqCst);
            tcp.clone().oneshot(uri)
        }));
        let upstream = Upstream {
            base_url: format!("http://{addr}").parse().unwrap(),
            connector,
            long_running_connector: None,
            tls: None,
            bearer_token: None,
        };
        let prepared = upstream.prepare(Duration::from_secs(10)).unwrap();
        let origin = prepared.origin.clone();
        (ConnPool::new(prepared.connector, 4, idle_timeout), dials, origin)
    }

    /// An HTTP/1.1 server answering each request with its `Host` and path, and `/big` with 1 MiB.
    async fn server() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let body = if req.uri().path() == "/big" {
                        vec![b'x'; 1 << 20]
                    } else if req.uri().path() == "/empty" {
                        Vec::new()
                    } else {
                        let host =
                            req.headers().get(http::header::HOST).map(|h| h.to_str().unwrap().to_owned());
                        format!("{} {}", host.unwrap_or_default(), req.uri()).into_bytes()
                    };
                    Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(Bytes::from(
                        body,
                    ))))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service),
                );
            }
        });
        addr
    }

    fn get(path: &str, addr: std::net::SocketAddr) -> Request<ProxyBody> {
        let mut req = Request::get(path).body(ProxyBody::empty()).unwrap();
        req.headers_mut().insert(http::header::HOST, addr.to_string().parse().unwrap());
        req
    }

    async fn text(resp: Response<PooledBody>) -> String {
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_used_again_once_its_response_was_read() {
        let addr = server().await;
        let (pool, dials, origin) = pool(addr, Duration::from_secs(90));
        for i in 0..3 {
            let resp = pool.send(&origin, get(&format!("/api/v1/namespaces/n{i}"), addr)).await.unwrap();
            assert_eq!(text(resp).await, format!("{addr} /api/v1/namespaces/n{i}"));
            assert_eq!(pool.idle(), 1, "kept after request {i}");
        }
        assert_eq!(dials.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_large_response_read_to_its_end_leaves_its_connection_for_the_next() {
        let addr = server().await;
        let (pool, dials, origin) = pool(addr, Duration::from_secs(90));
        let big = pool.send(&origin, get("/big", addr)).await.unwrap();
        assert_eq!(http_body::Body::size_hint(big.body()).exact(), Some(1 << 20));
        let read = big.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(read.len(), 1 << 20);
        // The connection's own task returns it once it has taken in the end.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.idle() == 0 {
            assert!(Instant::now() < deadline, "not returned");
            tokio::task::yield_now().await;
        }
        let resp = pool.send(&origin, get("/after", addr)).await.unwrap();
        assert_eq!(text(resp).await, format!("{addr} /after"));
        assert_eq!(dials.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_whose_empty_response_was_never_read_is_used_again() {
        let addr = server().await;
        let (pool, dials, origin) = pool(addr, Duration::from_secs(90));
        let head = pool.send(&origin, get("/empty", addr)).await.unwrap();
        assert!(http_body::Body::is_end_stream(head.body()));
        drop(head);
        assert_eq!(pool.idle(), 1);
        let resp = pool.send(&origin, get("/after", addr)).await.unwrap();
        assert_eq!(text(resp).await, format!("{addr} /after"));
        assert_eq!(dials.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_response_dropped_before_its_end_closes_its_connection() {
        let addr = server().await;
        let (pool, dials, origin) = pool(addr, Duration::from_secs(90));
        let mut body = pool.send(&origin, get("/big", addr)).await.unwrap().into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(!first.is_empty() && first.len() < 1 << 20, "{} bytes", first.len());
        drop(body);
        assert_eq!(pool.idle(), 0);
        let resp = pool.send(&origin, get("/after", addr)).await.unwrap();
        assert_eq!(text(resp).await, format!("{addr} /after"));
        assert_eq!(dials.load(Ordering::SeqCst), 2);
    }

    /// A stream whose reads, once `armed`, find nothing once and then the end: a kept connection the
    /// API server closes in the moment between the pool's check and the request's first poll.
    struct ClosingLater {
        io: tokio::io::DuplexStream,
        armed: Arc<std::sync::atomic::AtomicBool>,
        pending_given: bool,
    }

    impl tokio::io::AsyncRead for ClosingLater {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if !self.armed.load(Ordering::SeqCst) {
                return Pin::new(&mut self.io).poll_read(cx, buf);
            }
            if !self.pending_given {
                self.pending_given = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }
    }

    impl tokio::io::AsyncWrite for ClosingLater {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.io).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    /// Answers every request on `io` with `ok`.
    async fn answer_ok(mut io: tokio::io::DuplexStream) {
        let mut buf = [0; 1024];
        let mut head = Vec::new();
        loop {
            let Ok(n) = io.read(&mut buf).await else { return };
            if n == 0 {
                return;
            }
            head.extend_from_slice(&buf[..n]);
            if head.ends_with(b"\r\n\r\n") {
                head.clear();
                if io.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_err() {
                    return;
                }
            }
        }
    }

    #[tokio::test]
    async fn a_request_on_a_kept_connection_closed_before_it_was_written_goes_on_another() {
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let dials = Arc::new(AtomicUsize::new(0));
        let (armed2, dials2) = (armed.clone(), dials.clone());
        let connector = BoxCloneSyncService::new(tower::service_fn(move |_: Uri| {
            let first = dials2.fetch_add(1, Ordering::SeqCst) == 0;
            let armed = armed2.clone();
            async move {
                let (ours, theirs) = tokio::io::duplex(4096);
                tokio::spawn(answer_ok(theirs));
                let stream: crate::proxy::upstream::BoxStream = if first {
                    Box::new(ClosingLater { io: ours, armed, pending_given: false })
                } else {
                    Box::new(ours)
                };
                Ok::<_, BoxError>(stream)
            }
        }));
        let upstream = Upstream {
            base_url: "http://127.0.0.1:1".parse().unwrap(),
            connector,
            long_running_connector: None,
            tls: None,
            bearer_token: None,
        };
        let prepared = upstream.prepare(Duration::from_secs(10)).unwrap();
        let pool = ConnPool::new(prepared.connector, 4, Duration::from_secs(90));
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let resp = pool.send(&prepared.origin, get("/", addr)).await.unwrap();
        assert_eq!(text(resp).await, "ok");
        assert_eq!(pool.idle(), 1);

        armed.store(true, Ordering::SeqCst);
        let sent = tokio::time::timeout(Duration::from_secs(10), pool.send(&prepared.origin, get("/", addr)))
            .await
            .expect("the request came back");
        assert_eq!(text(sent.unwrap()).await, "ok");
        assert_eq!(dials.load(Ordering::SeqCst), 2);
    }

    /// Answers one request per connection, then closes it (as an API server closing an idle one).
    async fn one_answer_per_connection() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut tcp, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0; 1024];
                    while !head.ends_with(b"\r\n\r\n") {
                        let n = tcp.read(&mut buf).await.unwrap();
                        assert_ne!(n, 0, "the request was cut short");
                        head.extend_from_slice(&buf[..n]);
                    }
                    tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_kept_connection_the_server_closed_is_not_used() {
        let addr = one_answer_per_connection().await;
        let (pool, dials, origin) = pool(addr, Duration::from_secs(90));
        for _ in 0..3 {
            let resp = pool.send(&origin, get("/", addr)).await.unwrap();
            assert_eq!(text(resp).await, "ok");
            // The server's close reaches the pool's connection.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(dials.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let addr = server().await;
        let (pool, dials, origin) = pool(addr, Duration::from_secs(2));
        let resp = pool.send(&origin, get("/", addr)).await.unwrap();
        text(resp).await;
        assert_eq!(pool.idle(), 1);
        let deadline = Instant::now() + Duration::from_secs(20);
        while pool.idle() > 0 {
            assert!(Instant::now() < deadline, "still kept");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let resp = pool.send(&origin, get("/", addr)).await.unwrap();
        text(resp).await;
        assert_eq!(dials.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_pool_keeps_at_most_its_maximum() {
        let addr = server().await;
        let (pool, dials, origin) = pool(addr, Duration::from_secs(90));
        // Six at once: six connections, four kept.
        let bodies = futures::future::join_all((0..6).map(|_| pool.send(&origin, get("/", addr)))).await;
        for body in bodies {
            text(body.unwrap()).await;
        }
        assert_eq!(dials.load(Ordering::SeqCst), 6);
        assert_eq!(pool.idle(), 4);
    }
}
