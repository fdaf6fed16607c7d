//! A server-side SPDY/3.1 session, as kubectl before 1.30 (and port-forward before 1.31) speaks it
//! after `Upgrade: SPDY/3.1`: streams opened by the client with SYN_STREAM carry a `streamtype`
//! header; header blocks are zlib-compressed with the SPDY/3 dictionary, one compression context per
//! direction for the whole connection. No flow control (kubectl's spdystream does not enforce it).

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const FLAG_FIN: u8 = 0x01;
/// Largest frame accepted from a client.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1): length-prefixed common
/// header names followed by common values.
static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505\
203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized\
403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable\
Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT\
chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,\
text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
    let mut d = Vec::with_capacity(1423);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TAIL.as_bytes());
    d
});

/// What the client did.
#[derive(Debug)]
pub(crate) enum Event {
    /// A new stream (already answered with SYN_REPLY).
    Open { id: u32, headers: HashMap<String, String> },
    /// Data on a stream; `fin` closes the client's side.
    Data { id: u32, data: Bytes, fin: bool },
    /// The client reset a stream.
    Reset { id: u32 },
}

enum Out {
    Reply(u32),
    Data(u32, Bytes, bool),
    Ping(u32),
    Reset(u32),
}

/// Sends frames on the session.
#[derive(Clone)]
pub(crate) struct Writer(mpsc::Sender<Out>);

impl Writer {
    /// Data on a stream; `fin` closes our side. Errors only when the connection is gone.
    pub(crate) async fn data(&self, id: u32, data: Bytes, fin: bool) -> Result<(), ()> {
        self.0.send(Out::Data(id, data, fin)).await.map_err(|_| ())
    }
    /// Resets a stream.
    pub(crate) async fn reset(&self, id: u32) {
        let _ = self.0.send(Out::Reset(id)).await;
    }
}

fn control(ty: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&[0x80, 0x03]);
    f.extend_from_slice(&ty.to_be_bytes());
    let len = payload.len() as u32;
    f.push(flags);
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

struct HeaderCompressor(Compress);

impl HeaderCompressor {
    fn new() -> Self {
        let mut c = Compress::new(Compression::default(), true);
        let _ = c.set_dictionary(&DICTIONARY);
        HeaderCompressor(c)
    }
    fn block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() * 2 + 128);
        let start_in = self.0.total_in();
        loop {
            let consumed = (self.0.total_in() - start_in) as usize;
            if self.0.compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync).is_err() {
                break;
            }
            if (self.0.total_in() - start_in) as usize == raw.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
        out
    }
}

struct HeaderDecompressor(Decompress);

impl HeaderDecompressor {
    fn block(&mut self, input: &[u8]) -> Option<HashMap<String, String>> {
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        let start = self.0.total_in();
        loop {
            let consumed = (self.0.total_in() - start) as usize;
            match self.0.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync) {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0.set_dictionary(&DICTIONARY).ok()?;
                    continue;
                }
                Err(_) => return None,
            }
            if (self.0.total_in() - start) as usize >= input.len() && out.len() < out.capacity() {
                break;
            }
            if out.len() > MAX_FRAME {
                return None;
            }
            out.reserve(out.capacity());
        }
        parse_headers(&out)
    }
}

fn parse_headers(b: &[u8]) -> Option<HashMap<String, String>> {
    let rd = |i: usize| -> Option<u32> { Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?)) };
    let n = rd(0)? as usize;
    let mut i = 4;
    let mut h = HashMap::new();
    for _ in 0..n.min(1024) {
        let kl = rd(i)? as usize;
        let k = b.get(i + 4..i + 4 + kl)?;
        i += 4 + kl;
        let vl = rd(i)? as usize;
        let v = b.get(i + 4..i + 4 + vl)?;
        i += 4 + vl;
        h.insert(String::from_utf8_lossy(k).to_lowercase(), String::from_utf8_lossy(v).into_owned());
    }
    Some(h)
}

async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<Out>) {
    let mut comp = HeaderCompressor::new();
    while let Some(m) = rx.recv().await {
        let frame = match m {
            Out::Reply(id) => {
                let mut p = id.to_be_bytes().to_vec();
                p.extend_from_slice(&comp.block(&[]));
                control(SYN_REPLY, 0, &p)
            }
            Out::Data(id, data, fin) => {
                let mut f = Vec::with_capacity(8 + data.len());
                f.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
                f.push(if fin { FLAG_FIN } else { 0 });
                f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                f.extend_from_slice(&data);
                f
            }
            Out::Ping(id) => control(PING, 0, &id.to_be_bytes()),
            Out::Reset(id) => {
                let mut p = id.to_be_bytes().to_vec();
                p.extend_from_slice(&5u32.to_be_bytes());
                control(RST_STREAM, 0, &p)
            }
        };
        if w.write_all(&frame).await.is_err() || w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(mut r: R, out: mpsc::Sender<Out>, events: mpsc::Sender<Event>) {
    let mut dec = HeaderDecompressor(Decompress::new(true));
    let mut head = [0u8; 8];
    loop {
        if r.read_exact(&mut head).await.is_err() {
            return;
        }
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if len > MAX_FRAME {
            return;
        }
        let mut payload = vec![0u8; len];
        if r.read_exact(&mut payload).await.is_err() {
            return;
        }
        let fin = flags & FLAG_FIN != 0;
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes(head[0..4].try_into().unwrap_or_default()) & 0x7fff_ffff;
            if events.send(Event::Data { id, data: Bytes::from(payload), fin }).await.is_err() {
                return;
            }
            continue;
        }
        let ty = u16::from_be_bytes([head[2], head[3]]);
        let id =
            payload.get(0..4).map(|b| u32::from_be_bytes(b.try_into().unwrap_or_default()) & 0x7fff_ffff);
        match ty {
            SYN_STREAM if payload.len() >= 10 => {
                let Some(headers) = dec.block(&payload[10..]) else { return };
                let id = id.unwrap_or(0);
                if out.send(Out::Reply(id)).await.is_err() {
                    return;
                }
                if events.send(Event::Open { id, headers }).await.is_err() {
                    return;
                }
            }
            HEADERS if payload.len() >= 4 && dec.block(&payload[4..]).is_none() => return,
            RST_STREAM => {
                let sent = events.send(Event::Reset { id: id.unwrap_or(0) }).await;
                if sent.is_err() {
                    return;
                }
            }
            PING => {
                let _ = out.send(Out::Ping(id.unwrap_or(0))).await;
            }
            GOAWAY => return,
            _ => {}
        }
    }
}

/// Starts a session on an upgraded connection: returns the client's events and a writer.
pub(crate) fn start<IO>(io: IO) -> (mpsc::Receiver<Event>, Writer)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::channel(64);
    let (ev_tx, ev_rx) = mpsc::channel(64);
    tokio::spawn(write_loop(w, out_rx));
    tokio::spawn(read_loop(r, out_tx.clone(), ev_tx));
    (ev_rx, Writer(out_tx))
}

/// Client-side helpers used by the tests: they speak the same framing.
#[cfg(test)]
pub(crate) mod client {
    use super::*;

    pub(crate) fn syn_stream(comp: &mut Compressor, id: u32, headers: &[(&str, &str)], fin: bool) -> Vec<u8> {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&comp.0.block(headers));
        control(SYN_STREAM, if fin { FLAG_FIN } else { 0 }, &p)
    }

    pub(crate) struct Compressor(HeaderCompressor);
    impl Compressor {
        pub(crate) fn new() -> Self {
            Compressor(HeaderCompressor::new())
        }
    }

    pub(crate) fn dictionary_len() -> usize {
        DICTIONARY.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(client::dictionary_len(), 1423);
        assert_eq!(&DICTIONARY[..11], b"\0\0\0\x07options");
        assert!(DICTIONARY.ends_with(b",enq=0."));
    }

    #[test]
    fn header_blocks_round_trip_across_frames() {
        let mut c = HeaderCompressor::new();
        let mut d = HeaderDecompressor(Decompress::new(true));
        for i in 0..3 {
            let v = format!("stdout{i}");
            let b = c.block(&[("streamtype", &v), ("x", "y")]);
            let h = d.block(&b).unwrap();
            assert_eq!(h["streamtype"], v);
        }
    }

    #[tokio::test]
    async fn session_replies_and_delivers_data() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (mut events, writer) = start(a);
        let (mut cr, mut cw) = tokio::io::split(b);
        let mut comp = client::Compressor::new();
        cw.write_all(&client::syn_stream(&mut comp, 1, &[("streamtype", "stdout")], false)).await.unwrap();
        match events.recv().await.unwrap() {
            Event::Open { id, headers, .. } => {
                assert_eq!(id, 1);
                assert_eq!(headers["streamtype"], "stdout");
            }
            e => panic!("unexpected {e:?}"),
        }
        let mut head = [0u8; 8];
        cr.read_exact(&mut head).await.unwrap();
        assert_eq!(u16::from_be_bytes([head[2], head[3]]), SYN_REPLY);
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut rest = vec![0; len];
        cr.read_exact(&mut rest).await.unwrap();
        writer.data(1, Bytes::from_static(b"hi"), true).await.unwrap();
        cr.read_exact(&mut head).await.unwrap();
        assert_eq!(head[4], FLAG_FIN);
        let mut data = [0u8; 2];
        cr.read_exact(&mut data).await.unwrap();
        assert_eq!(&data, b"hi");
    }
}
