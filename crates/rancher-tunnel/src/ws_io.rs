//! A WebSocket (RFC 6455) as a byte stream, with keepalive pings and dead-peer detection.
//!
//! The framing is done here rather than by a WebSocket library because a tunnel session needs
//! little of one — binary data frames and the three control frames — and an idle session should
//! hold no buffers: a library's read buffer and write buffer were 6 KiB of every idle session, and
//! a server holds one session per cluster. Data frames are read straight into the caller's buffer
//! (their payload is a byte stream: message boundaries carry nothing), and the write buffers exist
//! only while there is something to send.
//!
//! Writes are gathered into one binary frame per flush, at most `write_chunk` bytes each. Pings are
//! sent from the read path too, so they never wait behind queued stream data.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Liveness settings for [`WsIo`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keepalive {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

/// Which end of the WebSocket this is: a client masks what it sends, a server requires masking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Client,
    Server,
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Longest frame header: 2 bytes, a 64-bit length and a masking key.
const MAX_HEADER: usize = 14;
/// Longest control-frame payload (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;
/// Close status "normal closure".
const CLOSE_NORMAL: u16 = 1000;

/// What the read side is in the middle of.
enum Rx {
    /// Reading a frame header: `len` of the bytes known so far.
    Header { buf: [u8; MAX_HEADER], len: usize },
    /// Inside a data frame's payload.
    Data { remaining: u64, mask: Option<[u8; 4]>, phase: usize },
    /// Reading a control frame's payload.
    Control { opcode: u8, buf: [u8; MAX_CONTROL], len: usize, want: usize, mask: Option<[u8; 4]> },
    /// The peer sent a close frame (or ended the stream between frames).
    Closed,
}

impl Rx {
    fn header() -> Self {
        Rx::Header { buf: [0; MAX_HEADER], len: 0 }
    }
}

pub(crate) struct WsIo<S> {
    io: S,
    role: Role,
    /// Bytes the handshake read past its end: they come before anything read from `io`.
    pre: Bytes,
    rx: Rx,
    /// A fragmented message is open: the next data frame must be a continuation.
    in_message: bool,
    max_frame: u64,
    /// Framed bytes being written, from `out_pos`. Empty (unallocated) when nothing waits.
    out: Vec<u8>,
    out_pos: usize,
    /// Data gathered for the next binary frame, after a gap of [`MAX_HEADER`] bytes where its
    /// header goes. Empty (unallocated) when nothing is gathered.
    gather: Vec<u8>,
    write_chunk: usize,
    keepalive: Keepalive,
    tick: Pin<Box<Sleep>>,
    last_rx: Instant,
    ping_due: bool,
    /// The payload of the latest ping not answered yet (only the latest needs a pong).
    pong_due: Option<Vec<u8>>,
    /// A close frame to send: the status to echo (`None`: an empty close).
    close_due: Option<Option<u16>>,
    close_sent: bool,
    flush_due: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsIo<S> {
    /// A WebSocket over `io`, whose handshake is done; `pre` is what the handshake read past its
    /// end. Data frames longer than `max_frame` end the stream with an error.
    pub(crate) fn new(
        io: S,
        role: Role,
        pre: Bytes,
        max_frame: usize,
        write_chunk: usize,
        keepalive: Keepalive,
    ) -> Self {
        Self {
            io,
            role,
            // An empty `Bytes` may still hold the handshake's whole read buffer.
            pre: if pre.is_empty() { Bytes::new() } else { pre },
            rx: Rx::header(),
            in_message: false,
            max_frame: max_frame as u64,
            out: Vec::new(),
            out_pos: 0,
            gather: Vec::new(),
            write_chunk: write_chunk.max(1),
            keepalive,
            tick: Box::pin(tokio::time::sleep(keepalive.interval)),
            last_rx: Instant::now(),
            ping_due: false,
            pong_due: None,
            close_due: None,
            close_sent: false,
            flush_due: false,
        }
    }

    fn poll_read_io(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        poll_read_io(&mut self.pre, &mut self.io, cx, buf)
    }

    /// Writes out everything framed; the buffer is released once it is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
            self.flush_due = true;
        }
        self.out = Vec::new();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }

    /// Turns what was gathered into one binary frame to write. Only when nothing else waits to be
    /// written, so at most one frame of data is ever buffered beside the one being gathered.
    fn frame_gathered(&mut self) {
        debug_assert!(self.out.is_empty());
        let mut frame = std::mem::take(&mut self.gather);
        let payload = frame.len() - MAX_HEADER;
        let mut header = [0; MAX_HEADER];
        let mask = self.mask();
        let len = encode_header(&mut header, OP_BINARY, payload, mask);
        let start = MAX_HEADER - len;
        frame[start..MAX_HEADER].copy_from_slice(&header[..len]);
        if let Some(mask) = mask {
            apply_mask(&mut frame[MAX_HEADER..], mask, 0);
        }
        self.out = frame;
        self.out_pos = start;
    }

    /// Frames what was gathered, if anything, once what waits to be written is out.
    fn poll_frame_gathered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.gather.is_empty() {
            ready!(self.poll_drain(cx))?;
            self.frame_gathered();
        }
        Poll::Ready(Ok(()))
    }

    fn push_control(&mut self, opcode: u8, payload: &[u8]) {
        debug_assert!(payload.len() <= MAX_CONTROL);
        let mut header = [0; MAX_HEADER];
        let mask = self.mask();
        let len = encode_header(&mut header, opcode, payload.len(), mask);
        self.out.extend_from_slice(&header[..len]);
        let at = self.out.len();
        self.out.extend_from_slice(payload);
        if let Some(mask) = mask {
            apply_mask(&mut self.out[at..], mask, 0);
        }
    }

    /// Queues the close frame, with `code` as its status (`None`: an empty close); nothing is
    /// written after it.
    fn push_close(&mut self, code: Option<u16>) {
        let payload = code.map(u16::to_be_bytes);
        self.push_control(OP_CLOSE, payload.as_ref().map_or(&[][..], |p| &p[..]));
        self.close_sent = true;
    }

    fn mask(&self) -> Option<[u8; 4]> {
        (self.role == Role::Client).then(rand::random)
    }

    /// Keepalive and control frames: sends a due ping, pong or close once nothing else waits to
    /// be written, keeps writing what waits, and fails once the peer has been silent past the
    /// timeout. Only frames received count as life: a write that lands in the kernel's buffer
    /// proves nothing.
    fn poll_housekeeping(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while self.tick.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let silent = now.duration_since(self.last_rx);
            if silent >= self.keepalive.timeout {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("peer silent for {silent:?} (dead-peer timeout)"),
                ));
            }
            self.ping_due = true;
            self.tick.as_mut().reset(now + self.keepalive.interval);
        }
        if self.out.is_empty() && !self.close_sent {
            if let Some(payload) = self.pong_due.take() {
                self.push_control(OP_PONG, &payload);
            }
            if std::mem::take(&mut self.ping_due) {
                self.push_control(OP_PING, &[]);
            }
            if let Some(code) = self.close_due.take() {
                self.push_close(code);
            }
        }
        if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
            return Err(e);
        }
        if self.flush_due && self.out.is_empty() {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.flush_due = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
        }
        Ok(())
    }

    /// Reads the next frame header (or its rest); `Ok(false)` when the stream ended between frames.
    fn poll_header(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            let Rx::Header { buf, len } = &mut self.rx else { return Poll::Ready(Ok(true)) };
            let need = header_len(&buf[..*len]);
            if *len == need {
                let header = *buf;
                let header = &header[..need];
                self.last_rx = Instant::now();
                self.rx = self.parse(header)?;
                return Poll::Ready(Ok(true));
            }
            if ready!(poll_fill(&mut self.pre, &mut self.io, cx, buf, len, need))? == 0 {
                return Poll::Ready(if *len == 0 { Ok(false) } else { Err(ended_inside("a frame header")) });
            }
        }
    }

    /// Checks a complete frame header against what a tunnel peer may send.
    fn parse(&mut self, h: &[u8]) -> io::Result<Rx> {
        let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0F);
        if h[0] & 0x70 != 0 {
            return Err(invalid("WebSocket frame with reserved bits set (no extension was negotiated)"));
        }
        let masked = h[1] & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => return Err(invalid("unmasked WebSocket frame from a client")),
            (Role::Client, true) => return Err(invalid("masked WebSocket frame from a server")),
            _ => {}
        }
        let (len, at) = match h[1] & 0x7F {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => (u64::from_be_bytes(h[2..10].try_into().expect("8 bytes")), 10),
            n => (u64::from(n), 2),
        };
        let mask = masked.then(|| [h[at], h[at + 1], h[at + 2], h[at + 3]]);
        match opcode {
            OP_BINARY | OP_CONTINUATION => {
                if (opcode == OP_CONTINUATION) != self.in_message {
                    return Err(invalid(if self.in_message {
                        "new WebSocket message inside a fragmented one"
                    } else {
                        "WebSocket continuation frame without a message to continue"
                    }));
                }
                if len > self.max_frame {
                    return Err(invalid(format!(
                        "WebSocket frame too long: {len} bytes (the limit is {})",
                        self.max_frame
                    )));
                }
                self.in_message = !fin;
                Ok(Rx::Data { remaining: len, mask, phase: 0 })
            }
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || len > MAX_CONTROL as u64 {
                    return Err(invalid("fragmented or oversized WebSocket control frame"));
                }
                Ok(Rx::Control { opcode, buf: [0; MAX_CONTROL], len: 0, want: len as usize, mask })
            }
            OP_TEXT => Err(invalid("text WebSocket message on a tunnel session (only binary is allowed)")),
            other => Err(invalid(format!("unknown WebSocket opcode {other:#x}"))),
        }
    }

    /// Reads a control frame's payload and acts on it; `Ok(false)` when it was a close.
    fn poll_control(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            let Rx::Control { buf, len, want, .. } = &mut self.rx else { return Poll::Ready(Ok(true)) };
            if *len < *want {
                if ready!(poll_fill(&mut self.pre, &mut self.io, cx, buf, len, *want))? == 0 {
                    return Poll::Ready(Err(ended_inside("a control frame")));
                }
                continue;
            }
            let Rx::Control { opcode, mut buf, len, mask, .. } =
                std::mem::replace(&mut self.rx, Rx::header())
            else {
                unreachable!("matched above")
            };
            let payload = &mut buf[..len];
            if let Some(mask) = mask {
                apply_mask(payload, mask, 0);
            }
            self.last_rx = Instant::now();
            match opcode {
                OP_PING => self.pong_due = Some(payload.to_vec()),
                OP_PONG => {}
                _ => {
                    if payload.len() == 1 {
                        return Poll::Ready(Err(invalid("WebSocket close frame with a one-byte status")));
                    }
                    if !self.close_sent {
                        self.close_due = Some(payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]])));
                    }
                    self.rx = Rx::Closed;
                    return Poll::Ready(Ok(false));
                }
            }
            return Poll::Ready(Ok(true));
        }
    }
}

/// Reads into `buf` what the handshake read ahead (`pre`) first, then from `io`. A free function so
/// that a read can fill a buffer inside the reader's state.
fn poll_read_io<S: AsyncRead + Unpin>(
    pre: &mut Bytes,
    io: &mut S,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    if !pre.is_empty() {
        let n = pre.len().min(buf.remaining());
        buf.put_slice(&pre[..n]);
        pre.advance(n);
        if pre.is_empty() {
            *pre = Bytes::new();
        }
        return Poll::Ready(Ok(()));
    }
    Pin::new(io).poll_read(cx, buf)
}

/// Reads into `buf[*len..want]` once, advancing `len`; `Ok(0)` when the stream has ended.
fn poll_fill<S: AsyncRead + Unpin>(
    pre: &mut Bytes,
    io: &mut S,
    cx: &mut Context<'_>,
    buf: &mut [u8],
    len: &mut usize,
    want: usize,
) -> Poll<io::Result<usize>> {
    let mut rb = ReadBuf::new(&mut buf[*len..want]);
    ready!(poll_read_io(pre, io, cx, &mut rb))?;
    let got = rb.filled().len();
    *len += got;
    Poll::Ready(Ok(got))
}

fn ended_inside(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, format!("WebSocket stream ended inside {what}"))
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// How long the header that starts with `known` is (2 until its first two bytes are known).
fn header_len(known: &[u8]) -> usize {
    if known.len() < 2 {
        return 2;
    }
    let ext = match known[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if known[1] & 0x80 != 0 { 4 } else { 0 }
}

/// Writes a final frame's header into `out`; returns its length.
fn encode_header(out: &mut [u8; MAX_HEADER], opcode: u8, len: usize, mask: Option<[u8; 4]>) -> usize {
    out[0] = 0x80 | opcode;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut at = match len {
        0..=125 => {
            out[1] = mask_bit | len as u8;
            2
        }
        126..=0xFFFF => {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    if let Some(mask) = mask {
        out[at..at + 4].copy_from_slice(&mask);
        at += 4;
    }
    at
}

/// XORs `buf` with the masking key, `phase` bytes into the key's cycle, eight bytes at a time.
fn apply_mask(buf: &mut [u8], mask: [u8; 4], phase: usize) {
    let m: [u8; 4] = std::array::from_fn(|i| mask[(phase + i) % 4]);
    let wide = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut words = buf.chunks_exact_mut(8);
    for w in &mut words {
        let v = u64::from_ne_bytes((&*w).try_into().expect("8 bytes")) ^ wide;
        w.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.poll_housekeeping(cx)?;
        loop {
            match &mut this.rx {
                Rx::Closed => return Poll::Ready(Ok(())),
                Rx::Header { .. } => {
                    if !ready!(this.poll_header(cx))? {
                        this.rx = Rx::Closed;
                        return Poll::Ready(Ok(()));
                    }
                }
                Rx::Control { .. } => {
                    if !ready!(this.poll_control(cx))? {
                        // Answer the close now if the write side is free (best effort: the peer
                        // is going away either way).
                        let _ = this.poll_housekeeping(cx);
                        return Poll::Ready(Ok(()));
                    }
                    // A pong goes out now, not with the next frame to arrive.
                    this.poll_housekeeping(cx)?;
                }
                Rx::Data { remaining: 0, .. } => this.rx = Rx::header(),
                Rx::Data { remaining, mask, phase } => {
                    if buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let (remaining, mask, phase) = (*remaining, *mask, *phase);
                    let want = usize::try_from(remaining).unwrap_or(usize::MAX).min(buf.remaining());
                    let dst = buf.initialize_unfilled_to(want);
                    let mut rb = ReadBuf::new(dst);
                    ready!(this.poll_read_io(cx, &mut rb))?;
                    let got = rb.filled().len();
                    if got == 0 {
                        return Poll::Ready(Err(ended_inside("a frame")));
                    }
                    if let Some(mask) = mask {
                        apply_mask(&mut buf.initialize_unfilled_to(got)[..got], mask, phase);
                    }
                    buf.advance(got);
                    this.last_rx = Instant::now();
                    this.rx = Rx::Data { remaining: remaining - got as u64, mask, phase: (phase + got) % 4 };
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.poll_housekeeping(cx)?;
        if this.close_sent {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed")));
        }
        if this.gather.len() >= MAX_HEADER + this.write_chunk {
            ready!(this.poll_drain(cx))?;
            this.frame_gathered();
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
        }
        if this.gather.is_empty() {
            this.gather.reserve_exact(MAX_HEADER + buf.len().min(this.write_chunk));
            this.gather.resize(MAX_HEADER, 0);
        }
        let n = buf.len().min(MAX_HEADER + this.write_chunk - this.gather.len());
        this.gather.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.poll_housekeeping(cx)?;
        ready!(this.poll_frame_gathered(cx))?;
        ready!(this.poll_drain(cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        this.flush_due = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_frame_gathered(cx))?;
        ready!(this.poll_drain(cx))?;
        if !this.close_sent {
            let code = this.close_due.take().unwrap_or(Some(CLOSE_NORMAL));
            this.push_close(code);
        }
        ready!(this.poll_drain(cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        match ready!(Pin::new(&mut this.io).poll_shutdown(cx)) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
#[path = "ws_io_tests.rs"]
mod tests;
