//! Keep-alive HTTP/1.1 connections to one API server, each driven by the request using it.
//!
//! hyper's pooled client runs every connection as a task of its own: a request crosses to that task
//! and its response crosses back, two more wake-ups per request (often from one worker thread to the
//! other) on top of the tunnel's. In [`ConnPool`] the request's own task polls the connection — while
//! it waits for the response head, then, inside [`PooledBody`], while the response body is read —
//! and the connection goes back to the pool when the body has ended.
//!
//! A large response (or one of unknown length) has its connection driven by a task of its own
//! instead, as hyper's client would ([`OWN_TASK_FROM`]).
//!
//! For requests that end by themselves; long-running ones (watches, `logs -f`) and upgrades keep
//! hyper's client ([`super::forward`]). An idle connection is polled by no one: it is found closed
//! when it is taken (and another taken), and dropped after the idle timeout by a sweep.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::error::{BoxError, ProxyBody};
use super::upstream::{TlsConnector, UpstreamIo};

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No connection could be made: nothing was sent.
    #[error("connecting: {0}")]
    Connect(#[source] BoxError),
    /// The connection failed or closed before the response's head.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// One connection: the handle that sends on it and the state machine that reads and writes it.
struct Conn {
    send: http1::SendRequest<ProxyBody>,
    /// `None` once it returned: the connection is closed (or failed).
    io: Option<http1::Connection<UpstreamIo, ProxyBody>>,
}

impl Conn {
    /// Reads and writes what the connection can; whether it is still open.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(io) = &mut self.io
            && Pin::new(io).poll(cx).is_ready()
        {
            // Dropped at once: a request still queued on it (the API server closed the connection
            // before it was written) comes back unsent instead of waiting for good.
            self.io = None;
        }
        self.io.is_some()
    }

    /// Whether it can take a request now (it is open and idle).
    fn ready(&mut self, cx: &mut Context<'_>) -> bool {
        self.drive(cx) && matches!(self.send.poll_ready(cx), Poll::Ready(Ok(())))
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// The keep-alive connections to one API server.
pub(crate) struct ConnPool {
    connector: TlsConnector,
    /// Oldest first; taken from the back (the most recently used is the likeliest to be open).
    idle: Mutex<VecDeque<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    /// The sweep runs (from the first connection kept on, for as long as the pool lives).
    sweeping: AtomicBool,
}

impl ConnPool {
    /// A pool dialing with `connector` that keeps at most `max_idle` idle connections, each for at
    /// most `idle_timeout` (a task sweeps them, for as long as the pool lives, from the first one
    /// kept). With either zero, no connection is kept.
    pub(crate) fn new(connector: TlsConnector, max_idle: usize, idle_timeout: Duration) -> Arc<Self> {
        let max_idle = if idle_timeout.is_zero() { 0 } else { max_idle };
        Arc::new(ConnPool {
            connector,
            idle: Mutex::default(),
            max_idle,
            idle_timeout,
            sweeping: AtomicBool::new(false),
        })
    }

    /// Sends `req` (its URI in origin form, with a `Host` header) on an idle connection or a new
    /// one dialed to `origin`, and returns the response once its head has arrived.
    ///
    /// # Errors
    /// [`SendError::Connect`] when no connection could be made, else the connection's failure.
    pub(crate) async fn send(
        self: &Arc<Self>,
        origin: &Uri,
        req: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        let mut req = req;
        loop {
            let (mut conn, reused) = match self.take().await {
                Some(conn) => (conn, true),
                None => (self.connect(origin).await?, false),
            };
            let mut response = std::pin::pin!(conn.send.try_send_request(req));
            // The connection first: it writes the request, reads the answer and hands it over.
            let sent = poll_fn(|cx| {
                conn.drive(cx);
                response.as_mut().poll(cx)
            })
            .await;
            match sent {
                Ok(head) => {
                    let pool = Arc::downgrade(self);
                    let conn = if large(&head) {
                        tokio::spawn(drive_until_idle(conn, pool.clone()));
                        None
                    } else {
                        Some(conn)
                    };
                    return Ok(head.map(|body| PooledBody { body, conn, pool, ended: false }));
                }
                Err(mut failed) => match failed.take_message() {
                    // A kept connection the API server had closed, found out before anything was
                    // written: the request goes on another.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(failed.into_error().into()),
                },
            }
        }
    }

    async fn connect(&self, origin: &Uri) -> Result<Conn, SendError> {
        let io = self.connector.clone().oneshot(origin.clone()).await.map_err(SendError::Connect)?;
        let (send, io) = http1::Builder::new().handshake(io).await?;
        Ok(Conn { send, io: Some(io) })
    }

    /// The most recently used idle connection that is still open and idle.
    async fn take(&self) -> Option<Conn> {
        loop {
            let Idle { mut conn, since } = self.lock().pop_back()?;
            if since.elapsed() >= self.idle_timeout {
                // The others are older still; closed outside the lock.
                let expired = std::mem::take(&mut *self.lock());
                drop((conn, expired));
                return None;
            }
            if poll_fn(|cx| Poll::Ready(conn.ready(cx))).await {
                return Some(conn);
            }
        }
    }

    /// Keeps `conn` for a later request, unless the pool is full. The first connection kept starts
    /// the sweep.
    fn put(self: &Arc<Self>, conn: Conn) {
        {
            let mut idle = self.lock();
            if idle.len() >= self.max_idle {
                return;
            }
            idle.push_back(Idle { conn, since: Instant::now() });
        }
        if !self.sweeping.swap(true, Ordering::Relaxed)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(sweep(Arc::downgrade(self), self.idle_timeout));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many idle connections the pool holds.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.lock().len()
    }
}

/// A response body this large or larger, or of a length not known ahead (chunked), is read by its
/// connection in a task of its own, as hyper's client does: the API server's bytes are read and
/// decrypted on one thread while the caller's are encrypted and written on the other (a 10,000-pod
/// list, 20 MB). Smaller ones are read in the request's task.
const OWN_TASK_FROM: u64 = 64 * 1024;

fn large(resp: &Response<Incoming>) -> bool {
    http_body::Body::size_hint(resp.body()).exact().is_none_or(|len| len >= OWN_TASK_FROM)
}

/// Drives `conn` until the response on it is done; then back to `pool` if it is idle, else closed.
async fn drive_until_idle(mut conn: Conn, pool: Weak<ConnPool>) {
    let idle = poll_fn(|cx| {
        if !conn.drive(cx) {
            return Poll::Ready(false);
        }
        conn.send.poll_ready(cx).map(|ready| ready.is_ok())
    })
    .await;
    if idle && let Some(pool) = pool.upgrade() {
        pool.put(conn);
    }
}

/// Drops the connections idle for longer than `idle_timeout`, every half of it, until the pool is gone.
async fn sweep(pool: Weak<ConnPool>, idle_timeout: Duration) {
    let mut every = tokio::time::interval((idle_timeout / 2).max(Duration::from_millis(1)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let expired = {
            let mut idle = pool.lock();
            let fresh = idle.iter().position(|i| i.since.elapsed() < idle_timeout).unwrap_or(idle.len());
            idle.drain(..fresh).collect::<Vec<_>>()
        };
        // Closed outside the lock.
        drop(expired);
    }
}

/// A response body that drives its connection while it is read, and returns the connection to its
/// pool once it has ended. Dropped before its end, it closes the connection. (A large body holds no
/// connection: a task of its own drives it, [`drive_until_idle`].)
pub(crate) struct PooledBody {
    body: Incoming,
    /// Until it is returned.
    conn: Option<Conn>,
    pool: Weak<ConnPool>,
    /// The body's end was read.
    ended: bool,
}

impl PooledBody {
    /// Returns the connection to the pool if it is idle again (it has taken in the body's end).
    fn give_back(&mut self, cx: &mut Context<'_>) {
        if let Some(mut conn) = self.conn.take()
            && conn.ready(cx)
            && let Some(pool) = self.pool.upgrade()
        {
            pool.put(conn);
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body known to be empty is dropped unread (a `204`, a `HEAD`): its connection is idle
        // all the same. Polled with a waker that does nothing: the pool's next user polls it again.
        if self.conn.is_some() && (self.ended || http_body::Body::is_end_stream(&self.body)) {
            self.give_back(&mut Context::from_waker(std::task::Waker::noop()));
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(conn) = &mut this.conn {
            conn.drive(cx);
        }
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        if frame.is_none() || this.body.is_end_stream() {
            this.ended = true;
            this.give_back(cx);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
#[path = "conn_pool_tests.rs"]
mod tests;
