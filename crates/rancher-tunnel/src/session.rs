//! The multiplexer driver: one task per session polls the yamux connection, hands inbound
//! streams to a callback and opens outbound streams on request.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::TokioAsyncReadCompatExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::SessionConfig;
use crate::error::{Error, Result};
use crate::transport::BoxedIo;

type OpenReply = oneshot::Sender<std::result::Result<yamux::Stream, yamux::ConnectionError>>;
type Conn = yamux::Connection<tokio_util::compat::Compat<BoxedIo>>;

/// How long a closing session may take to say goodbye before its socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens streams on a running session; closes it. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct SessionHandle {
    open_tx: mpsc::Sender<OpenReply>,
    close: CancellationToken,
    open_streams: Arc<AtomicUsize>,
    max_streams: usize,
}

/// One of a session's `max_streams` slots, held by an open stream; freed on drop.
#[derive(Debug)]
pub(crate) struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SessionHandle {
    /// Opens an outbound stream, within the session's stream limit (checked here because
    /// yamux ends the whole session when its own limit is hit).
    pub(crate) async fn open(&self) -> Result<(yamux::Stream, StreamSlot)> {
        if self.open_streams.fetch_add(1, Ordering::AcqRel) >= self.max_streams {
            self.open_streams.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::StreamLimit { limit: self.max_streams });
        }
        let slot = StreamSlot(self.open_streams.clone());
        let (tx, rx) = oneshot::channel();
        self.open_tx.send(tx).await.map_err(|_| Error::SessionClosed)?;
        let stream = rx.await.map_err(|_| Error::SessionClosed)?.map_err(Error::OpenStream)?;
        Ok((stream, slot))
    }

    /// Asks the session to close (draining first where the driver was given a drain budget).
    pub(crate) fn close(&self) {
        self.close.cancel();
    }
}

/// What the driver does when it is asked to close.
pub(crate) struct Drain {
    /// Tasks serving streams; the driver keeps the session alive until they finish…
    pub(crate) tracker: TaskTracker,
    /// …or this much time has passed.
    pub(crate) timeout: Duration,
}

/// Starts driving a session over `io`. The returned future (spawn it) resolves with the reason
/// the session ended.
pub(crate) fn start<F>(
    io: BoxedIo,
    cfg: &SessionConfig,
    mode: yamux::Mode,
    on_inbound: F,
    drain: Option<Drain>,
) -> (SessionHandle, impl Future<Output = String> + Send + 'static)
where
    F: FnMut(yamux::Stream) + Send + 'static,
{
    let conn = yamux::Connection::new(io.compat(), cfg.yamux(), mode);
    // A small queue: a caller waits here only while the driver is busy.
    let (open_tx, open_rx) = mpsc::channel(64);
    let close = CancellationToken::new();
    let handle = SessionHandle {
        open_tx,
        close: close.clone(),
        open_streams: Arc::new(AtomicUsize::new(0)),
        max_streams: cfg.max_streams,
    };
    (handle, run(conn, open_rx, on_inbound, close, drain))
}

async fn run<F>(
    mut conn: Conn,
    mut open_rx: mpsc::Receiver<OpenReply>,
    mut on_inbound: F,
    close: CancellationToken,
    drain: Option<Drain>,
) -> String
where
    F: FnMut(yamux::Stream) + Send + 'static,
{
    tokio::select! {
        reason = drive(&mut conn, &mut open_rx, &mut on_inbound) => return reason,
        () = close.cancelled() => {}
    }
    open_rx.close();
    if let Some(drain) = drain {
        drain.tracker.close();
        let keep_serving = async {
            tokio::select! {
                reason = drive(&mut conn, &mut open_rx, &mut on_inbound) => Some(reason),
                () = drain.tracker.wait() => None,
            }
        };
        if let Ok(Some(reason)) = tokio::time::timeout(drain.timeout, keep_serving).await {
            return reason;
        }
    }
    match tokio::time::timeout(CLOSE_TIMEOUT, poll_fn(|cx| conn.poll_close(cx))).await {
        Ok(Ok(())) => "closed locally".to_string(),
        Ok(Err(e)) => format!("closed locally ({e})"),
        Err(_) => "closed locally (peer did not acknowledge in time)".to_string(),
    }
}

/// Polls the connection until it ends: opens requested streams and hands over inbound ones.
async fn drive<F>(conn: &mut Conn, open_rx: &mut mpsc::Receiver<OpenReply>, on_inbound: &mut F) -> String
where
    F: FnMut(yamux::Stream),
{
    let mut waiting: Option<OpenReply> = None;
    poll_fn(|cx| {
        loop {
            let mut progressed = false;
            if waiting.is_none()
                && let Poll::Ready(Some(reply)) = open_rx.poll_recv(cx)
            {
                waiting = Some(reply);
            }
            if waiting.is_some()
                && let Poll::Ready(res) = conn.poll_new_outbound(cx)
            {
                if let Some(reply) = waiting.take() {
                    // The caller may have given up; the stream is then dropped (reset).
                    let _ = reply.send(res);
                }
                progressed = true;
            }
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    on_inbound(stream);
                    progressed = true;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(session_end_reason(&e)),
                Poll::Ready(None) => return Poll::Ready("peer closed the session".to_string()),
                Poll::Pending => {}
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    })
    .await
}

fn session_end_reason(e: &yamux::ConnectionError) -> String {
    match e {
        yamux::ConnectionError::Io(io) => format!("session I/O: {io}"),
        other => format!("session: {other}"),
    }
}
