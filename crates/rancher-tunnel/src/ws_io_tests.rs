use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

use super::*;

const KA: Keepalive = Keepalive { interval: Duration::from_secs(15), timeout: Duration::from_secs(45) };

fn pair(write_chunk: usize) -> (WsIo<DuplexStream>, WsIo<DuplexStream>) {
    let (a, b) = duplex(256 * 1024);
    (
        WsIo::new(a, Role::Client, Bytes::new(), 1 << 20, write_chunk, KA),
        WsIo::new(b, Role::Server, Bytes::new(), 1 << 20, write_chunk, KA),
    )
}

/// A frame as a peer would write it, masked with `mask` when given.
fn frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut header = [0; MAX_HEADER];
    let len = encode_header(&mut header, b0 & 0x0F, payload.len(), mask);
    header[0] = b0;
    let mut out = header[..len].to_vec();
    let at = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[at..], mask, 0);
    }
    out
}

#[test]
fn masking_matches_the_bytewise_definition_at_every_phase() {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let data: Vec<u8> = (0..=255).collect();
    for phase in 0..8 {
        for len in [0, 1, 7, 8, 9, 31, 256] {
            let mut fast = data[..len].to_vec();
            apply_mask(&mut fast, mask, phase);
            let slow: Vec<u8> =
                data[..len].iter().enumerate().map(|(i, b)| b ^ mask[(phase + i) % 4]).collect();
            assert_eq!(fast, slow, "phase {phase}, {len} bytes");
        }
    }
}

#[tokio::test]
async fn bytes_cross_both_ways_in_chunks_and_an_idle_stream_keeps_no_buffers() {
    let (mut client, mut server) = pair(1000);
    let big: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    let (c, s) = tokio::join!(
        async {
            client.write_all(&big).await.unwrap();
            client.flush().await.unwrap();
            let mut back = vec![0; 5];
            client.read_exact(&mut back).await.unwrap();
            (client, back)
        },
        async {
            let mut got = vec![0; big.len()];
            server.read_exact(&mut got).await.unwrap();
            server.write_all(b"hello").await.unwrap();
            server.flush().await.unwrap();
            (server, got)
        }
    );
    let ((client, back), (server, got)) = (c, s);
    assert_eq!(got, big, "the client's masked frames arrive unmasked");
    assert_eq!(back, b"hello");
    for (who, io) in [("client", &client), ("server", &server)] {
        assert_eq!(io.out.capacity() + io.gather.capacity(), 0, "{who} holds write buffers while idle");
    }
}

#[tokio::test]
async fn fragments_pings_and_what_the_handshake_read_ahead_are_read_in_order() {
    let (mut raw, peer) = duplex(4096);
    let mask = Some([1, 2, 3, 4]);
    // The handshake had already read the first frame; the stream goes on with a message in two
    // fragments and a ping between them, then an empty close.
    let pre = Bytes::from(frame(0x82, b"ahead ", mask));
    let mut wire = frame(0x02, b"frag", mask);
    wire.extend(frame(0x89, b"are you there", mask));
    wire.extend(frame(0x80, b"ments", mask));
    wire.extend(frame(0x88, &1000u16.to_be_bytes(), mask));
    raw.write_all(&wire).await.unwrap();
    let mut server = WsIo::new(peer, Role::Server, pre, 1 << 20, 1024, KA);
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ahead fragments");
    // The ping was answered with its payload, and the close with the same status.
    let mut answers = vec![0; 64];
    let n = raw.read(&mut answers).await.unwrap();
    let mut expected = frame(0x8A, b"are you there", None);
    expected.extend(frame(0x88, &1000u16.to_be_bytes(), None));
    assert_eq!(&answers[..n], &expected[..]);
}

#[tokio::test]
async fn shutdown_sends_a_close_and_the_peer_reads_the_end() {
    let (mut client, mut server) = pair(1024);
    client.write_all(b"last words").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last words");
    let err = client.write_all(b"more").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
}

#[tokio::test]
async fn frames_a_tunnel_peer_may_not_send_end_the_stream_with_the_reason() {
    let mask = Some([9, 9, 9, 9]);
    let cases: Vec<(Role, Vec<u8>, &str)> = vec![
        (Role::Server, frame(0x82, b"x", None), "unmasked"),
        (Role::Client, frame(0x82, b"x", mask), "masked WebSocket frame from a server"),
        (Role::Server, frame(0x81, b"text", mask), "text WebSocket message"),
        (Role::Server, frame(0xC2, b"x", mask), "reserved bits"),
        (Role::Server, frame(0x80, b"x", mask), "continuation frame without a message"),
        (
            Role::Server,
            [frame(0x02, b"a", mask), frame(0x82, b"b", mask)].concat(),
            "inside a fragmented one",
        ),
        (Role::Server, frame(0x09, b"", mask), "fragmented or oversized WebSocket control frame"),
        (Role::Server, frame(0x89, &[0; 126], mask), "fragmented or oversized WebSocket control frame"),
        (Role::Server, frame(0x83, b"", mask), "unknown WebSocket opcode 0x3"),
        (Role::Server, frame(0x88, &[3], mask), "one-byte status"),
        (Role::Server, frame(0x82, &[0; 2000], mask), "too long"),
        (Role::Server, frame(0x82, b"abc", mask)[..5].to_vec(), "ended inside a frame"),
        (Role::Server, vec![0x82], "ended inside a frame header"),
    ];
    for (role, wire, expected) in cases {
        let (mut raw, peer) = duplex(8192);
        raw.write_all(&wire).await.unwrap();
        drop(raw);
        let mut io = WsIo::new(peer, role, Bytes::new(), 1024, 1024, KA);
        let err = io.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert!(err.to_string().contains(expected), "{expected}: {err}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_dead_after_the_timeout_and_pings_go_out_before() {
    let (mut raw, peer) = duplex(4096);
    let mut io = WsIo::new(peer, Role::Server, Bytes::new(), 1024, 1024, KA);
    let err = io.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    let mut pings = vec![0; 64];
    let n = raw.read(&mut pings).await.unwrap();
    assert_eq!(
        &pings[..n],
        &[frame(0x89, b"", None), frame(0x89, b"", None)].concat()[..],
        "pings at 15 s and 30 s"
    );
}
