//! The multiplexer driver: one task per session polls the yamux connection, hands inbound
//! streams to a callback and opens outbound streams on request.
//!
//! A session ends in one of three ways: the peer or the socket ends it; [`SessionHandle::close`]
//! (after the driver's [`Drain`], if it has one); or [`SessionHandle::retire`], which opens no more
//! streams and closes once the streams opened through the handle are done (or the retirement's
//! budget is spent). Every stream of a session learns when it ended ([`SessionEnded`]): yamux wakes
//! no reader when the connection closes gracefully, so without it a read waiting for a reply
//! that can no longer come would wait for good.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::TokioAsyncReadCompatExt;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};

use crate::config::{SessionConfig, StreamUse};
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
    retire: CancellationToken,
    open_streams: Arc<AtomicUsize>,
    /// The streams opened through this handle, for a retirement to wait on.
    opened: TaskTracker,
    /// `max_streams`, and the lower limit of long-running streams.
    limits: StreamLimits,
    ended: SessionEnded,
}

#[derive(Clone, Copy, Debug)]
struct StreamLimits {
    request: usize,
    long_running: usize,
}

/// One of a session's `max_streams` slots, held by an open stream; freed on drop.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    count: Arc<AtomicUsize>,
    _open: TaskTrackerToken,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Tells a session's streams that it ended. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct SessionEnded(CancellationToken);

impl SessionEnded {
    /// Resolves once the session has ended (at once if it has).
    pub(crate) fn wait(&self) -> WaitForCancellationFutureOwned {
        self.0.clone().cancelled_owned()
    }
}

impl SessionHandle {
    /// Opens an outbound stream, within the session's stream limit for `use_` (checked here
    /// because yamux ends the whole session when its own limit is hit).
    pub(crate) async fn open(&self, use_: StreamUse) -> Result<(yamux::Stream, StreamSlot)> {
        let limit = match use_ {
            StreamUse::Request => self.limits.request,
            StreamUse::LongRunning => self.limits.long_running,
        };
        if self.open_streams.fetch_add(1, Ordering::AcqRel) >= limit {
            self.open_streams.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::StreamLimit { limit });
        }
        let slot = StreamSlot { count: self.open_streams.clone(), _open: self.opened.token() };
        let (tx, rx) = oneshot::channel();
        self.open_tx.send(tx).await.map_err(|_| Error::SessionClosed)?;
        let stream = rx.await.map_err(|_| Error::SessionClosed)?.map_err(Error::OpenStream)?;
        Ok((stream, slot))
    }

    /// Asks the session to close (draining first where the driver was given a drain budget).
    pub(crate) fn close(&self) {
        self.close.cancel();
    }

    /// Asks the session to open no more streams and to close once those opened through this
    /// handle are done, or `retire_within` (given to [`start`]) has passed. A later
    /// [`close`](Self::close) closes it at once.
    pub(crate) fn retire(&self) {
        self.retire.cancel();
    }

    /// What the session's streams wait on to learn that it ended.
    pub(crate) fn ended(&self) -> &SessionEnded {
        &self.ended
    }
}

/// What the driver does when it is asked to close.
pub(crate) struct Drain {
    /// Tasks serving streams; the driver keeps the session alive until they finish…
    pub(crate) tracker: TaskTracker,
    /// …or this much time has passed.
    pub(crate) timeout: Duration,
}

/// Starts driving a session over `io`: inbound streams go to `on_inbound` with what tells them the
/// session ended; `drain` applies to [`SessionHandle::close`], `retire_within` bounds
/// [`SessionHandle::retire`]. The returned future (spawn it) resolves with the reason the session
/// ended.
pub(crate) fn start<F>(
    io: BoxedIo,
    cfg: &SessionConfig,
    mode: yamux::Mode,
    on_inbound: F,
    drain: Option<Drain>,
    retire_within: Duration,
) -> (SessionHandle, impl Future<Output = String> + Send + 'static)
where
    F: FnMut(yamux::Stream, &SessionEnded) + Send + 'static,
{
    let conn = yamux::Connection::new(io.compat(), cfg.yamux(), mode);
    // A small queue: a caller waits here only while the driver is busy.
    let (open_tx, open_rx) = mpsc::channel(64);
    let handle = SessionHandle {
        open_tx,
        close: CancellationToken::new(),
        retire: CancellationToken::new(),
        open_streams: Arc::new(AtomicUsize::new(0)),
        opened: TaskTracker::new(),
        limits: StreamLimits {
            request: cfg.stream_limit(StreamUse::Request),
            long_running: cfg.stream_limit(StreamUse::LongRunning),
        },
        ended: SessionEnded::default(),
    };
    let ends = Ends {
        close: handle.close.clone(),
        retire: handle.retire.clone(),
        drain,
        retirement: Drain { tracker: handle.opened.clone(), timeout: retire_within },
        ended: handle.ended.clone(),
    };
    let driver = async move {
        let ended = ends.ended.clone();
        let reason = run(conn, open_rx, on_inbound, ends).await;
        ended.0.cancel();
        reason
    };
    (handle, driver)
}

/// How a session may be asked to end, and what it does then.
struct Ends {
    close: CancellationToken,
    retire: CancellationToken,
    /// On close.
    drain: Option<Drain>,
    /// On retirement.
    retirement: Drain,
    ended: SessionEnded,
}

async fn run<F>(
    mut conn: Conn,
    mut open_rx: mpsc::Receiver<OpenReply>,
    mut on_inbound: F,
    ends: Ends,
) -> String
where
    F: FnMut(yamux::Stream, &SessionEnded) + Send + 'static,
{
    let ended = ends.ended.clone();
    let mut on_inbound = move |stream| on_inbound(stream, &ended);
    let (drain, retiring) = tokio::select! {
        reason = drive(&mut conn, &mut open_rx, &mut on_inbound) => return reason,
        () = ends.close.cancelled() => (ends.drain, false),
        () = ends.retire.cancelled() => (Some(ends.retirement), true),
    };
    open_rx.close();
    if let Some(drain) = drain {
        drain.tracker.close();
        let keep_serving = async {
            tokio::select! {
                reason = drive(&mut conn, &mut open_rx, &mut on_inbound) => Some(reason),
                () = drain.tracker.wait() => None,
                // A close while retiring does not wait any longer.
                () = ends.close.cancelled(), if retiring => None,
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
