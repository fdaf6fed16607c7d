//! Row 7: slow and idle connections are closed, and connections beyond the caps are refused at once
//! while the server keeps answering.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::raw::{Raw, closed_within, loopback, ping, read_to_close};
use crate::common::{ADMIN_PASSWORD, ServerProc};

const TIMEOUTS: [&str; 4] = ["--http-header-timeout", "2s", "--http-idle-timeout", "4s"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &TIMEOUTS);
    let raw = Raw::new(&server);

    // A request line, then one header byte every half second: never a complete head.
    let mut tls = raw.tls(loopback(10, 1)).await.unwrap();
    let started = Instant::now();
    tls.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let mut cut = None;
    for _ in 0..30 {
        if closed_within(&mut tls, Duration::from_millis(500)).await || tls.write_all(b"a").await.is_err() {
            cut = Some(started.elapsed());
            break;
        }
    }
    let cut = cut.expect("the slow header was still being accepted after 15 s");
    eprintln!("slow header cut after {cut:?}");
    assert!(cut >= Duration::from_millis(1500) && cut < Duration::from_secs(6), "{cut:?}");

    // One byte and then nothing, before the server can even tell HTTP/1.1 from HTTP/2.
    let mut tls = raw.tls(loopback(10, 2)).await.unwrap();
    let started = Instant::now();
    tls.write_all(b"G").await.unwrap();
    assert!(closed_within(&mut tls, Duration::from_secs(8)).await, "a one-byte request is held open");
    eprintln!("one-byte request cut after {:?}", started.elapsed());

    // Connected and silent after the handshake.
    let mut tls = raw.tls(loopback(10, 3)).await.unwrap();
    assert!(closed_within(&mut tls, Duration::from_secs(8)).await, "a silent connection is held open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_lasts_longer_than_a_header_but_not_forever() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &TIMEOUTS);
    let raw = Raw::new(&server);
    let mut tls = raw.tls(loopback(11, 1)).await.unwrap();
    let ping = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
    tls.write_all(ping).await.unwrap();
    assert!(read_some(&mut tls).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than the header timeout, shorter than the idle timeout: still usable.
    tokio::time::sleep(Duration::from_secs(3)).await;
    tls.write_all(ping).await.unwrap();
    assert!(read_some(&mut tls).await.starts_with("HTTP/1.1 200"), "a keep-alive connection idle for 3 s");
    // Idle past the idle timeout: closed.
    let started = Instant::now();
    assert!(closed_within(&mut tls, Duration::from_secs(10)).await, "an idle connection is held open");
    let idle = started.elapsed();
    eprintln!("idle keep-alive closed after {idle:?}");
    assert!(idle >= Duration::from_secs(3), "closed after {idle:?}, before the idle timeout");
}

/// Reads what has arrived within a second (one small response).
async fn read_some(tls: &mut TlsStream<TcpStream>) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_body_is_not_a_slow_header() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &TIMEOUTS);
    let raw = Raw::new(&server);
    let body = br#"{"username":"nobody","password":"a-guessed-password"}"#;
    let mut tls = raw.tls(loopback(12, 1)).await.unwrap();
    let head = format!(
        "POST /v3-public/localProviders/local?action=login HTTP/1.1\r\nHost: x\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    // The head is complete; the body trickles in over 6 s, past both timeouts: the request is in
    // progress, so it is not cut.
    for chunk in body.chunks(body.len().div_ceil(12)) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        tls.write_all(chunk).await.unwrap();
    }
    let answer = read_to_close(&mut tls, Duration::from_secs(30)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

/// Opens up to `n` connections from `from`: those that completed their TLS handshake, and the slowest
/// refusal. Stops early when a handshake gets no answer at all (the server no longer accepts).
async fn open_many(raw: &Raw, from: std::net::IpAddr, n: usize) -> (Vec<TlsStream<TcpStream>>, Duration) {
    let mut open = Vec::new();
    let mut slowest_refusal = Duration::ZERO;
    for _ in 0..n {
        let started = Instant::now();
        match raw.tls(from).await {
            Ok(tls) => open.push(tls),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(_) => slowest_refusal = slowest_refusal.max(started.elapsed()),
        }
    }
    (open, slowest_refusal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_caps_are_refused_and_the_server_answers() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--max-connections", "24", "--max-connections-per-client", "8"];
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &flags);
    let raw = Raw::new(&server);

    // One address: 8 connections are served, the other 12 are closed at once.
    let (held, slowest) = open_many(&raw, loopback(13, 1), 20).await;
    eprintln!("one address: {} of 20 accepted, slowest refusal {slowest:?}", held.len());
    assert_eq!(held.len(), 8, "the per-client cap");
    assert!(slowest < Duration::from_secs(2), "refusals are immediate: {slowest:?}");
    assert_eq!(ping(&raw, loopback(13, 100)).await.as_deref(), Some("HTTP/1.1 200 OK"));

    // Two more addresses fill the server: the excess is refused, the process stays up, and once the
    // connections go, a new client is served.
    let (more_a, _) = open_many(&raw, loopback(13, 2), 8).await;
    let (more_b, _) = open_many(&raw, loopback(13, 3), 8).await;
    assert_eq!(held.len() + more_a.len() + more_b.len(), 24, "the total cap");
    assert_eq!(ping(&raw, loopback(13, 101)).await, None, "beyond the total cap, refused");
    drop((held, more_a, more_b));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ping(&raw, loopback(13, 102)).await.as_deref(), Some("HTTP/1.1 200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_descriptor_limit_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    // 256 descriptors, soft and hard, and no cap given: the server sizes its caps below the limit
    // (192 connections, 48 per client address).
    let server = ServerProc::start_under(
        &["prlimit", "--nofile=256:256", "--"],
        &dir.path().join("data"),
        Some(ADMIN_PASSWORD),
        &[],
    );
    let raw = Raw::new(&server);
    // One address tries to take every descriptor; a newcomer is still served.
    let (mut held, _) = open_many(&raw, loopback(14, 1), 300).await;
    eprintln!("256 descriptors: one address got {} of 300 connections", held.len());
    assert_eq!(held.len(), 48, "the per-client cap derived from the descriptor limit");
    assert_eq!(ping(&raw, loopback(14, 100)).await.as_deref(), Some("HTTP/1.1 200 OK"));
    // Many addresses together reach the total cap, which stays below the descriptor limit …
    for client in 2..=6 {
        held.extend(open_many(&raw, loopback(14, client), 60).await.0);
    }
    eprintln!("256 descriptors: {} connections from 6 addresses", held.len());
    assert_eq!(held.len(), 192, "the total cap derived from the descriptor limit");
    // … so the connections it holds are still served.
    let mut last = held.pop().unwrap();
    last.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let answer = read_to_close(&mut last, Duration::from_secs(30)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ping(&raw, loopback(14, 101)).await.as_deref(), Some("HTTP/1.1 200 OK"));
}
