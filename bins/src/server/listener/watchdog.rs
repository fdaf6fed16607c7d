//! Per-connection timeouts by phase. A client has `header_timeout` to send a whole request head —
//! counted from the connection's start for the first request, and from the head's first byte for the
//! next ones — and may keep a connection with no request in progress for `idle_timeout`. While a
//! request is in progress (a watch, an upload) neither applies; an upgraded connection (exec, the
//! agents' `/v3/connect` tunnel) has left HTTP and the watchdog with it.
//!
//! hyper's own `header_read_timeout` is not enough: it starts only once hyper has told HTTP/1.1 from
//! HTTP/2 (a client that sends one byte is never timed), and it also ends idle keep-alive connections
//! after the same short time.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::server::metrics::TimedOut;

/// What one connection is doing, as seen by its reads and its requests.
#[derive(Debug)]
pub(super) struct Activity {
    state: Mutex<State>,
    /// Set while a read would start a request head's clock: reads check it without the lock.
    awaiting_first_byte: AtomicBool,
    changed: Notify,
    /// Woken (all waiters) when the connection's first request head arrives.
    first_request: Notify,
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    /// The start of the connection, or the end of the last request in progress.
    since: Instant,
    /// The first byte read since `since` with no request in progress.
    first_byte: Option<Instant>,
    /// A request has been seen: the connection is past its first head.
    served: bool,
    http2: bool,
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Activity {
            state: Mutex::new(State {
                in_flight: 0,
                since: Instant::now(),
                first_byte: None,
                served: false,
                http2: false,
            }),
            awaiting_first_byte: AtomicBool::new(true),
            changed: Notify::new(),
            first_request: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes arrived from the client.
    fn read_some(&self) {
        if !self.awaiting_first_byte.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut s = self.lock();
        if s.in_flight == 0 && s.first_byte.is_none() {
            s.first_byte = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// A request head arrived and went to the application; in progress until the guard is dropped.
    pub(super) fn request_started(self: &Arc<Self>, http2: bool) -> InFlight {
        let mut s = self.lock();
        s.in_flight += 1;
        let first = !s.served;
        s.served = true;
        s.http2 = http2;
        self.awaiting_first_byte.store(false, Ordering::Release);
        drop(s);
        self.changed.notify_one();
        if first {
            self.first_request.notify_waiters();
        }
        InFlight(self.clone())
    }

    /// Resolves once the connection's first request head has arrived (at once if it has).
    pub(super) async fn first_request(&self) {
        loop {
            // Registered before the check: a head arriving in between still wakes it.
            let arrived = self.first_request.notified();
            if self.lock().served {
                return;
            }
            arrived.await;
        }
    }

    fn request_ended(&self) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.since = Instant::now();
            s.first_byte = None;
            self.awaiting_first_byte.store(true, Ordering::Release);
        }
        drop(s);
        self.changed.notify_one();
    }

    /// When the current phase runs out, and which phase it is; `None` while a request is in progress.
    fn deadline(&self, header: Duration, idle: Duration) -> Option<(Instant, TimedOut)> {
        let s = self.lock();
        if s.in_flight > 0 {
            return None;
        }
        // HTTP/2 sends pings and settings between requests, so bytes do not mean a head has begun;
        // its heads come whole in HEADERS frames, bounded by the header list size.
        let header_from = if !s.served {
            Some(s.since)
        } else if s.http2 {
            None
        } else {
            s.first_byte
        };
        Some(match header_from {
            Some(start) => (start + header, TimedOut::Header),
            None => (s.since + idle, TimedOut::Idle),
        })
    }
}

/// A request in progress; dropped when its response has been sent (or abandoned).
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// Drives `conn` until it ends, or until its current phase outlives its timeout; `Err` with the phase
/// then, and `conn` is dropped, which closes the connection.
pub(super) async fn watch<F: Future>(
    conn: F,
    activity: &Activity,
    header: Duration,
    idle: Duration,
) -> Result<F::Output, TimedOut> {
    let mut conn = std::pin::pin!(conn);
    loop {
        let changed = activity.changed.notified();
        let deadline = activity.deadline(header, idle);
        tokio::select! {
            out = &mut conn => return Ok(out),
            () = changed => {}
            () = sleep_until(deadline.map(|(at, _)| at)) => {
                if let Some((at, phase)) = activity.deadline(header, idle)
                    && at <= Instant::now()
                {
                    return Err(phase);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

// ---- the connection's I/O, reporting reads ----

/// A client connection whose reads are reported to its [`Activity`].
pub(super) struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    pub(super) fn new(inner: T, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_some();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// ---- the response body, holding its request in progress ----

/// A response body that keeps its request in progress until it has been sent or dropped.
pub(super) struct TrackedBody {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl TrackedBody {
    pub(super) fn new(inner: axum::body::Body, in_flight: InFlight) -> Self {
        TrackedBody { inner, _in_flight: in_flight }
    }
}

impl Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(2);
    const IDLE: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_must_send_its_first_head_in_time() {
        let a = Activity::new();
        let started = Instant::now();
        let out = watch(std::future::pending::<()>(), &a, HEADER, IDLE).await;
        assert_eq!(out, Err(TimedOut::Header));
        assert_eq!(started.elapsed(), HEADER);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_progress_are_never_timed_and_idle_follows() {
        let a = Activity::new();
        let in_flight = a.request_started(false);
        let conn = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(in_flight);
            std::future::pending::<()>().await;
        };
        let started = Instant::now();
        assert_eq!(watch(conn, &a, HEADER, IDLE).await, Err(TimedOut::Idle));
        assert_eq!(started.elapsed(), Duration::from_secs(60) + IDLE, "a minute's request, then idle");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_of_a_head_starts_the_header_clock() {
        let a = Activity::new();
        drop(a.request_started(false));
        let reader = a.clone();
        let conn = async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            reader.read_some();
            std::future::pending::<()>().await;
        };
        let started = Instant::now();
        assert_eq!(watch(conn, &a, HEADER, IDLE).await, Err(TimedOut::Header));
        assert_eq!(started.elapsed(), Duration::from_secs(5) + HEADER);
    }

    #[tokio::test(start_paused = true)]
    async fn http2_bytes_between_requests_are_not_a_head() {
        let a = Activity::new();
        drop(a.request_started(true));
        a.read_some();
        let started = Instant::now();
        assert_eq!(watch(std::future::pending::<()>(), &a, HEADER, IDLE).await, Err(TimedOut::Idle));
        assert_eq!(started.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_ends_is_not_a_timeout() {
        let a = Activity::new();
        assert_eq!(watch(async { 7 }, &a, HEADER, IDLE).await, Ok(7));
    }
}
