//! The tunnel's multiplexer: yamux's wire format (so a peer speaking yamux understands it), with
//! streams that write to the transport themselves.
//!
//! A yamux connection is a task of its own: a stream's write crosses to it through a channel and
//! waits for it to run, so every request through the tunnel woke that task once each way, often
//! on the other worker thread. Here a stream frames what it writes into the session's queue and
//! writes the queue to the transport itself ([`Shared::pump`]) — unless someone else is writing,
//! who then takes the new frames along (or, when the driver wants the transport, leaves them to
//! the driver, which writes after it reads). Only reading has a task, the
//! [`Connection`]'s driver: it reads frames and hands each stream its bytes (large payloads as
//! slices of the buffer they were read into, small ones copied so that they pin no buffer),
//! answers pings, and takes inbound streams.
//!
//! Every poll of the transport, whoever makes it, is made with one waker that wakes the driver
//! ([`DriverWaker`]): when the transport cannot take more, the driver is the one woken to carry
//! on, and the transport's timers (the WebSocket's keepalive) always wake the task that reads.
//!
//! Flow control is yamux's: each stream starts with 256 KiB of credit each way; a reader gives
//! credit back with a window update once it has read half of it. A peer that sends past its credit
//! breaks the protocol and ends the session. Dropping a stream the peer may still write to resets
//! it; dropping one the peer has finished with sends the end of ours (a stream that never sent
//! anything, the peer never knew of, and is dropped silently).

mod connection;
mod frame;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;
use tokio::io::AsyncWrite;

use crate::transport::BoxedIo;
pub(crate) use connection::Connection;

pub(crate) use stream::Stream;
use stream::StreamState;

/// Every stream's credit at its start, each way (yamux's default; never more is given).
pub(crate) const WINDOW: u32 = 256 * 1024;

/// Which end of the session. The client opens no streams here (yamux numbers a client's odd);
/// the server opens them, numbered even, and resets any the client opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Client,
    Server,
}

/// A session's limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    /// Streams open at once; a stream the peer opens past it is reset.
    pub(crate) max_streams: usize,
    /// The largest data frame sent: a larger write goes out in several.
    pub(crate) frame_size: usize,
    /// Bytes framed and not yet taken by the transport past which writers wait (and, at twice
    /// as many, the driver stops reading: a peer that does not read cannot make its answers pile up).
    pub(crate) max_queued: usize,
}

/// Wakes whichever task drives the session. The transport is polled with it by every task, so what
/// the transport registers (readiness, timers) outlives the poll that registered it.
#[derive(Default)]
struct DriverWaker(AtomicWaker);

impl Wake for DriverWaker {
    fn wake(self: Arc<Self>) {
        self.0.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake();
    }
}

/// What a session's streams, its opener and its driver share.
pub(crate) struct Shared {
    mode: Mode,
    cfg: Config,
    state: Mutex<State>,
    io: Mutex<IoSlot>,
    driver: Arc<DriverWaker>,
    /// [`Shared::driver`] as a waker, for polling the transport.
    io_waker: Waker,
    /// The driver found the transport taken: whoever lets go of it wakes the driver.
    read_wanted: AtomicBool,
}

struct State {
    streams: std::collections::HashMap<u32, StreamState>,
    next_id: u32,
    /// Frames waiting for the transport, in the order they were framed.
    out: Vec<u8>,
    /// Streams whose writers wait for `out` to shrink below [`Config::max_queued`], first come
    /// first woken (each at most once: [`StreamState::waiting_room`]).
    out_waiters: VecDeque<u32>,
    /// The driver stopped reading until `out` drains.
    read_paused: bool,
    go_away_sent: bool,
    /// Set once the session has ended: why, as an I/O error's kind and message.
    ended: Option<(io::ErrorKind, String)>,
}

/// The transport and what is being written to it. Locked only for one non-blocking poll at a
/// time (and to drop the transport when the session ends).
struct IoSlot {
    /// Gone once the session has ended: the socket closes with its driver, not its last stream.
    io: Option<BoxedIo>,
    /// Frames taken from [`State::out`], written up to `written`.
    writing: Vec<u8>,
    written: usize,
    /// Written and not flushed yet.
    unflushed: bool,
}

fn protocol_error(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The error a session's users see once it has ended.
fn session_over(reason: &str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, format!("the tunnel session ended: {reason}"))
}

fn wake_all(wakers: impl IntoIterator<Item = Waker>) {
    for w in wakers {
        w.wake();
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mux::Shared").field("mode", &self.mode).finish_non_exhaustive()
    }
}

impl Shared {
    fn new(io: BoxedIo, cfg: Config, mode: Mode) -> Self {
        let driver = Arc::new(DriverWaker::default());
        Self {
            mode,
            cfg,
            state: Mutex::new(State {
                streams: std::collections::HashMap::new(),
                next_id: match mode {
                    Mode::Client => 1,
                    Mode::Server => 2,
                },
                out: Vec::new(),
                out_waiters: VecDeque::new(),
                read_paused: false,
                go_away_sent: false,
                ended: None,
            }),
            io: Mutex::new(IoSlot { io: Some(io), writing: Vec::new(), written: 0, unflushed: false }),
            io_waker: Waker::from(driver.clone()),
            driver,
            read_wanted: AtomicBool::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn io(&self) -> MutexGuard<'_, IoSlot> {
        self.io.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The transport, unless someone else is using it.
    fn try_io(&self) -> Option<MutexGuard<'_, IoSlot>> {
        match self.io.try_lock() {
            Ok(slot) => Some(slot),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// The transport for the driver; `None` when a writer holds it, who then wakes the driver when
    /// it lets go (the driver's thread does not wait for someone else's write).
    fn try_io_for_reading(&self) -> Option<MutexGuard<'_, IoSlot>> {
        if let Some(slot) = self.try_io() {
            return Some(slot);
        }
        self.read_wanted.store(true, Ordering::SeqCst);
        // Pairs with the fence in `release_io`: either the holder sees the flag after letting go,
        // or this sees the transport free.
        fence(Ordering::SeqCst);
        let slot = self.try_io()?;
        self.read_wanted.store(false, Ordering::Relaxed);
        Some(slot)
    }

    /// Lets go of the transport; `true` when the driver wanted it meanwhile (and was woken).
    fn release_io(&self, slot: MutexGuard<'_, IoSlot>) -> bool {
        drop(slot);
        fence(Ordering::SeqCst);
        if self.read_wanted.swap(false, Ordering::SeqCst) {
            self.io_waker.wake_by_ref();
            return true;
        }
        false
    }

    /// Opens a stream: nothing is sent until it sends (its first frame carries the SYN, as yamux's
    /// do), and nothing waits for the peer's answer.
    pub(crate) fn open(self: &Arc<Self>) -> io::Result<Stream> {
        let id = {
            let mut st = self.state();
            if let Some((_, reason)) = &st.ended {
                return Err(session_over(reason));
            }
            if st.go_away_sent {
                return Err(session_over("it is closing"));
            }
            if st.streams.len() >= self.cfg.max_streams {
                return Err(io::Error::other(format!(
                    "the session has {} streams open, its limit",
                    st.streams.len()
                )));
            }
            let id = st.next_id;
            let Some(next) = id.checked_add(2) else {
                return Err(session_over("it ran out of stream ids"));
            };
            st.next_id = next;
            st.streams.insert(id, StreamState::outbound());
            id
        };
        Ok(Stream::new(id, self.clone()))
    }

    /// Writes what is queued to the transport, unless someone else is writing (they take it along
    /// before they let go). Stops where the transport cannot take more (its readiness then wakes
    /// the driver, which carries on), or when the driver wants the transport.
    pub(crate) fn pump(&self) {
        loop {
            let Some(mut slot) = self.try_io() else { return };
            let written = slot.poll_write_out(&mut Context::from_waker(&self.io_waker), self);
            let driver_waits = self.release_io(slot);
            match written {
                Poll::Ready(Ok(())) => {}
                Poll::Pending => return,
                Poll::Ready(Err(e)) => {
                    self.end(e.kind(), format!("session I/O: {e}"));
                    return;
                }
            }
            // The driver pumps after its read: it gets the transport now.
            if driver_waits {
                return;
            }
            // Frames queued while the transport was held by us were left to us.
            let st = self.state();
            if st.out.is_empty() || st.ended.is_some() {
                return;
            }
        }
    }

    /// Ends the session (the first reason stays): every stream waiting learns of it, and so does
    /// the driver.
    fn end(&self, kind: io::ErrorKind, reason: String) {
        let mut wakers = Vec::new();
        {
            let mut st = self.state();
            if st.ended.is_some() {
                return;
            }
            st.ended = Some((kind, reason));
            for s in st.streams.values_mut() {
                wakers.extend(s.reader.take());
                wakers.extend(s.writer.take());
            }
            st.out_waiters.clear();
            st.out = Vec::new();
        }
        wake_all(wakers);
        self.io_waker.wake_by_ref();
    }
}

impl IoSlot {
    /// Writes everything queued and flushes, taking new frames from `shared` as it goes.
    fn poll_write_out(&mut self, cx: &mut Context<'_>, shared: &Shared) -> Poll<io::Result<()>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let mut io = std::pin::Pin::new(io);
        loop {
            if self.written == self.writing.len() {
                let mut st = shared.state();
                if st.out.is_empty() || st.ended.is_some() {
                    // Room for everyone: the writers still waiting, and the driver if it paused.
                    let waiters = wake_waiting(&mut st, usize::MAX);
                    let driver = std::mem::take(&mut st.read_paused);
                    drop(st);
                    wake_all(waiters);
                    if driver {
                        shared.io_waker.wake_by_ref();
                    }
                    break;
                }
                // Taken, not swapped for the emptied one: an idle session keeps no buffer.
                self.writing = std::mem::take(&mut st.out);
                // As many writers as the queue has room for: waking all of a hundred streams
                // for a few to fit and the rest to wait again cost more than the writing.
                let waiters = wake_waiting(&mut st, (shared.cfg.max_queued / shared.cfg.frame_size).max(1));
                drop(st);
                self.written = 0;
                wake_all(waiters);
            }
            match io.as_mut().poll_write(cx, &self.writing[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.unflushed {
            match io.as_mut().poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                other => return other,
            }
        }
        // An idle session holds no write buffer.
        self.writing = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

/// The wakers of the first `n` streams waiting for room in the queue.
fn wake_waiting(st: &mut State, n: usize) -> Vec<Waker> {
    let mut wakers = Vec::new();
    while wakers.len() < n {
        let Some(id) = st.out_waiters.pop_front() else { break };
        if let Some(s) = st.streams.get_mut(&id) {
            s.waiting_room = false;
            wakers.extend(s.writer.take());
        }
    }
    wakers
}
