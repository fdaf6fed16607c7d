//! Bad input and hostile peers on `/v3/connect`: each is refused or closed with a reason, and
//! every other session carries on.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use rancher_tunnel::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const LONG: Duration = Duration::from_secs(30);

/// A yamux frame header: version 0, type, flags, stream id, length.
fn yamux_header(kind: u8, flags: u16, stream: u32, len: u32) -> Vec<u8> {
    let mut h = vec![0u8, kind];
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&stream.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_text_and_oversized_frames_close_only_that_session() {
    let pki = pki();
    let cfg = test_session_cfg();
    let max = cfg.max_message_size;
    let srv = start_server(&pki, cfg).await;
    let echo = echo_server().await;
    let a = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &[echo.to_string()]));
    let server = srv.server.clone();
    wait_until("good agent", LONG, || server.has_session("c-a")).await;
    let mut good = srv.server.dial("c-a", "tcp", &echo.to_string()).await.unwrap();
    let mut events = srv.server.subscribe();

    let cases: Vec<(&str, Message, &str)> = vec![
        ("text message", Message::Text("hello".into()), "text WebSocket message"),
        ("bad yamux version", Message::Binary(Bytes::from_static(&[0xff; 12])), "unknown version"),
        ("oversized message", Message::Binary(Bytes::from(vec![0u8; max + 1])), "too long"),
    ];
    for (what, msg, expected) in cases {
        let mut ws = raw_ws(&pki, srv.addr, TOKEN_B).await;
        let server = srv.server.clone();
        wait_until("hostile session", LONG, || server.has_session("c-b")).await;
        // The server may close before the whole message is written.
        let _ = ws.send(msg).await;
        let reason = next_disconnect(&mut events, "c-b", LONG).await;
        assert!(reason.contains(expected), "{what}: {reason}");
        assert!(!srv.server.has_session("c-b"), "{what}");
        // The good session and its open stream carry on.
        assert!(srv.server.has_session("c-a"), "{what}");
        good.write_all(what.as_bytes()).await.unwrap();
        let mut back = vec![0u8; what.len()];
        good.read_exact(&mut back).await.unwrap();
        assert_eq!(back, what.as_bytes());
    }
    a.stop.cancel();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_id_the_peer_never_opened_is_ignored_and_the_session_survives() {
    let pki = pki();
    let srv = start_server(&pki, test_session_cfg()).await;
    let mut ws = raw_ws(&pki, srv.addr, TOKEN_B).await;
    let server = srv.server.clone();
    wait_until("session", LONG, || server.has_session("c-b")).await;

    // Data for stream 99, never opened (no SYN): yamux drops it as "possibly dropped earlier".
    let mut frame = yamux_header(0, 0, 99, 4);
    frame.extend_from_slice(b"junk");
    // Then a ping (type 2, SYN) with opaque value 4242: a live session answers with ACK.
    frame.extend_from_slice(&yamux_header(2, 1, 0, 4242));
    ws.send(Message::Binary(frame.into())).await.unwrap();

    let got_ack = tokio::time::timeout(LONG, async {
        let mut buf = Vec::new();
        while let Some(msg) = ws.next().await {
            if let Message::Binary(b) = msg.unwrap() {
                buf.extend_from_slice(&b);
            }
            while buf.len() >= 12 {
                let (kind, flags) = (buf[1], u16::from_be_bytes([buf[2], buf[3]]));
                let len = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                let body = if kind == 0 { len as usize } else { 0 };
                if buf.len() < 12 + body {
                    break;
                }
                if kind == 2 && flags & 2 != 0 && len == 4242 {
                    return true;
                }
                buf.drain(..12 + body);
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(got_ack, "the session answered the ping after the unknown stream's frame");
    assert!(srv.server.has_session("c-b"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_are_dropped_after_the_handshake_and_header_timeouts() {
    let pki = pki();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut opts = ServeOptions::default();
    opts.tls_handshake_timeout = Duration::from_millis(500);
    opts.header_read_timeout = Duration::from_millis(500);
    let srv = start_server_on(&pki, test_session_cfg(), listener, opts).await;

    // Opens TCP and sends nothing.
    let mut tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(LONG, tcp.read(&mut buf))
        .await
        .expect("server kept a silent client")
        .unwrap_or(0);
    assert_eq!(n, 0, "server closed the silent connection");

    // Completes TLS, then sends half a request line and stops.
    let tls = client_tls_pinned(pki.ca_pem.as_bytes(), &ca_checksum(pki.ca_pem.as_bytes())).unwrap();
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /v3/connect HTTP/1.1\r\nHost: loc").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(LONG, tls.read_to_end(&mut out)).await.expect("server kept a slow client");
    assert!(!String::from_utf8_lossy(&out).contains("101"), "no upgrade for a partial request");
    srv.stop().await;
}

async fn body_of(resp: http::Response<http_body_util::Full<Bytes>>) -> (StatusCode, String) {
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn malformed_upgrades_and_bad_tokens_get_status_errors() {
    init();
    let server = TunnelServer::new(test_session_cfg(), Metrics::unregistered()).unwrap();
    let authz = authorizer();
    let ws_req = |token: Option<&str>| {
        let mut b = Request::get(CONNECT_PATH)
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        if let Some(t) = token {
            b = b.header(TOKEN_HEADER, t);
        }
        b.body(()).unwrap()
    };

    let (status, body) =
        body_of(server.accept_upgrade(Request::post(CONNECT_PATH).body(()).unwrap(), &*authz).await).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");

    let (status, body) =
        body_of(server.accept_upgrade(Request::get(CONNECT_PATH).body(()).unwrap(), &*authz).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["kind"], "Status");
    assert_eq!(json["code"], 400);

    let (status, body) = body_of(server.accept_upgrade(ws_req(Some("tok-guess")), &*authz).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("unknown tunnel token") && !body.contains("tok-guess"), "{body}");

    // A valid request gets 101 with the RFC 6455 accept key.
    let resp = server.accept_upgrade(ws_req(Some(TOKEN_A)), &*authz).await;
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
