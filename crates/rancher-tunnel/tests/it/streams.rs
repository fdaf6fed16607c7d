//! Dialing through a real TLS tunnel on loopback: echo, refusals, flow control, limits.

use std::time::Duration;

use crate::common::*;
use rancher_tunnel::{Error, StreamUse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LONG: Duration = Duration::from_secs(30);

/// A server with default test settings, an echo server, and agent `c-a` (allowed to reach it)
/// connected.
async fn echo_agent_connected() -> (TestServer, std::net::SocketAddr, RunningAgent) {
    let pki = pki();
    let srv = start_server(&pki, test_session_cfg()).await;
    let echo = echo_server().await;
    let a = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &[echo.to_string()]));
    let server = srv.server.clone();
    wait_until("agent session", LONG, || server.has_session("c-a")).await;
    (srv, echo, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_reaches_echo_server_and_half_close_delivers_the_reply() {
    let (srv, echo, a) = echo_agent_connected().await;

    let mut s = srv.server.dial("c-a", "tcp", &echo.to_string()).await.unwrap();
    // 1 MiB in, half-close, the whole echo comes back after our FIN.
    let msg: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        w.write_all(&msg).await.unwrap();
        w.shutdown().await.unwrap();
        msg
    });
    let mut got = Vec::new();
    tokio::time::timeout(LONG, r.read_to_end(&mut got)).await.unwrap().unwrap();
    let msg = writer.await.unwrap();
    assert_eq!(got.len(), msg.len());
    assert!(got == msg, "echoed bytes differ");

    // A second stream on the same session.
    s = srv.server.dial("c-a", "tcp", &echo.to_string()).await.unwrap();
    assert_eq!(echo_roundtrip(&mut s, b"ping").await, b"ping");

    a.stop.cancel();
    a.task.await.unwrap().unwrap();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_failed_dials_fail_only_that_stream() {
    let pki = pki();
    let srv = start_server(&pki, test_session_cfg()).await;
    let echo = echo_server().await;
    let closed = closed_port().await;
    let a = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &[echo.to_string(), closed.to_string()]));
    let server = srv.server.clone();
    wait_until("agent session", LONG, || server.has_session("c-a")).await;

    // Not on the allow list: refused by policy, with a clear error.
    let err = srv.server.dial("c-a", "tcp", "169.254.169.254:80").await.unwrap_err();
    assert!(matches!(err, Error::DialRefused { .. }), "{err}");
    assert!(err.to_string().contains("169.254.169.254:80") && err.to_string().contains("policy"), "{err}");
    // A network other than tcp is refused too.
    let err = srv.server.dial("c-a", "unix", &echo.to_string()).await.unwrap_err();
    assert!(matches!(err, Error::DialRefused { .. }), "{err}");
    // Allowed but nothing listens: the agent reports the connect error.
    let err = srv.server.dial("c-a", "tcp", &closed.to_string()).await.unwrap_err();
    assert!(matches!(err, Error::DialFailed { .. }), "{err}");
    // Bad input never leaves the server.
    let err = srv.server.dial("c-a", "tcp", "").await.unwrap_err();
    assert!(matches!(err, Error::InvalidDial(_)), "{err}");

    // The session is intact: the next dial works.
    assert!(srv.server.has_session("c-a"));
    let mut s = srv.server.dial("c-a", "tcp", &echo.to_string()).await.unwrap();
    assert_eq!(echo_roundtrip(&mut s, b"still here").await, b"still here");

    a.stop.cancel();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_fails_at_once_and_dial_timeout_waits_for_one() {
    let pki = pki();
    let srv = start_server(&pki, test_session_cfg()).await;
    let echo = echo_server().await;

    let started = tokio::time::Instant::now();
    let err = srv.server.dial("c-a", "tcp", &echo.to_string()).await.unwrap_err();
    assert!(matches!(err, Error::NoSession(ref k) if k == "c-a"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));

    let err = srv
        .server
        .dial_timeout("c-a", "tcp", &echo.to_string(), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoSessionWithin { .. }), "{err}");

    // The agent appears while the dial waits.
    let (pki2_url, allow) = (srv.url.clone(), vec![echo.to_string()]);
    let ag = agent(&pki, &pki2_url, TOKEN_A, &allow);
    let dial = {
        let server = srv.server.clone();
        let echo = echo.to_string();
        tokio::spawn(async move { server.dial_timeout("c-a", "tcp", &echo, LONG).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let a = spawn_agent(ag);
    let mut s = dial.await.unwrap().unwrap();
    assert_eq!(echo_roundtrip(&mut s, b"late").await, b"late");
    a.stop.cancel();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_does_not_stop_another_streams_transfer() {
    let pki = pki();
    let srv = start_server(&pki, test_session_cfg()).await;
    let echo = echo_server().await;
    let hose = firehose_server().await;
    let a = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &[echo.to_string(), hose.to_string()]));
    let server = srv.server.clone();
    wait_until("agent session", LONG, || server.has_session("c-a")).await;

    // Stream 1: the destination sends without end and we never read it.
    let mut stalled = srv.server.dial("c-a", "tcp", &hose.to_string()).await.unwrap();
    let mut first = [0u8; 1];
    stalled.read_exact(&mut first).await.unwrap();
    // Let its window fill.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Stream 2: 16 MiB each way must still flow.
    let s = srv.server.dial("c-a", "tcp", &echo.to_string()).await.unwrap();
    let (mut r, mut w) = tokio::io::split(s);
    const TOTAL: usize = 16 * 1024 * 1024;
    let writer = tokio::spawn(async move {
        let buf = vec![7u8; 64 * 1024];
        for _ in 0..TOTAL / buf.len() {
            w.write_all(&buf).await.unwrap();
        }
        w.shutdown().await.unwrap();
    });
    let mut n = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(LONG, async {
        loop {
            let k = r.read(&mut buf).await.unwrap();
            if k == 0 {
                break;
            }
            n += k;
        }
    })
    .await
    .expect("the second stream stalled behind the first");
    writer.await.unwrap();
    assert_eq!(n, TOTAL);

    // The stalled stream is still alive and readable.
    let mut more = vec![0u8; 1024];
    stalled.read_exact(&mut more).await.unwrap();

    a.stop.cancel();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_limits_fail_one_dial_leave_requests_their_reserve_and_the_session_continues() {
    let pki = pki();
    let mut cfg = test_session_cfg();
    cfg.max_streams = 4;
    cfg.reserved_streams = 1;
    cfg.max_buffered_bytes = 8 * 256 * 1024;
    let srv = start_server(&pki, cfg).await;
    let echo = echo_server().await;
    let a = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &[echo.to_string()]));
    let server = srv.server.clone();
    wait_until("agent session", LONG, || server.has_session("c-a")).await;

    // Long-running streams (watches) leave the reserved slot to requests.
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(
            srv.server.dial_for("c-a", "tcp", &echo.to_string(), StreamUse::LongRunning).await.unwrap(),
        );
    }
    let err = srv.server.dial_for("c-a", "tcp", &echo.to_string(), StreamUse::LongRunning).await.unwrap_err();
    assert!(matches!(err, Error::StreamLimit { limit: 3 }), "{err}");
    open.push(srv.server.dial("c-a", "tcp", &echo.to_string()).await.unwrap());
    let err = srv.server.dial("c-a", "tcp", &echo.to_string()).await.unwrap_err();
    assert!(matches!(err, Error::StreamLimit { limit: 4 }), "{err}");
    assert!(srv.server.has_session("c-a"));
    // Closing one frees a slot.
    let mut s = open.pop().unwrap();
    assert_eq!(echo_roundtrip(&mut s, b"x").await, b"x");
    drop(s);
    let server = srv.server.clone();
    let addr = echo.to_string();
    let mut next = None;
    for _ in 0..100 {
        match server.dial("c-a", "tcp", &addr).await {
            Ok(s) => {
                next = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let mut next = next.expect("a slot was freed");
    assert_eq!(echo_roundtrip(&mut next, b"y").await, b"y");
    a.stop.cancel();
    srv.stop().await;
}

/// A cluster with a thousand watches through the proxy: with the default limits every one holds
/// its own stream, and ordinary requests still get through beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_long_running_streams_fit_in_one_session_beside_requests() {
    let (srv, echo, a) = echo_agent_connected().await;

    let addr = echo.to_string();
    let mut watches = Vec::new();
    for i in 0..1000 {
        let s = srv.server.dial_for("c-a", "tcp", &addr, StreamUse::LongRunning).await;
        watches.push(s.unwrap_or_else(|e| panic!("long-running stream {i}: {e}")));
    }
    let mut request = srv.server.dial("c-a", "tcp", &addr).await.unwrap();
    assert_eq!(echo_roundtrip(&mut request, b"get").await, b"get");
    // Every one of them still carries bytes.
    for (i, w) in watches.iter_mut().enumerate().step_by(97) {
        assert_eq!(echo_roundtrip(w, format!("event {i}").as_bytes()).await, format!("event {i}").as_bytes());
    }
    a.stop.cancel();
    srv.stop().await;
}

/// Connects every dial to `to`, whatever the address, and counts the dials.
struct Redirect {
    to: std::net::SocketAddr,
    dials: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl rancher_tunnel::Dialer for Redirect {
    async fn dial(&self, _address: &str, _timeout: Duration) -> std::io::Result<tokio::net::TcpStream> {
        self.dials.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::net::TcpStream::connect(self.to).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_dialer_picks_where_an_allowed_address_goes_and_the_policy_still_decides() {
    let pki = pki();
    let srv = start_server(&pki, test_session_cfg()).await;
    let echo = echo_server().await;
    // The server asks for a closed port; the agent's dialer takes the stream to the echo server.
    let closed = closed_port().await.to_string();
    let dialer = std::sync::Arc::new(Redirect { to: echo, dials: Default::default() });
    let agent = agent(&pki, &srv.url, TOKEN_A, std::slice::from_ref(&closed));
    let agent = std::sync::Arc::into_inner(agent).unwrap().with_dialer(dialer.clone());
    let a = spawn_agent(std::sync::Arc::new(agent));
    let server = srv.server.clone();
    wait_until("agent session", LONG, || server.has_session("c-a")).await;

    let mut s = srv.server.dial("c-a", "tcp", &closed).await.unwrap();
    assert_eq!(echo_roundtrip(&mut s, b"via the dialer").await, b"via the dialer");
    // An address the policy does not allow never reaches the dialer.
    let err = srv.server.dial("c-a", "tcp", &echo.to_string()).await.unwrap_err();
    assert!(matches!(err, Error::DialRefused { .. }), "{err}");
    assert_eq!(dialer.dials.load(std::sync::atomic::Ordering::SeqCst), 1);

    a.stop.cancel();
    srv.stop().await;
}
