//! Invariant checks over the bytes a tunnel peer controls: the dial header and its reply, and a whole
//! server session (WebSocket framing → [`WsIo`](crate::ws_io) → the multiplexer → dial) fed by a hostile agent.
//! Each check takes raw fuzzer bytes and panics when an invariant breaks.
//!
//! The cargo-fuzz targets in the workspace's `fuzz/` directory and the bounded runs in
//! `tests/it/fuzz_tunnel.rs` call these same functions. Not a stable API: hidden from the docs.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast::error::RecvError;

use crate::dial_header::{self, MAX_ADDRESS_LEN, MAX_NETWORK_LEN};
use crate::{Metrics, SessionConfig, SessionEvent, TunnelServer};

/// Reads `data` as a dial request and as a dial reply; panics unless every parse stays within the
/// header's limits and whatever is accepted is re-encoded byte for byte.
pub fn dial_header(data: &[u8]) {
    let mut rest = data;
    if let Ok(req) = futures::executor::block_on(dial_header::read_request(&mut rest)) {
        assert!((1..=MAX_NETWORK_LEN).contains(&req.network.len()), "network {:?}", req.network);
        assert!((1..=MAX_ADDRESS_LEN).contains(&req.address.len()), "address {:?}", req.address);
        let read = &data[..data.len() - rest.len()];
        let again = dial_header::encode_request(&req.network, &req.address)
            .unwrap_or_else(|e| panic!("an accepted request {req:?} does not encode: {e}"));
        assert_eq!(again, read, "{req:?} re-encodes differently");
    }
    let mut rest = data;
    if let Ok((status, msg)) = futures::executor::block_on(dial_header::read_reply(&mut rest)) {
        let read = &data[..data.len() - rest.len()];
        assert!(read.len() <= 2 + 255, "a reply read {} bytes", read.len());
        if std::str::from_utf8(&read[2..]).is_ok() {
            let mut again = Vec::new();
            futures::executor::block_on(dial_header::write_reply(&mut again, status, &msg))
                .expect("writing to memory");
            assert_eq!(again, read, "reply ({status:?}, {msg:?}) re-encodes differently");
        }
    }
}

/// How long a session may take to end once its peer's input has ended.
const SESSION_END: Duration = Duration::from_secs(10);
const KEY: &str = "c-fuzz";

/// Feeds a server session what a hostile agent sends and panics unless it ends cleanly (registry
/// entry removed, `Disconnected` event) within [`SESSION_END`] of the input's end, without a panic.
///
/// Input: the first byte chooses the shape. Bit 0 clear: the rest is the raw byte stream after the
/// `101` (WebSocket frames as the agent would write them, masking included). Bit 0 set: the rest is
/// records `tag (1) | length (2, big-endian) | payload`, each sent as one masked WebSocket frame by
/// `tag % 8`: binary, binary without FIN, continuation, ping, pong, text, close, or the payload as raw
/// bytes. Bit 1 set: the server dials through the session first (the reply is the agent's to forge).
pub fn session(data: &[u8]) {
    let Some((&shape, rest)) = data.split_first() else { return };
    let wire = if shape & 1 == 0 { rest.to_vec() } else { frames(rest) };
    let dial = shape & 2 != 0;
    runtime().block_on(async {
        tokio::time::timeout(SESSION_END, run_session(wire, dial))
            .await
            .unwrap_or_else(|_| panic!("the session did not end within {SESSION_END:?} of its input's end"));
    });
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
    })
}

/// Small limits, so that short inputs reach them.
fn config() -> SessionConfig {
    SessionConfig {
        max_streams: 4,
        reserved_streams: 1,
        max_buffered_bytes: 2 * 4 * 256 * 1024,
        frame_size: 1024,
        max_message_size: 4096,
        dial_reply_timeout: Duration::from_secs(5),
        ..SessionConfig::default()
    }
}

async fn run_session(wire: Vec<u8>, dial: bool) {
    let server = TunnelServer::new(config(), Metrics::unregistered()).expect("a valid session config");
    let mut events = server.subscribe();
    let (agent, raw) = tokio::io::duplex(64 * 1024);
    let io = server.transport().accept(Box::new(raw)).await.expect("the WebSocket transport accepts");
    let id = server.serve_session(KEY.to_owned(), io);
    let dialer = dial.then(|| {
        let server = server.clone();
        tokio::spawn(async move {
            if let Ok(mut stream) = server.dial(KEY, "tcp", "10.0.0.1:443").await {
                let mut buf = Vec::new();
                let _ = (&mut stream).take(1 << 20).read_to_end(&mut buf).await;
                buf.len()
            } else {
                0
            }
        })
    });
    let (mut from_server, mut to_server) = tokio::io::split(agent);
    if dial {
        // Let the server open its stream first, so that the input can answer on it (stream 2).
        let mut first = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_secs(1), from_server.read(&mut first)).await;
    }
    let drain = tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut tokio::io::sink()).await });
    // The server may close before it has read everything.
    let _ = to_server.write_all(&wire).await;
    let _ = to_server.shutdown().await;
    loop {
        match events.recv().await {
            Ok(SessionEvent::Disconnected { session_id, .. }) if session_id == id => break,
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => panic!("the event channel closed before the session ended"),
        }
    }
    assert!(!server.has_session(KEY), "an ended session is still registered");
    if let Some(dialer) = dialer {
        let read = dialer.await.expect("the dial task panicked");
        assert!(read <= wire.len(), "a stream yielded {read} bytes from {} bytes of input", wire.len());
    }
    drain.abort();
    server.shutdown(Duration::from_secs(1)).await;
}

/// Masked client frames from `tag | length | payload` records (see [`session`]).
fn frames(mut records: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let [tag, hi, lo, rest @ ..] = records {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
        let (payload, next) = rest.split_at(len);
        records = next;
        let (fin, opcode) = match tag % 8 {
            0 => (true, 0x2),
            1 => (false, 0x2),
            2 => (true, 0x0),
            3 => (true, 0x9),
            4 => (true, 0xA),
            5 => (true, 0x1),
            6 => (true, 0x8),
            _ => {
                out.extend_from_slice(payload);
                continue;
            }
        };
        frame(&mut out, fin, opcode, payload);
    }
    out
}

/// One WebSocket frame as a client writes it (RFC 6455 §5.2: masked).
pub(crate) fn frame(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8]) {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    out.push(if fin { 0x80 } else { 0 } | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}
