//! One multiplexed stream: what its two ends know of it, and the handle that reads and writes it.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame::{FIN, Header, Kind, RST, SYN};
use super::{Shared, WINDOW, session_over};

/// Payloads shorter than this are copied out of the driver's read buffer (a slice would keep the
/// whole buffer alive for a few bytes); longer ones are handed over as slices of it.
const COPY_BELOW: usize = 16 * 1024;

/// A stream's state, kept in the session's table while its handle lives.
pub(super) struct StreamState {
    /// Received and not read yet: slices of the buffers the driver read them into, then `tail`.
    pub(super) recv: VecDeque<Bytes>,
    /// Small payloads received after those in `recv`, copied together.
    pub(super) tail: BytesMut,
    /// Credit the peer has left: bytes it may still send before we give more.
    pub(super) recv_window: u32,
    /// Read since credit was last given back.
    pub(super) unacked: u32,
    /// Credit we have left.
    pub(super) send_window: u32,
    pub(super) reader: Option<Waker>,
    pub(super) writer: Option<Waker>,
    /// The peer has sent its end (FIN).
    pub(super) recv_closed: bool,
    /// We have sent ours.
    pub(super) send_closed: bool,
    /// The peer reset the stream.
    pub(super) reset: bool,
    /// The writer waits in the session's queue for room (it is there once).
    pub(super) waiting_room: bool,
    /// Opened here and not announced yet: the first frame sent carries the SYN (an open costs no
    /// frame of its own, and a stream dropped before it sent anything costs none at all).
    pub(super) syn_pending: bool,
}

impl StreamState {
    pub(super) fn new() -> Self {
        Self {
            recv: VecDeque::new(),
            tail: BytesMut::new(),
            recv_window: WINDOW,
            unacked: 0,
            send_window: WINDOW,
            reader: None,
            writer: None,
            recv_closed: false,
            send_closed: false,
            reset: false,
            waiting_room: false,
            syn_pending: false,
        }
    }

    /// A stream this end opens.
    pub(super) fn outbound() -> Self {
        Self { syn_pending: true, ..Self::new() }
    }

    /// `flags` for the next frame sent, with the SYN if it is the first.
    fn flags(&mut self, flags: u16) -> u16 {
        if std::mem::take(&mut self.syn_pending) { flags | SYN } else { flags }
    }

    /// Keeps a payload the driver read for the reader.
    pub(super) fn receive(&mut self, payload: BytesMut) {
        if payload.len() < COPY_BELOW {
            self.tail.extend_from_slice(&payload);
            return;
        }
        if !self.tail.is_empty() {
            self.recv.push_back(std::mem::take(&mut self.tail).freeze());
        }
        self.recv.push_back(payload.freeze());
    }

    fn nothing_received(&self) -> bool {
        self.recv.is_empty() && self.tail.is_empty()
    }

    /// Moves what was received into `buf`, as much as fits; returns how much.
    pub(super) fn read_into(&mut self, buf: &mut ReadBuf<'_>) -> usize {
        let mut n = 0;
        while buf.remaining() > 0 {
            let Some(chunk) = self.recv.front_mut() else { break };
            let take = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..take]);
            chunk.advance(take);
            if chunk.is_empty() {
                self.recv.pop_front();
            }
            n += take;
        }
        let take = self.tail.len().min(buf.remaining());
        if take > 0 {
            buf.put_slice(&self.tail[..take]);
            self.tail.advance(take);
            n += take;
        }
        if self.tail.is_empty() && self.tail.capacity() > 0 {
            self.tail = BytesMut::new();
        }
        n
    }
}

/// One stream of a session, as a tokio byte stream. Reads return what arrived before anything
/// else: the end of the stream, its reset, or the end of its session. A write is framed and sent
/// from the writing task. `shutdown` sends the end of this direction; the other carries on.
///
/// The peer learns of a stream this end opened with its first frame: a stream opened to be read
/// first waits for good (the tunnel's server always writes its dial header first). Use it on its
/// session's runtime: its writes poll the transport, whose timers belong to that runtime.
pub(crate) struct Stream {
    id: u32,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("id", &self.id).finish()
    }
}

/// What a read or write of a stream the peer reset fails with.
fn reset_by_peer() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "the stream was reset by the peer")
}

fn set_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl Stream {
    pub(super) fn new(id: u32, shared: Arc<Shared>) -> Self {
        Self { id, shared }
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut credit = false;
        {
            let mut st = self.shared.state();
            let st = &mut *st;
            let Some(s) = st.streams.get_mut(&self.id) else {
                return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
            };
            if s.nothing_received() {
                if s.recv_closed {
                    return Poll::Ready(Ok(()));
                }
                if s.reset {
                    return Poll::Ready(Err(reset_by_peer()));
                }
                if let Some((_, reason)) = &st.ended {
                    return Poll::Ready(Err(session_over(reason)));
                }
                set_waker(&mut s.reader, cx);
                return Poll::Pending;
            }
            let n = s.read_into(buf);
            s.unacked += n as u32;
            // Credit goes back in halves of the window: one update per 128 KiB read, not per read.
            if s.unacked >= WINDOW / 2 && !s.recv_closed && !s.reset && st.ended.is_none() && !st.go_away_sent
            {
                let delta = std::mem::take(&mut s.unacked);
                s.recv_window += delta;
                Header::new(Kind::WindowUpdate, s.flags(0), self.id, delta).encode_into(&mut st.out);
                credit = true;
            }
        }
        if credit {
            self.shared.pump();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = {
            let mut st = self.shared.state();
            let st = &mut *st;
            if let Some((_, reason)) = &st.ended {
                return Poll::Ready(Err(session_over(reason)));
            }
            if st.go_away_sent {
                return Poll::Ready(Err(session_over("it is closing")));
            }
            let Some(s) = st.streams.get_mut(&self.id) else {
                return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
            };
            if s.reset {
                return Poll::Ready(Err(reset_by_peer()));
            }
            if s.send_closed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the stream was shut down",
                )));
            }
            if s.send_window == 0 {
                set_waker(&mut s.writer, cx);
                return Poll::Pending;
            }
            if st.out.len() >= self.shared.cfg.max_queued {
                set_waker(&mut s.writer, cx);
                if !s.waiting_room {
                    s.waiting_room = true;
                    st.out_waiters.push_back(self.id);
                }
                return Poll::Pending;
            }
            let n = buf.len().min(s.send_window as usize).min(self.shared.cfg.frame_size);
            s.send_window -= n as u32;
            Header::new(Kind::Data, s.flags(0), self.id, n as u32).encode_into(&mut st.out);
            st.out.extend_from_slice(&buf[..n]);
            n
        };
        self.shared.pump();
        Poll::Ready(Ok(n))
    }

    /// What was written is on its way: framed, and written to the transport by this task, by
    /// whoever was writing when it was framed, or by the driver.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut st = self.shared.state();
            let st = &mut *st;
            // After the goodbye nothing more is sent (the peer reads no further).
            if st.ended.is_some() || st.go_away_sent {
                return Poll::Ready(Ok(()));
            }
            let Some(s) = st.streams.get_mut(&self.id) else { return Poll::Ready(Ok(())) };
            if s.send_closed || s.reset {
                return Poll::Ready(Ok(()));
            }
            s.send_closed = true;
            Header::new(Kind::Data, s.flags(FIN), self.id, 0).encode_into(&mut st.out);
        }
        self.shared.pump();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    /// The stream leaves the session's table. A peer that may still send is told to stop (a
    /// reset); one that has finished hears the end of ours, if it has not yet. The frame is queued
    /// and the driver woken to send it: a drop does no I/O (it may happen anywhere, also while the
    /// runtime shuts down).
    fn drop(&mut self) {
        let queued = {
            let mut st = self.shared.state();
            let st = &mut *st;
            let Some(s) = st.streams.remove(&self.id) else { return };
            let flags = if st.ended.is_some() || st.go_away_sent || s.reset || s.syn_pending {
                None
            } else if !s.recv_closed {
                Some(RST)
            } else if !s.send_closed {
                Some(FIN)
            } else {
                None
            };
            if let Some(flags) = flags {
                Header::new(Kind::Data, flags, self.id, 0).encode_into(&mut st.out);
            }
            flags.is_some()
        };
        if queued {
            self.shared.io_waker.wake_by_ref();
        }
    }
}
