//! A session's driver and its handles: one task per session polls the multiplexer's
//! [`Connection`] and hands inbound streams to a callback; handles open streams (at once, on the
//! caller's task: see [`crate::mux`]) within the session's limits.
//!
//! A session ends in one of three ways: the peer or the socket ends it; [`SessionHandle::close`]
//! (after the driver's [`Drain`], if it has one); or [`SessionHandle::retire`], which opens no more
//! streams and closes once the streams opened through the handle are done (or the retirement's
//! budget is spent). Every stream of a session learns when it ended ([`SessionEnded`]).

use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};

use crate::config::{SessionConfig, StreamUse};
use crate::error::{Error, Result};
use crate::mux::{self, Connection};
use crate::transport::BoxedIo;

/// How long a closing session may take to say goodbye before its socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens streams on a running session; closes it. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct SessionHandle {
    shared: Arc<Shared>,
    /// The multiplexer's side that opens streams.
    mux: Arc<mux::Shared>,
    /// The streams opened through this handle, for a retirement to wait on.
    opened: TaskTracker,
    /// `max_streams`, and the lower limit of long-running streams.
    limits: StreamLimits,
    ended: SessionEnded,
}

/// What a session's handles and its driver share: one allocation per session (a channel and two
/// cancellation tokens were a kilobyte, times every connected agent).
#[derive(Debug, Default)]
struct Shared {
    asks: Mutex<Asks>,
    /// Wakes the driver when something is asked of it.
    driver: AtomicWaker,
    /// Streams open now, against the limits.
    open_streams: AtomicUsize,
}

/// What the handles ask of the driver.
#[derive(Debug, Default)]
struct Asks {
    /// No more opens are taken (closing, retiring, or the driver is gone).
    refusing: bool,
    close: bool,
    retire: bool,
}

/// Why the driver stops serving as usual.
enum Asked {
    Close,
    Retire,
}

impl Shared {
    fn asks(&self) -> MutexGuard<'_, Asks> {
        self.asks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the driver for something (`ask` on the requests) and wakes it.
    fn ask(&self, ask: impl FnOnce(&mut Asks)) {
        ask(&mut self.asks());
        self.driver.wake();
    }

    /// Takes no more opens.
    fn refuse_opens(&self) {
        self.asks().refusing = true;
    }

    /// Ready once a close or a retirement is asked (a close first, when both are).
    fn poll_asked(&self, cx: &Context<'_>) -> Poll<Asked> {
        self.driver.register(cx.waker());
        let asks = self.asks();
        if asks.close {
            Poll::Ready(Asked::Close)
        } else if asks.retire {
            Poll::Ready(Asked::Retire)
        } else {
            Poll::Pending
        }
    }

    /// Ready once a close is asked.
    fn poll_close_asked(&self, cx: &Context<'_>) -> Poll<()> {
        self.driver.register(cx.waker());
        if self.asks().close { Poll::Ready(()) } else { Poll::Pending }
    }
}

/// The driver's hold on what it shares with the handles. When the driver goes, however it goes
/// (also dropped before it ran), no more opens are taken.
struct DriverSide(Arc<Shared>);

impl std::ops::Deref for DriverSide {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Drop for DriverSide {
    fn drop(&mut self) {
        self.0.refuse_opens();
    }
}

#[derive(Clone, Copy, Debug)]
struct StreamLimits {
    request: usize,
    long_running: usize,
}

/// One of a session's `max_streams` slots, held by an open stream; freed on drop.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    shared: Arc<Shared>,
    _open: TaskTrackerToken,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.shared.open_streams.fetch_sub(1, Ordering::AcqRel);
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
    /// Opens an outbound stream, within the session's stream limit for `use_`.
    pub(crate) async fn open(&self, use_: StreamUse) -> Result<(mux::Stream, StreamSlot)> {
        let limit = match use_ {
            StreamUse::Request => self.limits.request,
            StreamUse::LongRunning => self.limits.long_running,
        };
        let open_streams = &self.shared.open_streams;
        if open_streams.fetch_add(1, Ordering::AcqRel) >= limit {
            open_streams.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::StreamLimit { limit });
        }
        let slot = StreamSlot { shared: self.shared.clone(), _open: self.opened.token() };
        if self.shared.asks().refusing {
            return Err(Error::SessionClosed);
        }
        let stream = self.mux.open().map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionAborted => {
                // Ended, closing, or out of stream ids: in the last case nothing else would end
                // it, and the agent reconnects once it has.
                self.retire();
                Error::SessionClosed
            }
            _ => Error::OpenStream(e),
        })?;
        Ok((stream, slot))
    }

    /// Asks the session to close (draining first where the driver was given a drain budget).
    pub(crate) fn close(&self) {
        self.shared.ask(|asks| asks.close = true);
    }

    /// Asks the session to open no more streams and to close once those opened through this
    /// handle are done, or `retire_within` (given to [`start`]) has passed. A later
    /// [`close`](Self::close) closes it at once.
    pub(crate) fn retire(&self) {
        self.shared.ask(|asks| asks.retire = true);
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
    mode: mux::Mode,
    on_inbound: F,
    drain: Option<Drain>,
    retire_within: Duration,
) -> (SessionHandle, impl Future<Output = String> + Send + 'static + use<F>)
where
    F: FnMut(mux::Stream, &SessionEnded) + Send + 'static,
{
    let conn = Connection::new(io, cfg.mux(), mode);
    let handle = SessionHandle {
        shared: Arc::new(Shared::default()),
        mux: conn.shared().clone(),
        opened: TaskTracker::new(),
        limits: StreamLimits {
            request: cfg.stream_limit(StreamUse::Request),
            long_running: cfg.stream_limit(StreamUse::LongRunning),
        },
        ended: SessionEnded::default(),
    };
    let ends = Ends {
        shared: DriverSide(handle.shared.clone()),
        drain,
        retirement: Drain { tracker: handle.opened.clone(), timeout: retire_within },
        ended: handle.ended.clone(),
        _ended_on_drop: handle.ended.0.clone().drop_guard(),
    };
    // `run`'s own future, not an async block awaiting it: a block would hold the connection and
    // everything else twice (captured, and again in `run`'s arguments), a driver per session.
    (handle, run(conn, on_inbound, ends))
}

/// How a session may be asked to end, and what it does then.
struct Ends {
    shared: DriverSide,
    /// On close.
    drain: Option<Drain>,
    /// On retirement.
    retirement: Drain,
    ended: SessionEnded,
    /// However the driver stops (also when it is dropped before it ran), the session's streams
    /// learn of it.
    _ended_on_drop: tokio_util::sync::DropGuard,
}

async fn run<F>(mut conn: Connection, mut on_inbound: F, ends: Ends) -> String
where
    F: FnMut(mux::Stream, &SessionEnded) + Send + 'static,
{
    let ended = ends.ended.clone();
    let mut on_inbound = move |stream| on_inbound(stream, &ended);
    let shared = &ends.shared;
    let (drain, retiring) = tokio::select! {
        reason = drive(&mut conn, &mut on_inbound) => return reason,
        asked = poll_fn(|cx| shared.poll_asked(cx)) => match asked {
            Asked::Close => (ends.drain, false),
            Asked::Retire => (Some(ends.retirement), true),
        },
    };
    // Boxed: the end runs once, and unboxed its futures would be part of every session's driver for
    // as long as the session lives.
    Box::pin(finish(conn, on_inbound, &ends.shared, drain, retiring)).await
}

/// The end of a session asked to close or retire: serves on while `drain` lasts, then says goodbye.
async fn finish<F>(
    mut conn: Connection,
    mut on_inbound: F,
    shared: &Shared,
    drain: Option<Drain>,
    retiring: bool,
) -> String
where
    F: FnMut(mux::Stream),
{
    shared.refuse_opens();
    if let Some(drain) = drain {
        drain.tracker.close();
        let keep_serving = async {
            tokio::select! {
                reason = drive(&mut conn, &mut on_inbound) => Some(reason),
                () = drain.tracker.wait() => None,
                // A close while retiring does not wait any longer.
                () = poll_fn(|cx| shared.poll_close_asked(cx)), if retiring => None,
            }
        };
        if let Ok(Some(reason)) = tokio::time::timeout(drain.timeout, keep_serving).await {
            return reason;
        }
    }
    match tokio::time::timeout(CLOSE_TIMEOUT, poll_fn(|cx| conn.poll_close(cx))).await {
        Ok(Ok(())) => "closed locally".to_string(),
        Ok(Err(e)) => format!("closed locally ({e})"),
        Err(_) => "closed locally (the goodbye could not be written in time)".to_string(),
    }
}

/// Polls the connection until it ends, handing over inbound streams.
async fn drive<F>(conn: &mut Connection, on_inbound: &mut F) -> String
where
    F: FnMut(mux::Stream),
{
    loop {
        match poll_fn(|cx| conn.poll_next_inbound(cx)).await {
            Some(Ok(stream)) => on_inbound(stream),
            Some(Err(e)) => return e.to_string(),
            None => return "peer closed the session".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> (SessionHandle, impl Future<Output = String> + Send + 'static, tokio::io::DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let cfg = SessionConfig::default();
        let (handle, driver) =
            start(Box::new(ours), &cfg, mux::Mode::Server, |_, _| {}, None, Duration::from_secs(1));
        (handle, driver, theirs)
    }

    /// When the driver goes, however it goes (its task dropped, even before it ran), opens fail
    /// and the streams opened before learn that the session ended instead of waiting for good.
    #[tokio::test]
    async fn opens_fail_once_the_driver_is_gone() {
        let (handle, driver, _peer) = session();
        let (mut stream, slot) = handle.open(StreamUse::Request).await.expect("opens need no driver");
        let reading = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            stream.read(&mut [0; 8]).await
        });
        tokio::task::yield_now().await;
        drop(driver);
        let read =
            tokio::time::timeout(Duration::from_secs(5), reading).await.expect("the read ends").unwrap();
        assert!(read.is_err(), "{read:?}");
        drop(slot);
        let later = handle.open(StreamUse::Request).await.map(|_| ());
        assert!(matches!(later, Err(Error::SessionClosed)), "{later:?}");
        assert_eq!(handle.shared.open_streams.load(Ordering::Acquire), 0, "failed opens hold no slot");
        tokio::time::timeout(Duration::from_secs(5), handle.ended().wait())
            .await
            .expect("its streams learn it ended");
    }

    /// A running session opens streams; once asked to close, it opens no more and ends.
    #[tokio::test]
    async fn a_closed_session_opens_no_more_streams_and_ends() {
        let (handle, driver, _peer) = session();
        let driver = tokio::spawn(driver);
        let (stream, slot) = handle.open(StreamUse::Request).await.expect("a running session opens");
        drop((stream, slot));
        handle.close();
        let reason =
            tokio::time::timeout(Duration::from_secs(10), driver).await.expect("the driver ends").unwrap();
        assert!(reason.starts_with("closed locally"), "{reason}");
        let after = handle.open(StreamUse::Request).await.map(|_| ());
        assert!(matches!(after, Err(Error::SessionClosed)), "{after:?}");
        tokio::time::timeout(Duration::from_secs(5), handle.ended().wait())
            .await
            .expect("its streams learn it ended");
    }
}
