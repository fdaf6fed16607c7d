use std::collections::HashMap;
use std::future::poll_fn;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::frame::{ACK, FIN, GO_AWAY_NORMAL, GO_AWAY_PROTOCOL_ERROR, HEADER_LEN, Header, Kind, RST, SYN};
use super::*;

const CFG: Config = Config { max_streams: 8, frame_size: 16 * 1024, max_queued: 64 * 1024 };
const LONG: Duration = Duration::from_secs(10);

type Inbound = tokio::sync::mpsc::UnboundedReceiver<io::Result<Stream>>;

/// Drives `conn` on a task of its own, sending the streams the peer opens to the returned channel.
fn drive(mut conn: Connection) -> Inbound {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(next) = poll_fn(|cx| conn.poll_next_inbound(cx)).await {
            let failed = next.is_err();
            if tx.send(next).is_err() || failed {
                break;
            }
        }
    });
    rx
}

/// A server (opens streams) and a client session over one in-memory pipe; the client is driven.
fn pair() -> (Connection, Inbound) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = Connection::new(Box::new(a), CFG, Mode::Server);
    let client = Connection::new(Box::new(b), CFG, Mode::Client);
    (server, drive(client))
}

/// [`pair`] with the server driven too: its opener, the client's inbound streams, and the server's
/// (kept: its driver stops at the first it could not hand over).
fn driven_pair() -> (Arc<Shared>, Inbound, Inbound) {
    let (server, inbound) = pair();
    let shared = server.shared().clone();
    (shared, inbound, drive(server))
}

async fn next_inbound(rx: &mut Inbound) -> Stream {
    tokio::time::timeout(LONG, rx.recv()).await.expect("a stream in time").expect("the driver runs").unwrap()
}

/// Bytes go both ways on a stream one end opened; each direction ends on its own.
#[tokio::test]
async fn a_stream_carries_bytes_both_ways_and_half_closes() {
    let (shared, mut inbound, _server) = driven_pair();
    let mut ours = shared.open().unwrap();
    assert_eq!(ours.id() % 2, 0, "the server numbers its streams even");
    ours.write_all(b"hello").await.unwrap();
    ours.shutdown().await.unwrap();
    let mut theirs = next_inbound(&mut inbound).await;
    let mut got = String::new();
    theirs.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "hello", "read to the end of the server's direction");
    theirs.write_all(b"still open this way").await.unwrap();
    drop(theirs);
    let mut back = String::new();
    ours.read_to_string(&mut back).await.unwrap();
    assert_eq!(back, "still open this way", "dropped after the peer's end: our read ends cleanly");
}

/// A writer stops at the end of its credit (256 KiB) until the reader reads; then all of it arrives
/// in order.
#[tokio::test]
async fn a_writer_waits_for_credit_and_nothing_is_lost() {
    let (shared, mut inbound, _server) = driven_pair();
    let mut ours = shared.open().unwrap();
    ours.write_all(b"x").await.unwrap();
    let mut theirs = next_inbound(&mut inbound).await;
    let data: Vec<u8> = (0..WINDOW as usize * 3).map(|i| (i % 251) as u8).collect();
    let writing = tokio::spawn(async move {
        ours.write_all(&data).await.unwrap();
        ours.shutdown().await.unwrap();
        (ours, data)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!writing.is_finished(), "three windows cannot be written while nobody reads");
    let mut got = Vec::new();
    tokio::time::timeout(LONG, theirs.read_to_end(&mut got)).await.unwrap().unwrap();
    let (_ours, data) = writing.await.unwrap();
    assert_eq!(got[0], b'x');
    assert!(got[1..] == data[..], "every byte, in order");
}

/// Dropping a stream the peer still writes to resets it: the peer reads what was sent before,
/// then the reset, and its writes fail instead of waiting for credit that will not come.
#[tokio::test]
async fn a_dropped_stream_is_reset_after_what_it_sent() {
    let (shared, mut inbound, _server) = driven_pair();
    let mut ours = shared.open().unwrap();
    ours.write_all(b"bye").await.unwrap();
    let mut theirs = next_inbound(&mut inbound).await;
    drop(ours);
    let mut got = [0; 3];
    theirs.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"bye");
    let err = theirs.read(&mut [0; 8]).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    let err = theirs.write_all(&[0; 1024]).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
}

/// The opener keeps to the session's limit; the streams it holds carry on.
#[tokio::test]
async fn the_opener_keeps_to_the_stream_limit() {
    let (shared, mut inbound, _server) = driven_pair();
    let mut opened: Vec<Stream> = (0..CFG.max_streams).map(|_| shared.open().unwrap()).collect();
    let err = shared.open().unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    opened[0].write_all(b"?").await.unwrap();
    let mut first = next_inbound(&mut inbound).await;
    let mut got = [0; 1];
    first.read_exact(&mut got).await.unwrap();
    first.write_all(b"!").await.unwrap();
    opened[0].read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"!");
    drop(opened.pop());
    shared.open().expect("a dropped stream frees its place");
}

fn frame(kind: Kind, flags: u16, stream: u32, body: &[u8], len: Option<u32>) -> Vec<u8> {
    let mut out = Vec::new();
    Header::new(kind, flags, stream, len.unwrap_or(body.len() as u32)).encode_into(&mut out);
    out.extend_from_slice(body);
    out
}

/// Reads frames from a raw peer's end until one matches.
async fn read_until(raw: &mut (impl AsyncRead + Unpin), want: impl Fn(&Header) -> bool) -> Header {
    tokio::time::timeout(LONG, async {
        loop {
            let mut h = [0; HEADER_LEN];
            raw.read_exact(&mut h).await.unwrap();
            let h = Header::decode(&h).unwrap();
            let mut body = vec![0; h.body_len()];
            raw.read_exact(&mut body).await.unwrap();
            if want(&h) {
                return h;
            }
        }
    })
    .await
    .expect("the frame in time")
}

/// Against raw frames: a ping is answered, a stream opened past the limit is reset, and data past
/// a stream's credit ends the session with a reason and a go-away.
#[tokio::test]
async fn a_peer_that_breaks_the_protocol_ends_only_with_a_reason() {
    let (ours, mut raw) = tokio::io::duplex(1024 * 1024);
    let cfg = Config { max_streams: 1, ..CFG };
    let mut inbound = drive(Connection::new(Box::new(ours), cfg, Mode::Client));
    raw.write_all(&frame(Kind::Ping, SYN, 0, &[], Some(4242))).await.unwrap();
    let pong = read_until(&mut raw, |h| h.kind == Kind::Ping).await;
    assert_eq!((pong.flags, pong.len), (ACK, 4242));

    raw.write_all(&frame(Kind::WindowUpdate, SYN, 2, &[], Some(0))).await.unwrap();
    raw.write_all(&frame(Kind::WindowUpdate, SYN, 4, &[], Some(0))).await.unwrap();
    let _kept = next_inbound(&mut inbound).await;
    let reset = read_until(&mut raw, |h| h.has(RST)).await;
    assert_eq!(reset.stream, 4, "the stream past the limit");

    raw.write_all(&frame(Kind::Data, SYN, 1, b"odd", None)).await.unwrap();
    let err = tokio::time::timeout(LONG, inbound.recv()).await.unwrap().unwrap().unwrap_err();
    assert!(err.to_string().contains("a number of ours"), "{err}");
    let bye = read_until(&mut raw, |h| h.kind == Kind::GoAway).await;
    assert_eq!(bye.len, GO_AWAY_PROTOCOL_ERROR);
}

#[tokio::test]
async fn data_past_a_streams_credit_ends_the_session() {
    let (ours, mut raw) = tokio::io::duplex(1024 * 1024);
    let mut inbound = drive(Connection::new(Box::new(ours), CFG, Mode::Client));
    raw.write_all(&frame(Kind::WindowUpdate, SYN, 2, &[], Some(0))).await.unwrap();
    let mut stream = next_inbound(&mut inbound).await;
    let chunk = vec![7; 64 * 1024];
    for _ in 0..4 {
        raw.write_all(&frame(Kind::Data, 0, 2, &chunk, None)).await.unwrap();
    }
    raw.write_all(&frame(Kind::Data, 0, 2, b"!", None)).await.unwrap();
    let err = tokio::time::timeout(LONG, inbound.recv()).await.unwrap().unwrap().unwrap_err();
    assert!(err.to_string().contains("credit"), "{err}");
    // What arrived within the credit is still the stream's; then it learns the session ended.
    let mut got = vec![0; 4 * 64 * 1024];
    stream.read_exact(&mut got).await.unwrap();
    let err = stream.read(&mut [0; 1]).await.unwrap_err();
    assert!(err.to_string().contains("credit"), "{err}");
}

/// When the driver goes, streams waiting to read fail instead of waiting for good, and no
/// stream can be opened.
#[tokio::test]
async fn streams_fail_once_their_session_is_gone() {
    let (server, _inbound) = pair();
    let shared = server.shared().clone();
    let mut stream = shared.open().unwrap();
    let reading = tokio::spawn(async move { stream.read(&mut [0; 8]).await });
    tokio::task::yield_now().await;
    drop(server);
    let read = tokio::time::timeout(LONG, reading).await.expect("the read ends").unwrap();
    assert_eq!(read.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
    assert!(shared.open().is_err());
}

/// A closed session says goodbye: the peer's driver ends as "peer closed the session", and the
/// peer's streams fail their reads.
#[tokio::test]
async fn a_close_reaches_the_peer() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let mut server = Connection::new(Box::new(a), CFG, Mode::Server);
    let mut client = Connection::new(Box::new(b), CFG, Mode::Client);
    let mut ours = server.shared().open().unwrap();
    ours.write_all(b"x").await.unwrap();
    let mut theirs = poll_fn(|cx| client.poll_next_inbound(cx)).await.unwrap().unwrap();
    poll_fn(|cx| server.poll_close(cx)).await.unwrap();
    let end = tokio::time::timeout(LONG, poll_fn(|cx| client.poll_next_inbound(cx))).await.unwrap();
    let err = end.expect("a go-away is an end with a reason").unwrap_err();
    assert!(err.to_string().contains("peer closed the session"), "{err}");
    let mut got = [0; 1];
    theirs.read_exact(&mut got).await.unwrap();
    assert!(theirs.read(&mut got).await.is_err(), "after what was sent, the end of the session");
}

/// The wire format is yamux's: a yamux client (the `yamux` crate) takes our streams and echoes
/// them, across several frames and window updates.
#[tokio::test]
async fn a_yamux_peer_understands_us() {
    use futures::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_util::compat::TokioAsyncReadCompatExt;

    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = Connection::new(Box::new(a), CFG, Mode::Server);
    let shared = server.shared().clone();
    let _server = drive(server);
    let mut peer = yamux::Connection::new(b.compat(), yamux::Config::default(), yamux::Mode::Client);
    tokio::spawn(async move {
        while let Some(Ok(mut s)) = poll_fn(|cx| peer.poll_next_inbound(cx)).await {
            tokio::spawn(async move {
                let mut buf = vec![0; 8192];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => s.write_all(&buf[..n]).await.unwrap(),
                    }
                }
                let _ = s.close().await;
            });
        }
    });
    let data: Vec<u8> = (0..WINDOW as usize * 2 + 123).map(|i| (i % 253) as u8).collect();
    let mut stream = shared.open().unwrap();
    let (mut r, mut w) = tokio::io::split(&mut stream);
    let sent = data.clone();
    let (written, got) = tokio::join!(
        async move {
            w.write_all(&sent).await.unwrap();
            w.shutdown().await.unwrap();
        },
        async move {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            got
        }
    );
    let () = written;
    assert!(got == data, "{} bytes echoed of {}", got.len(), data.len());
}

/// Forty writers held back by a transport nobody reads (the queue full, most of them waiting
/// for room): half of them give up while waiting, and the other half all finish once the
/// transport is read, every byte and every end accounted for. The queue has room for one frame,
/// so one writer is woken per batch: one woken that gave up must not leave the rest waiting.
#[tokio::test]
async fn writers_held_back_by_a_full_transport_all_finish() {
    const WRITERS: usize = 40;
    const EACH: usize = 48 * 1024;
    let (ours, mut raw) = tokio::io::duplex(16 * 1024);
    let cfg = Config { max_streams: WRITERS, max_queued: CFG.frame_size, ..CFG };
    let server = Connection::new(Box::new(ours), cfg, Mode::Server);
    let shared = server.shared().clone();
    let _server = drive(server);
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let mut s = shared.open().unwrap();
        writers.push(tokio::spawn(async move {
            s.write_all(&[s.id() as u8; EACH]).await.unwrap();
            s.shutdown().await.unwrap();
            s.id()
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(writers.iter().all(|w| !w.is_finished()), "the transport holds them back");
    let (gave_up, kept): (Vec<_>, Vec<_>) = writers.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, w) in &gave_up {
        w.abort();
    }
    let mut data = HashMap::<u32, usize>::new();
    let mut ended = Vec::new();
    tokio::time::timeout(LONG, async {
        while ended.len() < kept.len() {
            let mut h = [0; HEADER_LEN];
            raw.read_exact(&mut h).await.unwrap();
            let h = Header::decode(&h).unwrap();
            let mut body = vec![0; h.body_len()];
            raw.read_exact(&mut body).await.unwrap();
            assert!(body.iter().all(|&b| b == h.stream as u8), "each stream's own bytes");
            *data.entry(h.stream).or_default() += body.len();
            if h.has(FIN) {
                ended.push(h.stream);
            }
        }
    })
    .await
    .expect("every writer that kept waiting gets through");
    for (_, w) in kept {
        let id = tokio::time::timeout(LONG, w).await.expect("the writer finishes").unwrap();
        assert_eq!(data[&id], EACH, "stream {id}");
    }
}

/// A peer that floods pings and never reads gets its answers queued only up to a bound: the
/// driver stops reading it until they have gone out.
#[tokio::test]
async fn a_peer_that_does_not_read_cannot_pile_up_answers() {
    let (ours, raw) = tokio::io::duplex(4 * 1024);
    let (mut raw_read, mut raw_write) = tokio::io::split(raw);
    let conn = Connection::new(Box::new(ours), CFG, Mode::Client);
    let shared = conn.shared().clone();
    let _inbound = drive(conn);
    let flood = tokio::spawn(async move {
        let ping = frame(Kind::Ping, SYN, 0, &[], Some(7));
        for _ in 0..100_000 {
            if raw_write.write_all(&ping).await.is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!flood.is_finished(), "the flood is held back, not read into answers");
    // Twice the queue's limit, and the answers to what one read brought in past it.
    let queued = shared.state().out.len();
    assert!(queued <= 2 * CFG.max_queued + 32 * 1024, "{queued} bytes of answers queued");
    // Once the peer reads, the session carries on.
    let pong = read_until(&mut raw_read, |h| h.kind == Kind::Ping).await;
    assert_eq!((pong.flags, pong.len), (ACK, 7));
    flood.abort();
}

/// Small payloads are copied together (a slice would keep the driver's whole read buffer alive for
/// a byte); large ones are kept as slices; a reader gets them all in order.
#[test]
fn small_payloads_are_copied_and_large_ones_sliced_in_order() {
    let mut s = StreamState::new();
    let mut read_buffer = BytesMut::with_capacity(64 * 1024);
    read_buffer.extend_from_slice(&[1; 64 * 1024]);
    for _ in 0..1000 {
        s.receive(BytesMut::from(&b"a"[..]));
    }
    assert!(s.recv.is_empty(), "a thousand one-byte frames hold no read buffer");
    assert_eq!(s.tail.len(), 1000);
    s.receive(read_buffer.split_to(32 * 1024));
    s.receive(BytesMut::from(&b"z"[..]));
    assert_eq!(s.recv.len(), 2, "the copied bytes, then the large payload");
    let mut out = vec![0; 40 * 1024];
    let mut buf = tokio::io::ReadBuf::new(&mut out);
    let n = s.read_into(&mut buf);
    assert_eq!(n, 1000 + 32 * 1024 + 1);
    assert!(out[..1000].iter().all(|&b| b == b'a'));
    assert!(out[1000..1000 + 32 * 1024].iter().all(|&b| b == 1));
    assert_eq!(out[n - 1], b'z');
}

/// A peer's goodbye ends the session with its reason, and is not answered as a protocol error.
#[tokio::test]
async fn a_peers_goodbye_ends_the_session_without_an_error_answer() {
    let (ours, mut raw) = tokio::io::duplex(64 * 1024);
    let mut inbound = drive(Connection::new(Box::new(ours), CFG, Mode::Client));
    raw.write_all(&frame(Kind::GoAway, 0, 0, &[], Some(GO_AWAY_NORMAL))).await.unwrap();
    let err = tokio::time::timeout(LONG, inbound.recv()).await.unwrap().unwrap().unwrap_err();
    assert!(err.to_string().contains("peer closed the session"), "{err}");
    // The driver is gone: the transport closes, and nothing it sent was a go-away.
    let mut rest = Vec::new();
    tokio::time::timeout(LONG, raw.read_to_end(&mut rest)).await.expect("the transport closes").unwrap();
    let mut at = 0;
    while at + HEADER_LEN <= rest.len() {
        let h = Header::decode(&rest[at..]).unwrap();
        assert_ne!(h.kind, Kind::GoAway, "answered with {h:?}");
        at += HEADER_LEN + h.body_len();
    }
}
