//! [`TunnelStream`]: one multiplexed stream, as a tokio byte stream that counts its bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::metrics::Metrics;
use crate::mux;
use crate::session::{SessionEnded, StreamSlot};

/// One stream through a tunnel session: what `dial` returns. Reads and writes go to the
/// destination the agent connected to; `shutdown` half-closes (the other direction stays open).
/// Once its session has ended, a read or write that would wait fails with
/// [`io::ErrorKind::ConnectionAborted`] (what was received before stays readable).
pub struct TunnelStream {
    inner: mux::Stream,
    /// Resolves when the session has ended.
    ended: Pin<Box<WaitForCancellationFutureOwned>>,
    metrics: Metrics,
    /// Bytes are counted only once the dial header exchange is over.
    counting: bool,
    _slot: Option<StreamSlot>,
}

impl std::fmt::Debug for TunnelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelStream").field("id", &self.inner.id()).finish()
    }
}

impl TunnelStream {
    pub(crate) fn new(
        stream: mux::Stream,
        ended: &SessionEnded,
        metrics: Metrics,
        slot: Option<StreamSlot>,
    ) -> Self {
        metrics.streams_open.inc();
        metrics.streams_total.inc();
        Self { inner: stream, ended: Box::pin(ended.wait()), metrics, counting: false, _slot: slot }
    }

    /// `Pending` becomes the end of the session's error once the session has ended.
    fn unless_ended<T>(&mut self, cx: &mut Context<'_>, res: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match res {
            Poll::Pending if self.ended.as_mut().poll(cx).is_ready() => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the tunnel session of this stream ended",
            ))),
            res => res,
        }
    }

    /// From now on, bytes read and written count in the metrics (payload, not dial headers).
    pub(crate) fn start_counting(&mut self) {
        self.counting = true;
    }
}

impl Drop for TunnelStream {
    fn drop(&mut self) {
        self.metrics.streams_open.dec();
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 && self.counting {
            self.metrics.bytes_in.inc_by(n as u64);
        }
        self.unless_ended(cx, res)
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res
            && self.counting
        {
            self.metrics.bytes_out.inc_by(n as u64);
        }
        self.unless_ended(cx, res)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        self.unless_ended(cx, res)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.unless_ended(cx, res)
    }
}
