//! The tunnel's multiplexer: yamux's wire format (so a peer speaking yamux understands it), with
//! streams that write to the transport themselves.
//!
//! A yamux connection is a task of its own: a stream's write crosses to it through a channel and
//! waits for it to run, so every request through the tunnel woke that task once each way, often
//! on the other worker thread. Here a stream frames what it writes into the session's queue and
//! writes the queue to the transport itself ([`Shared::pump`]) — unless someone else is writing,
//! who then takes the new frames along before letting go. Only reading has a task, the
//! [`Connection`]'s driver: it reads frames and hands each stream its bytes (as slices of the
//! buffer they were read into, not copies), answers pings, and takes inbound streams.
//!
//! Every poll of the transport, whoever makes it, is made with the driver's waker: when the
//! transport cannot take more, the driver is the one woken to carry on, and the transport's
//! timers (the WebSocket's keepalive) always wake the task that reads.
//!
//! Flow control is yamux's: each stream starts with 256 KiB of credit each way; a reader gives
//! credit back with a window update once it has read half of it. A peer that sends past its credit
//! breaks the protocol and ends the session. Dropping a stream the peer may still write to resets
//! it; dropping one the peer has finished with sends the end of ours.

mod frame;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;
use tokio_util::io::poll_read_buf;

use crate::transport::BoxedIo;
use frame::{ACK, FIN, GO_AWAY_NORMAL, GO_AWAY_PROTOCOL_ERROR, HEADER_LEN, Header, Kind, RST, SYN};
pub(crate) use stream::Stream;
use stream::StreamState;

/// Every stream's credit at its start, each way (yamux's default; never more is given).
const WINDOW: u32 = 256 * 1024;
/// A read asks the transport for at least this much room.
const READ_CHUNK: usize = 16 * 1024;

/// Which end of the session: they number the streams they open apart (yamux's client odd, its
/// server even).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Client,
    Server,
}

impl Mode {
    fn first_id(self) -> u32 {
        match self {
            Mode::Client => 1,
            Mode::Server => 2,
        }
    }

    /// Whether the peer of this end opens streams numbered `id`.
    fn peer_opens(self, id: u32) -> bool {
        (id % 2 == 1) == (self == Mode::Server)
    }
}

/// A session's limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    /// Streams open at once, both ways; a stream the peer opens past it is reset.
    pub(crate) max_streams: usize,
    /// The largest data frame sent: a larger write goes out in several.
    pub(crate) frame_size: usize,
    /// Bytes framed and not yet taken by the transport past which writers wait.
    pub(crate) max_queued: usize,
}

/// What a session's streams, its opener and its driver share.
pub(crate) struct Shared {
    mode: Mode,
    cfg: Config,
    state: Mutex<State>,
    io: Mutex<IoSlot>,
    /// The driver found the transport taken: whoever lets go of it wakes the driver.
    read_wanted: AtomicBool,
}

struct State {
    streams: HashMap<u32, StreamState>,
    next_id: u32,
    /// Frames waiting for the transport, in the order they were framed.
    out: Vec<u8>,
    /// Writers waiting for `out` to shrink below [`Config::max_queued`], first come first woken.
    out_waiters: VecDeque<Waker>,
    go_away_sent: bool,
    /// Set once the session has ended: why, as an I/O error's kind and message.
    ended: Option<(io::ErrorKind, String)>,
}

/// The transport and what is being written to it. Locked only for one non-blocking poll at a time.
struct IoSlot {
    io: BoxedIo,
    /// The driver's waker, with which every poll of `io` is made.
    waker: Waker,
    /// Frames taken from [`State::out`], written up to `written`.
    writing: Vec<u8>,
    written: usize,
    /// Written and not flushed yet.
    unflushed: bool,
}

fn protocol_error(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn wake_all(wakers: Vec<Waker>) {
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

    /// Lets go of the transport; wakes the driver if it found it taken while it wanted to read.
    fn release_io(&self, slot: MutexGuard<'_, IoSlot>) {
        let waker = self.read_wanted.swap(false, Ordering::SeqCst).then(|| slot.waker.clone());
        drop(slot);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Opens a stream: its SYN is queued at once; nothing waits for the peer's answer.
    pub(crate) fn open(self: &Arc<Self>) -> io::Result<Stream> {
        let id = {
            let mut st = self.state();
            if let Some((kind, msg)) = &st.ended {
                return Err(io::Error::new(*kind, msg.clone()));
            }
            if st.go_away_sent {
                return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the session is closing"));
            }
            if st.streams.len() >= self.cfg.max_streams {
                return Err(io::Error::other(format!(
                    "the session has {} streams open, its limit",
                    st.streams.len()
                )));
            }
            let id = st.next_id;
            st.next_id =
                id.checked_add(2).ok_or_else(|| io::Error::other("the session ran out of stream ids"))?;
            st.streams.insert(id, StreamState::new());
            Header::new(Kind::WindowUpdate, SYN, id, 0).encode_into(&mut st.out);
            id
        };
        self.pump();
        Ok(Stream::new(id, self.clone()))
    }

    /// Writes what is queued to the transport, unless someone else is writing (they take it along
    /// before they let go). Stops where the transport cannot take more: its readiness then wakes
    /// the driver, which carries on.
    pub(crate) fn pump(&self) {
        loop {
            let Some(mut slot) = self.try_io() else { return };
            let waker = slot.waker.clone();
            let written = slot.poll_write_out(&mut Context::from_waker(&waker), self);
            self.release_io(slot);
            match written {
                Poll::Ready(Ok(())) => {}
                Poll::Pending => return,
                Poll::Ready(Err(e)) => {
                    self.end(e.kind(), format!("session I/O: {e}"));
                    waker.wake();
                    return;
                }
            }
            // Frames queued while the transport was held by us were left to us.
            let st = self.state();
            if st.out.is_empty() || st.ended.is_some() {
                return;
            }
        }
    }

    /// Ends the session (the first reason stays): every stream waiting learns of it.
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
            wakers.extend(st.out_waiters.drain(..));
            st.out = Vec::new();
        }
        wake_all(wakers);
    }

    fn ended(&self) -> Option<io::Error> {
        self.state().ended.as_ref().map(|(kind, msg)| io::Error::new(*kind, msg.clone()))
    }
}

impl IoSlot {
    /// Writes everything queued and flushes, taking new frames from `shared` as it goes.
    fn poll_write_out(&mut self, cx: &mut Context<'_>, shared: &Shared) -> Poll<io::Result<()>> {
        loop {
            if self.written == self.writing.len() {
                let mut st = shared.state();
                if st.out.is_empty() || st.ended.is_some() {
                    let waiters = std::mem::take(&mut st.out_waiters);
                    drop(st);
                    wake_all(waiters.into());
                    break;
                }
                // Taken, not swapped for the emptied one: an idle session keeps no buffer.
                self.writing = std::mem::take(&mut st.out);
                // As many writers as the queue has room for: waking all of a hundred streams
                // for a few to fit and the rest to wait again cost more than the writing.
                let room = (shared.cfg.max_queued / shared.cfg.frame_size).max(1);
                let room = room.min(st.out_waiters.len());
                let waiters: Vec<Waker> = st.out_waiters.drain(..room).collect();
                drop(st);
                self.written = 0;
                wake_all(waiters);
            }
            match std::pin::Pin::new(&mut self.io).poll_write(cx, &self.writing[self.written..]) {
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
            match std::pin::Pin::new(&mut self.io).poll_flush(cx) {
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

/// The driving end of a session: reads frames, hands them to their streams, and yields the
/// streams the peer opens. Poll it ([`Connection::poll_next_inbound`]) for as long as the session
/// should live; dropping it ends the session.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    /// Bytes read and not yet taken as frames. Released whenever it is empty.
    rbuf: BytesMut,
    inbound: VecDeque<Stream>,
    /// The driver returned the session's end: it is over.
    done: bool,
}

impl Connection {
    pub(crate) fn new(io: BoxedIo, cfg: Config, mode: Mode) -> Self {
        let shared = Arc::new(Shared {
            mode,
            cfg,
            state: Mutex::new(State {
                streams: HashMap::new(),
                next_id: mode.first_id(),
                out: Vec::new(),
                out_waiters: VecDeque::new(),
                go_away_sent: false,
                ended: None,
            }),
            read_wanted: AtomicBool::new(false),
            io: Mutex::new(IoSlot {
                io,
                waker: Waker::noop().clone(),
                writing: Vec::new(),
                written: 0,
                unflushed: false,
            }),
        });
        Self { shared, rbuf: BytesMut::new(), inbound: VecDeque::new(), done: false }
    }

    /// What opens streams on this session.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The next stream the peer opened; `None` once the peer ended the session, an error when
    /// it broke (the transport failed, or the peer broke the protocol).
    pub(crate) fn poll_next_inbound(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Stream>>> {
        loop {
            if let Some(stream) = self.inbound.pop_front() {
                return Poll::Ready(Some(Ok(stream)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            if let Some(e) = self.shared.ended() {
                self.done = true;
                return Poll::Ready(Some(Err(e)));
            }
            if let Err(e) = self.take_frames() {
                return Poll::Ready(Some(Err(self.fail(e))));
            }
            if !self.inbound.is_empty() {
                continue;
            }
            // A writer holding the transport would keep this thread waiting for its write: the
            // driver asks to be woken when it lets go instead.
            let Some(mut slot) = self.shared.try_io().or_else(|| {
                self.shared.read_wanted.store(true, Ordering::SeqCst);
                self.shared.try_io()
            }) else {
                return Poll::Pending;
            };
            if !slot.waker.will_wake(cx.waker()) {
                slot.waker = cx.waker().clone();
            }
            let spare = self.rbuf.capacity() - self.rbuf.len();
            if spare < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            let read = poll_read_buf(std::pin::Pin::new(&mut slot.io), cx, &mut self.rbuf);
            self.shared.release_io(slot);
            // Frames queued while the driver held the transport were left to it.
            self.shared.pump();
            match read {
                Poll::Ready(Ok(0)) => {
                    if !self.rbuf.is_empty() {
                        let e =
                            io::Error::new(io::ErrorKind::UnexpectedEof, "the session ended inside a frame");
                        return Poll::Ready(Some(Err(self.fail(e))));
                    }
                    self.shared.end(io::ErrorKind::ConnectionAborted, "peer closed the session".into());
                    self.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    let e = io::Error::new(e.kind(), format!("session I/O: {e}"));
                    return Poll::Ready(Some(Err(self.fail(e))));
                }
                Poll::Pending => {
                    if self.rbuf.is_empty() {
                        // An idle session holds no read buffer.
                        self.rbuf = BytesMut::new();
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Ends the session with `e` (telling the peer, when it broke the protocol) and returns it.
    fn fail(&mut self, e: io::Error) -> io::Error {
        if e.kind() == io::ErrorKind::InvalidData {
            {
                let mut st = self.shared.state();
                st.go_away_sent = true;
                Header::new(Kind::GoAway, 0, 0, GO_AWAY_PROTOCOL_ERROR).encode_into(&mut st.out);
            }
            self.shared.pump();
        }
        self.shared.end(e.kind(), e.to_string());
        self.done = true;
        e
    }

    /// Takes every complete frame in the read buffer and acts on it.
    fn take_frames(&mut self) -> io::Result<()> {
        let mut wakers = Vec::new();
        let mut queued = false;
        let Self { shared, rbuf, inbound, .. } = self;
        let res = {
            let mut st = shared.state();
            let mut res = Ok(());
            while rbuf.len() >= HEADER_LEN {
                let header = match Header::decode(rbuf) {
                    Ok(h) => h,
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                };
                let body = header.body_len();
                if body > WINDOW as usize {
                    res = Err(protocol_error(format!(
                        "data frame of {body} bytes on stream {}: more than any stream's window",
                        header.stream
                    )));
                    break;
                }
                if rbuf.len() < HEADER_LEN + body {
                    rbuf.reserve(HEADER_LEN + body - rbuf.len());
                    break;
                }
                rbuf.advance(HEADER_LEN);
                let payload = rbuf.split_to(body);
                match on_frame(shared, inbound, &mut st, header, payload, &mut wakers) {
                    Ok(q) => queued |= q,
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
            res
        };
        if rbuf.is_empty() {
            // The slices handed to streams keep what they need of it.
            *rbuf = BytesMut::new();
        }
        wake_all(wakers);
        if queued {
            shared.pump();
        }
        res
    }

    /// Says goodbye (a go-away), writes out what is queued and shuts the transport down.
    pub(crate) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        {
            let mut st = self.shared.state();
            if let Some((kind, msg)) = &st.ended {
                return Poll::Ready(Err(io::Error::new(*kind, msg.clone())));
            }
            if !st.go_away_sent {
                st.go_away_sent = true;
                Header::new(Kind::GoAway, 0, 0, GO_AWAY_NORMAL).encode_into(&mut st.out);
            }
        }
        let res = {
            let mut slot = self.shared.io();
            if !slot.waker.will_wake(cx.waker()) {
                slot.waker = cx.waker().clone();
            }
            match slot.poll_write_out(cx, &self.shared) {
                Poll::Ready(Ok(())) => std::pin::Pin::new(&mut slot.io).poll_shutdown(cx),
                other => other,
            }
        };
        if res.is_pending() {
            return Poll::Pending;
        }
        self.shared.end(io::ErrorKind::ConnectionAborted, "the session was closed".into());
        self.done = true;
        res
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.end(io::ErrorKind::ConnectionAborted, "the session ended".into());
    }
}

/// Acts on one frame; `Ok(true)` when it queued an answer.
fn on_frame(
    shared: &Arc<Shared>,
    inbound: &mut VecDeque<Stream>,
    st: &mut State,
    h: Header,
    payload: BytesMut,
    wakers: &mut Vec<Waker>,
) -> io::Result<bool> {
    match h.kind {
        Kind::Ping => {
            if h.has(SYN) {
                Header::new(Kind::Ping, ACK, 0, h.len).encode_into(&mut st.out);
                return Ok(true);
            }
            return Ok(false);
        }
        Kind::GoAway => {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                if h.len == GO_AWAY_NORMAL {
                    "peer closed the session".to_string()
                } else {
                    format!("peer ended the session with error code {}", h.len)
                },
            ));
        }
        Kind::Data | Kind::WindowUpdate => {}
    }
    if h.stream == 0 {
        return Err(protocol_error(format!("{:?} frame on stream 0", h.kind)));
    }
    let mut queued = false;
    if h.has(SYN) {
        if !shared.mode.peer_opens(h.stream) {
            return Err(protocol_error(format!("the peer opened stream {}, a number of ours", h.stream)));
        }
        if st.streams.contains_key(&h.stream) {
            return Err(protocol_error(format!("the peer opened stream {} twice", h.stream)));
        }
        if st.streams.len() >= shared.cfg.max_streams || st.go_away_sent {
            Header::new(Kind::WindowUpdate, RST, h.stream, 0).encode_into(&mut st.out);
            return Ok(true);
        }
        st.streams.insert(h.stream, StreamState::new());
        Header::new(Kind::WindowUpdate, ACK, h.stream, 0).encode_into(&mut st.out);
        inbound.push_back(Stream::new(h.stream, shared.clone()));
        queued = true;
    }
    // A stream dropped here (or never opened): what is still on its way is not anyone's.
    let Some(s) = st.streams.get_mut(&h.stream) else { return Ok(queued) };
    match h.kind {
        Kind::Data => {
            let len = payload.len() as u32;
            if len > s.recv_window {
                return Err(protocol_error(format!(
                    "{len} bytes on stream {} with {} of credit left",
                    h.stream, s.recv_window
                )));
            }
            s.recv_window -= len;
            if len > 0 && !s.recv_closed && !s.reset {
                s.recv.push_back(payload.freeze());
                wakers.extend(s.reader.take());
            }
        }
        _ => {
            s.send_window = s
                .send_window
                .checked_add(h.len)
                .ok_or_else(|| protocol_error(format!("window update past 4 GiB on stream {}", h.stream)))?;
            if h.len > 0 {
                wakers.extend(s.writer.take());
            }
        }
    }
    if h.has(FIN) {
        s.recv_closed = true;
        wakers.extend(s.reader.take());
    }
    if h.has(RST) {
        s.reset = true;
        wakers.extend(s.reader.take());
        wakers.extend(s.writer.take());
    }
    Ok(queued)
}
