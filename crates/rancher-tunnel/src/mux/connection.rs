//! The driving end of a session: the only task that reads the transport.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;
use tokio_util::io::poll_read_buf;

use super::frame::{ACK, FIN, GO_AWAY_NORMAL, GO_AWAY_PROTOCOL_ERROR, HEADER_LEN, Header, Kind, RST, SYN};
use super::{
    Config, Mode, Shared, State, Stream, StreamState, WINDOW, protocol_error, session_over, wake_all,
};
use crate::transport::BoxedIo;

/// A read asks the transport for at least this much room.
const READ_CHUNK: usize = 16 * 1024;

/// Reads frames, hands them to their streams, and yields the streams the peer opens. Poll it
/// ([`Connection::poll_next_inbound`]) for as long as the session should live; dropping it ends
/// the session and closes the transport.
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
        Self {
            shared: Arc::new(Shared::new(io, cfg, mode)),
            rbuf: BytesMut::new(),
            inbound: VecDeque::new(),
            done: false,
        }
    }

    /// What opens streams on this session.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The next stream the peer opened; `None` once the peer closed the transport between frames,
    /// an error when the session ended otherwise (a go-away from the peer, the transport failed,
    /// the peer broke the protocol).
    pub(crate) fn poll_next_inbound(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Stream>>> {
        // Before anything can race for the transport: whoever is woken for the driver wakes this.
        self.shared.driver.0.register(cx.waker());
        loop {
            if let Some(stream) = self.inbound.pop_front() {
                return Poll::Ready(Some(Ok(stream)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            {
                let mut st = self.shared.state();
                if let Some((kind, reason)) = &st.ended {
                    let e = io::Error::new(*kind, reason.clone());
                    drop(st);
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                // A peer that sends faster than it reads (pings, opens) stops being read until
                // the answers have gone out.
                // (Writers stop at `max_queued`, past it by at most a frame.)
                let cfg = &self.shared.cfg;
                if st.out.len() > 2 * cfg.max_queued + cfg.frame_size + HEADER_LEN {
                    st.read_paused = true;
                    drop(st);
                    self.shared.pump();
                    if self.shared.state().read_paused {
                        return Poll::Pending;
                    }
                    continue;
                }
            }
            if let Err(e) = self.take_frames() {
                // A go-away the peer sent ends the session too, but it broke nothing.
                let broke_protocol = e.kind() == io::ErrorKind::InvalidData;
                return Poll::Ready(Some(Err(self.fail(e, broke_protocol))));
            }
            if !self.inbound.is_empty() {
                continue;
            }
            let Some(mut slot) = self.shared.try_io_for_reading() else { return Poll::Pending };
            let Some(io) = slot.io.as_mut() else {
                drop(slot);
                let e = session_over("its transport is gone");
                return Poll::Ready(Some(Err(self.fail(e, false))));
            };
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            let read = poll_read_buf(
                std::pin::Pin::new(io),
                &mut Context::from_waker(&self.shared.io_waker),
                &mut self.rbuf,
            );
            self.shared.release_io(slot);
            // Frames queued while the driver held the transport were left to it.
            self.shared.pump();
            match read {
                Poll::Ready(Ok(0)) => {
                    let clean = self.rbuf.is_empty();
                    let e = if clean {
                        io::Error::new(io::ErrorKind::ConnectionAborted, "peer closed the session")
                    } else {
                        io::Error::new(io::ErrorKind::UnexpectedEof, "the session ended inside a frame")
                    };
                    let e = self.fail(e, false);
                    return Poll::Ready(if clean { None } else { Some(Err(e)) });
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    let e = io::Error::new(e.kind(), format!("session I/O: {e}"));
                    return Poll::Ready(Some(Err(self.fail(e, false))));
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

    /// Ends the session with `e` (telling the peer with a go-away when it broke the protocol:
    /// `tell_peer`) and returns it. Streams the peer opened and nobody took are dropped.
    fn fail(&mut self, e: io::Error, tell_peer: bool) -> io::Error {
        if tell_peer {
            {
                let mut st = self.shared.state();
                st.go_away_sent = true;
                Header::new(Kind::GoAway, 0, 0, GO_AWAY_PROTOCOL_ERROR).encode_into(&mut st.out);
            }
            self.shared.pump();
        }
        self.shared.end(e.kind(), e.to_string());
        self.done = true;
        self.inbound.clear();
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
                    if rbuf.capacity() < HEADER_LEN + body {
                        // A frame that does not fit gets a buffer of its own (little more than
                        // itself): a stream keeping its payload then keeps no one else's bytes.
                        let mut own = BytesMut::with_capacity(HEADER_LEN + body + READ_CHUNK / 4);
                        own.extend_from_slice(rbuf);
                        *rbuf = own;
                    }
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
        self.shared.driver.0.register(cx.waker());
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
        let mut slot = self.shared.io();
        let cx = &mut Context::from_waker(&self.shared.io_waker);
        let res = match slot.poll_write_out(cx, &self.shared) {
            Poll::Ready(Ok(())) => match slot.io.as_mut() {
                Some(io) => std::pin::Pin::new(io).poll_shutdown(cx),
                None => Poll::Ready(Ok(())),
            },
            other => other,
        };
        drop(slot);
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
        // The socket closes with the driver, not with the last stream handle.
        let io = self.shared.io().io.take();
        drop(io);
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
        // The peer numbers its streams odd as a client, even as a server.
        if (h.stream % 2 == 1) != (shared.mode == Mode::Server) {
            return Err(protocol_error(format!("the peer opened stream {}, a number of ours", h.stream)));
        }
        if st.streams.contains_key(&h.stream) {
            return Err(protocol_error(format!("the peer opened stream {} twice", h.stream)));
        }
        // A server's peer opens none; past the limit, or once closing, none is taken either.
        if shared.mode == Mode::Server || st.streams.len() >= shared.cfg.max_streams || st.go_away_sent {
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
    if s.syn_pending {
        return Err(protocol_error(format!("a frame on stream {} before it was opened", h.stream)));
    }
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
                s.receive(payload);
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
