//! [`TunnelStream`]: one multiplexed stream, as a tokio byte stream that counts its bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

use crate::metrics::Metrics;
use crate::session::StreamSlot;

/// One stream through a tunnel session: what `dial` returns. Reads and writes go to the
/// destination the agent connected to; `shutdown` half-closes (the other direction stays open).
pub struct TunnelStream {
    inner: Compat<yamux::Stream>,
    metrics: Metrics,
    /// Bytes are counted only once the dial header exchange is over.
    counting: bool,
    _slot: Option<StreamSlot>,
}

impl std::fmt::Debug for TunnelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelStream").field("id", &self.inner.get_ref().id()).finish()
    }
}

impl TunnelStream {
    pub(crate) fn new(stream: yamux::Stream, metrics: Metrics, slot: Option<StreamSlot>) -> Self {
        metrics.streams_open.inc();
        metrics.streams_total.inc();
        Self { inner: stream.compat(), metrics, counting: false, _slot: slot }
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
        res
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
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
