//! Session lifecycle: reconnects, dead peers, replacement, credentials, metrics.

use std::time::Duration;

use crate::common::*;
use rancher_tunnel::*;
use tokio::net::TcpListener;

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reconnects_after_the_server_restarts() {
    let pki = pki();
    let echo = echo_server().await;
    let srv = start_server(&pki, test_session_cfg()).await;
    let addr = srv.addr;
    let a = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &[echo.to_string()]));
    let server = srv.server.clone();
    wait_until("first session", LONG, || server.has_session("c-a")).await;
    let mut connected = a.agent.connected();
    srv.stop().await;
    tokio::time::timeout(LONG, connected.wait_for(|c| !*c)).await.unwrap().unwrap();

    // A new server process on the same address.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_reuseaddr(true).unwrap();
    sock.bind(addr).unwrap();
    let listener: TcpListener = sock.listen(128).unwrap();
    let srv2 = start_server_on(&pki, test_session_cfg(), listener, ServeOptions::default()).await;
    let server2 = srv2.server.clone();
    wait_until("agent back on the new server", LONG, || server2.has_session("c-a")).await;
    let mut s = srv2.server.dial("c-a", "tcp", &echo.to_string()).await.unwrap();
    assert_eq!(echo_roundtrip(&mut s, b"again").await, b"again");

    a.stop.cancel();
    a.task.await.unwrap().unwrap();
    srv2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_is_dropped_and_a_disconnect_event_is_sent() {
    let pki = pki();
    let srv = start_server(&pki, test_session_cfg()).await;
    let mut events = srv.server.subscribe();
    let a = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &[]));
    let b = spawn_agent(agent(&pki, &srv.url, TOKEN_B, &[]));
    let server = srv.server.clone();
    wait_until("both sessions", LONG, || server.has_session("c-a") && server.has_session("c-b")).await;

    a.task.abort();
    let reason = next_disconnect(&mut events, "c-a", LONG).await;
    assert!(!reason.is_empty());
    assert!(!srv.server.has_session("c-a"));
    assert!(srv.server.has_session("c-b"), "the other agent is untouched");
    b.stop.cancel();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_dropped_after_the_dead_peer_timeout() {
    let pki = pki();
    let cfg = test_session_cfg();
    let timeout = cfg.dead_peer_timeout;
    let srv = start_server(&pki, cfg).await;
    let mut events = srv.server.subscribe();
    // Completes the handshake, then never reads or writes: no pongs, no data, TCP stays open.
    let ws = raw_ws(&pki, srv.addr, TOKEN_A).await;
    let server = srv.server.clone();
    wait_until("session", LONG, || server.has_session("c-a")).await;
    let started = tokio::time::Instant::now();
    let reason = next_disconnect(&mut events, "c-a", timeout * 5).await;
    assert!(reason.contains("dead-peer"), "{reason}");
    assert!(started.elapsed() >= timeout / 2, "dropped too early: {:?}", started.elapsed());
    assert!(!srv.server.has_session("c-a"));
    drop(ws);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_live_agent_survives_many_keepalive_periods() {
    let pki = pki();
    let cfg = test_session_cfg();
    let srv = start_server(&pki, cfg.clone()).await;
    let echo = echo_server().await;
    let a = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &[echo.to_string()]));
    let server = srv.server.clone();
    wait_until("session", LONG, || server.has_session("c-a")).await;
    let mut events = srv.server.subscribe();
    tokio::time::sleep(cfg.dead_peer_timeout * 2).await;
    assert!(events.try_recv().is_err(), "no disconnect while idle with pings");
    let mut s = srv.server.dial("c-a", "tcp", &echo.to_string()).await.unwrap();
    assert_eq!(echo_roundtrip(&mut s, b"idle ok").await, b"idle ok");
    a.stop.cancel();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_session_replaces_the_older_one_cleanly() {
    let pki = pki();
    let echo = echo_server().await;
    let srv = start_server(&pki, test_session_cfg()).await;
    let mut events = srv.server.subscribe();
    let first = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &[echo.to_string()]));
    let server = srv.server.clone();
    wait_until("first", LONG, || server.has_session("c-a")).await;
    let first_id = match events.recv().await.unwrap() {
        SessionEvent::Connected { session_id, .. } => session_id,
        other => panic!("{other:?}"),
    };
    let second = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &[echo.to_string()]));
    let (mut saw_connected, mut saw_replaced) = (false, false);
    tokio::time::timeout(LONG, async {
        while !(saw_connected && saw_replaced) {
            match events.recv().await.unwrap() {
                SessionEvent::Connected { session_id, .. } if session_id != first_id => saw_connected = true,
                SessionEvent::Disconnected { session_id, replaced, .. } if session_id == first_id => {
                    assert!(replaced);
                    saw_replaced = true;
                }
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    assert!(srv.server.has_session("c-a"), "the newer session stays registered");
    // Stop the first agent so it does not reconnect and replace again.
    first.stop.cancel();
    let mut s = srv.server.dial("c-a", "tcp", &echo.to_string()).await.unwrap();
    assert_eq!(echo_roundtrip(&mut s, b"new").await, b"new");
    second.stop.cancel();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_wrong_ca_are_refused() {
    let pki = pki();
    let srv = start_server(&pki, test_session_cfg()).await;
    let t = transport(&pki, &srv.url, test_session_cfg());
    let mut headers = http::HeaderMap::new();
    headers.insert(TOKEN_HEADER, "tok-wrong".parse().unwrap());
    let err = t.connect(&headers).await.err().expect("wrong token must be refused");
    assert!(matches!(err, Error::Unauthorized { status: 401 }), "{err}");
    let err = t.connect(&http::HeaderMap::new()).await.err().expect("no token must be refused");
    assert!(matches!(err, Error::Unauthorized { status: 401 }), "{err}");
    assert!(srv.server.client_keys().is_empty());

    // Pinning a checksum that is not the server CA's: the agent refuses before connecting.
    let err = client_tls_pinned(pki.ca_pem.as_bytes(), &"ab".repeat(32)).unwrap_err();
    assert!(matches!(err, Error::CaChecksumMismatch { .. }), "{err}");
    // Trusting another CA: the TLS handshake fails.
    let other = crate::common::pki();
    let tls = client_tls_pinned(other.ca_pem.as_bytes(), &ca_checksum(other.ca_pem.as_bytes())).unwrap();
    let t = WsTransport::new(&srv.url, tls, test_session_cfg()).unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(TOKEN_HEADER, TOKEN_A.parse().unwrap());
    assert!(t.connect(&headers).await.is_err());
    assert!(srv.server.client_keys().is_empty());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_shutdown_drains_open_streams() {
    let pki = pki();
    let echo = echo_server().await;
    let srv = start_server(&pki, test_session_cfg()).await;
    let mut events = srv.server.subscribe();
    let a = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &[echo.to_string()]));
    let server = srv.server.clone();
    wait_until("session", LONG, || server.has_session("c-a")).await;
    let mut s = srv.server.dial("c-a", "tcp", &echo.to_string()).await.unwrap();
    a.stop.cancel();
    // The open stream still works while the agent drains...
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(echo_roundtrip(&mut s, b"in flight").await, b"in flight");
    drop(s);
    // ...and once it is done the session closes and the agent's run returns.
    tokio::time::timeout(LONG, a.task).await.unwrap().unwrap().unwrap();
    next_disconnect(&mut events, "c-a", LONG).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_sessions_streams_bytes_and_dial_errors() {
    let pki = pki();
    let echo = echo_server().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let server = TunnelServer::new(test_session_cfg(), metrics).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(serve_connect(
        listener,
        Some(pki.server_tls.clone()),
        server.clone(),
        authorizer(),
        ServeOptions::default(),
        stop.clone(),
    ));
    let a = spawn_agent(agent(
        &pki,
        &format!("wss://localhost:{}/v3/connect", addr.port()),
        TOKEN_A,
        &[echo.to_string()],
    ));
    let s2 = server.clone();
    wait_until("session", LONG, || s2.has_session("c-a")).await;
    let mut s = server.dial("c-a", "tcp", &echo.to_string()).await.unwrap();
    assert_eq!(echo_roundtrip(&mut s, b"12345").await, b"12345");
    let _ = server.dial("c-a", "tcp", "192.0.2.1:1").await.unwrap_err();
    let _ = server.dial("c-x", "tcp", "192.0.2.1:1").await.unwrap_err();
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    for line in [
        "tunnel_sessions 1",
        "tunnel_streams_open 1",
        "tunnel_dial_errors_total{reason=\"refused\"} 1",
        "tunnel_dial_errors_total{reason=\"no_session\"} 1",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    // Payload only: dial headers and replies are not counted.
    assert!(out.contains("tunnel_bytes_in_total 5\n") && out.contains("tunnel_bytes_out_total 5\n"), "{out}");
    drop(s);
    a.stop.cancel();
    stop.cancel();
    server.shutdown(LONG).await;
}

/// Waits for the next session of `c-a` to connect (not `known`'s) and returns its id.
async fn connected_other_than(
    events: &mut tokio::sync::broadcast::Receiver<SessionEvent>,
    known: Option<u64>,
) -> u64 {
    tokio::time::timeout(LONG, async {
        loop {
            if let SessionEvent::Connected { session_id, client_key } = events.recv().await.unwrap()
                && client_key == "c-a"
                && Some(session_id) != known
            {
                return session_id;
            }
        }
    })
    .await
    .expect("a session of c-a connects")
}

/// Accepts connections and reads them without ever answering; each accepted connection's read
/// result (EOF once the agent lets go) is sent on the returned channel.
async fn silent_server() -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<usize>) {
    use tokio::io::AsyncReadExt;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut read = 0;
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    read += n;
                }
                let _ = tx.send(read);
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_waiting_on_a_session_that_closes_ends_with_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = pki();
    let (silent, mut let_go) = silent_server().await;
    let srv = start_server(&pki, test_session_cfg()).await;
    let a = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &[silent.to_string()]));
    let server = srv.server.clone();
    wait_until("session", LONG, || server.has_session("c-a")).await;
    let mut s = srv.server.dial("c-a", "tcp", &silent.to_string()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        s.read(&mut buf).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!reader.is_finished(), "no reply yet: the read waits");

    // The server closes the session (as for a deleted cluster): the read waiting for a reply that
    // can no longer come fails now, instead of waiting for good.
    assert!(srv.server.close_session("c-a"));
    let read = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the read ends with its session")
        .unwrap();
    read.expect_err("a read on an ended session fails");
    // And the agent let go of its connection to the destination.
    let read = tokio::time::timeout(Duration::from_secs(10), let_go.recv()).await.unwrap();
    assert_eq!(read, Some(18), "the destination got the request, then EOF");
    a.stop.cancel();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_session_finishes_the_replies_under_way_then_closes() {
    use tokio::io::AsyncWriteExt;
    let pki = pki();
    let (silent, mut let_go) = silent_server().await;
    let echo = echo_server().await;
    let allow = [silent.to_string(), echo.to_string()];
    let srv = start_server(&pki, test_session_cfg()).await;
    let mut events = srv.server.subscribe();
    let first = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &allow));
    let first_id = connected_other_than(&mut events, None).await;
    // A stream under way on the first session: an echo that is not done yet.
    let mut under_way = srv.server.dial("c-a", "tcp", &echo.to_string()).await.unwrap();
    under_way.write_all(b"before").await.unwrap();
    // And one that a close would leave waiting.
    let mut silent_stream = srv.server.dial("c-a", "tcp", &silent.to_string()).await.unwrap();
    silent_stream.write_all(b"x").await.unwrap();

    let second = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &allow));
    connected_other_than(&mut events, Some(first_id)).await;
    // The first agent must not come back and replace the second once its session ends.
    first.stop.cancel();
    // New streams take the newer session; the one under way goes on on the older one.
    let mut s = srv.server.dial("c-a", "tcp", &echo.to_string()).await.unwrap();
    assert_eq!(echo_roundtrip(&mut s, b"new").await, b"new");
    assert_eq!(echo_roundtrip(&mut under_way, b" and after").await, b"before and after");
    drop(under_way);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(let_go.try_recv().is_err(), "the older session still serves the silent stream");

    // Once its last stream is done, the older session closes (replaced), long before the drain budget.
    drop(silent_stream);
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let SessionEvent::Disconnected { session_id, replaced, .. } = events.recv().await.unwrap()
                && session_id == first_id
            {
                return replaced;
            }
        }
    })
    .await
    .expect("the older session closes once its streams are done");
    assert!(closed, "it was replaced");
    assert!(srv.server.has_session("c-a"), "the newer session stays");
    second.stop.cancel();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dials_during_a_replacement_all_reach_a_session() {
    let pki = pki();
    let echo = echo_server().await;
    let allow = [echo.to_string()];
    let srv = start_server(&pki, test_session_cfg()).await;
    let mut events = srv.server.subscribe();
    let first = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &allow));
    let first_id = connected_other_than(&mut events, None).await;
    // Four callers dial one after another all through the replacement.
    let stop = tokio_util::sync::CancellationToken::new();
    let dialers: Vec<_> = (0..4)
        .map(|_| {
            let (server, stop, echo) = (srv.server.clone(), stop.clone(), echo.to_string());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0, vec![]);
                while !stop.is_cancelled() {
                    match server.dial("c-a", "tcp", &echo).await {
                        Ok(_) => ok += 1,
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &allow));
    connected_other_than(&mut events, Some(first_id)).await;
    first.stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    for d in dialers {
        let (ok, failed) = d.await.unwrap();
        assert!(ok > 0 && failed.is_empty(), "{ok} dials, failed: {failed:?}");
    }
    second.stop.cancel();
    srv.stop().await;
}
