//! Tests of [`super::ConnPool`] against HTTP/1.1 servers on loopback and scripted streams.

use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tower::util::BoxCloneSyncService;

use super::*;
use crate::proxy::upstream::{Connector, Upstream, tcp_connector};

/// A pool for `addr` (plain HTTP) and how many connections it dialed.
fn pool(addr: std::net::SocketAddr, idle_timeout: Duration) -> (Arc<ConnPool>, Arc<AtomicUsize>, Uri) {
    let dials = Arc::new(AtomicUsize::new(0));
    let counted = dials.clone();
    let tcp = tcp_connector();
    let connector = BoxCloneSyncService::new(tower::service_fn(move |uri: Uri| {
        counted.fetch_add(1, Ordering::SeqCst);
        tcp.clone().oneshot(uri)
    }));
    let (pool, origin) = pool_over(addr, connector, idle_timeout);
    (pool, dials, origin)
}

/// A pool of at most four idle connections to `addr` (plain HTTP), dialed with `connector`.
fn pool_over(
    addr: std::net::SocketAddr,
    connector: Connector,
    idle_timeout: Duration,
) -> (Arc<ConnPool>, Uri) {
    let upstream = Upstream {
        base_url: format!("http://{addr}").parse().unwrap(),
        connector,
        long_running_connector: None,
        tls: None,
        bearer_token: None,
    };
    let prepared = upstream.prepare(Duration::from_secs(10)).unwrap();
    (ConnPool::new(prepared.connector, 4, idle_timeout), prepared.origin)
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
                    let host = req.headers().get(http::header::HOST).map(|h| h.to_str().unwrap().to_owned());
                    format!("{} {}", host.unwrap_or_default(), req.uri()).into_bytes()
                };
                Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(Bytes::from(body))))
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

/// Answers each request on `io` with `ok`, `at_most` of them, then closes it.
async fn answer_ok<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut io: S, at_most: usize) {
    let mut buf = [0; 1024];
    let mut head = Vec::new();
    for _ in 0..at_most {
        while !head.ends_with(b"\r\n\r\n") {
            let Ok(n) = io.read(&mut buf).await else { return };
            if n == 0 {
                assert!(head.is_empty(), "the request was cut short");
                return;
            }
            head.extend_from_slice(&buf[..n]);
        }
        head.clear();
        if io.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_err() {
            return;
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
            tokio::spawn(answer_ok(theirs, usize::MAX));
            let stream: crate::proxy::upstream::BoxStream = if first {
                Box::new(ClosingLater { io: ours, armed, pending_given: false })
            } else {
                Box::new(ours)
            };
            Ok::<_, BoxError>(stream)
        }
    }));
    let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let (pool, origin) = pool_over(addr, connector, Duration::from_secs(90));
    let resp = pool.send(&origin, get("/", addr)).await.unwrap();
    assert_eq!(text(resp).await, "ok");
    assert_eq!(pool.idle(), 1);

    armed.store(true, Ordering::SeqCst);
    let sent = tokio::time::timeout(Duration::from_secs(10), pool.send(&origin, get("/", addr)))
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
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(answer_ok(tcp, 1));
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
