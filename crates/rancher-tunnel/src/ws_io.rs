//! A WebSocket as a byte stream, with keepalive pings and dead-peer detection.
//!
//! Writes are coalesced into one binary message per flush (yamux writes a frame's header and
//! body separately); pings are WebSocket control frames sent from the read path, so they never
//! wait behind queued stream data inside the multiplexer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};

/// Liveness settings for [`WsIo`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keepalive {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

pub(crate) struct WsIo<S> {
    ws: WebSocketStream<S>,
    read_buf: Bytes,
    write_buf: BytesMut,
    write_chunk: usize,
    keepalive: Keepalive,
    tick: Pin<Box<Sleep>>,
    last_rx: Instant,
    ping_due: bool,
    flush_due: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsIo<S> {
    pub(crate) fn new(ws: WebSocketStream<S>, write_chunk: usize, keepalive: Keepalive) -> Self {
        let now = Instant::now();
        Self {
            ws,
            read_buf: Bytes::new(),
            write_buf: BytesMut::new(),
            write_chunk,
            keepalive,
            tick: Box::pin(tokio::time::sleep(keepalive.interval)),
            last_rx: now,
            ping_due: false,
            flush_due: false,
        }
    }

    /// Sends due pings and fails once the peer has been silent past the timeout. Only frames
    /// received count as life: a write that lands in the kernel's buffer proves nothing.
    fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while self.tick.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if now.duration_since(self.last_rx) >= self.keepalive.timeout {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("peer silent for {:?} (dead-peer timeout)", now.duration_since(self.last_rx)),
                ));
            }
            self.ping_due = true;
            self.tick.as_mut().reset(now + self.keepalive.interval);
        }
        if self.ping_due {
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    Pin::new(&mut self.ws).start_send(Message::Ping(Bytes::new())).map_err(ws_err)?;
                    self.ping_due = false;
                    self.flush_due = true;
                }
                Poll::Ready(Err(e)) => return Err(ws_err(e)),
                Poll::Pending => {}
            }
        }
        if self.flush_due {
            match Pin::new(&mut self.ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.flush_due = false,
                Poll::Ready(Err(e)) => return Err(ws_err(e)),
                Poll::Pending => {}
            }
        }
        Ok(())
    }

    fn poll_send_buffered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_buf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(ws_err)?;
        let msg = self.write_buf.split().freeze();
        Pin::new(&mut self.ws).start_send(Message::Binary(msg)).map_err(ws_err)?;
        Poll::Ready(Ok(()))
    }
}

fn ws_err(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed")
        }
        other => io::Error::new(io::ErrorKind::InvalidData, format!("WebSocket: {other}")),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.poll_keepalive(cx)?;
        loop {
            if !this.read_buf.is_empty() {
                let n = this.read_buf.len().min(buf.remaining());
                buf.put_slice(&this.read_buf[..n]);
                this.read_buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) => {
                    this.last_rx = Instant::now();
                    this.read_buf = b;
                }
                // tungstenite answers pings by itself; any frame proves the peer is alive.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                    this.last_rx = Instant::now();
                }
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text WebSocket message on a tunnel session (only binary is allowed)",
                    )));
                }
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => {
                    return Poll::Ready(Ok(()));
                }
                Some(Err(e)) => return Poll::Ready(Err(ws_err(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.poll_keepalive(cx)?;
        if this.write_buf.len() >= this.write_chunk {
            ready!(this.poll_send_buffered(cx))?;
        }
        let n = buf.len().min(this.write_chunk - this.write_buf.len());
        this.write_buf.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.poll_keepalive(cx)?;
        ready!(this.poll_send_buffered(cx))?;
        ready!(Pin::new(&mut this.ws).poll_flush(cx)).map_err(ws_err)?;
        this.flush_due = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_send_buffered(cx))?;
        match ready!(Pin::new(&mut this.ws).poll_close(cx)) {
            Ok(()) | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(ws_err(e))),
        }
    }
}
