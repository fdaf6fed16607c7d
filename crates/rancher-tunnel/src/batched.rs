//! A session's byte stream flushed once per turn of its driver, not once per frame.
//!
//! yamux flushes its socket after every frame it writes. Under TLS each flush is a record and a
//! `writev`, and the other end reads them one by one: with many streams answering at once (64
//! clients through the proxy), a system call per frame on both ends. [`Batched`] takes yamux's
//! flush to mean "before the driver sleeps": the first flush asked in a turn of the session's
//! driver (one poll of its task) is put off and noted ([`Turns::take_flush_wanted`]); before the
//! driver returns `Pending` it starts a new turn and polls yamux once more, whose loop asks for a
//! flush again, and that one is done — once for every frame the turn wrote.
//!
//! The frames still reach the transport as they are written (the WebSocket transport gathers
//! them into one message per flush); only the flush waits, and never past the driver's poll.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Counts the turns of a session's driver ([`Turns::next`] at the start of each) and notes a flush
/// put off in one.
#[derive(Debug, Default)]
pub(crate) struct Turns {
    /// Turn 0 is "none": the first turn is 1.
    turn: AtomicU64,
    flush_wanted: AtomicBool,
}

impl Turns {
    pub(crate) fn next(&self) {
        self.turn.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a flush was put off since this was last asked: the driver must then take another turn
    /// (and poll the multiplexer, which flushes) before it sleeps.
    pub(crate) fn take_flush_wanted(&self) -> bool {
        self.flush_wanted.swap(false, Ordering::Relaxed)
    }

    fn now(&self) -> u64 {
        self.turn.load(Ordering::Relaxed)
    }
}

/// `io` whose flushes wait for the next turn of the driver counting `T`'s [`Turns`] (the session's
/// shared state holds them: a session's driver is kept as small as it can be).
pub(crate) struct Batched<S, T> {
    io: S,
    turns: Arc<T>,
    /// The turn in which a flush was put off, until it is done; 0 when none waits.
    deferred_in: u64,
}

impl<S, T: AsRef<Turns>> Batched<S, T> {
    pub(crate) fn new(io: S, turns: Arc<T>) -> Self {
        Self { io, turns, deferred_in: 0 }
    }
}

impl<S: AsyncRead + Unpin, T> AsyncRead for Batched<S, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin, T: AsRef<Turns>> AsyncWrite for Batched<S, T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let turns = (*self.turns).as_ref();
        let now = turns.now();
        match self.deferred_in {
            0 => {
                turns.flush_wanted.store(true, Ordering::Relaxed);
                self.deferred_in = now;
                Poll::Ready(Ok(()))
            }
            // Already put off in this turn.
            turn if turn == now => Poll::Ready(Ok(())),
            _ => {
                let flushed = Pin::new(&mut self.io).poll_flush(cx);
                if flushed.is_ready() {
                    self.deferred_in = 0;
                }
                flushed
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shut = Pin::new(&mut self.io).poll_shutdown(cx);
        if shut.is_ready() {
            self.deferred_in = 0;
        }
        shut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    /// A writer that records what it is given and counts flushes.
    #[derive(Default)]
    struct Counting {
        written: Vec<u8>,
        flushes: usize,
    }

    impl AsyncRead for Counting {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Counting {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }
    }

    impl AsRef<Turns> for Turns {
        fn as_ref(&self) -> &Turns {
            self
        }
    }

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One turn of a driver that writes and flushes `frames`.
    fn turn(io: &mut Batched<Counting, Turns>, turns: &Turns, waker: &Arc<CountingWaker>, frames: &[&[u8]]) {
        let waker = waker.clone().into();
        let mut cx = Context::from_waker(&waker);
        turns.next();
        for frame in frames {
            let written = Pin::new(&mut *io).poll_write(&mut cx, frame);
            assert!(matches!(written, Poll::Ready(Ok(n)) if n == frame.len()));
            assert!(matches!(Pin::new(&mut *io).poll_flush(&mut cx), Poll::Ready(Ok(()))));
        }
    }

    /// Frames written and flushed in one turn reach the transport at once and are flushed
    /// together in the next turn; the driver learns that it must take one, without being woken.
    #[test]
    fn the_flushes_of_one_turn_become_one_in_the_next() {
        let turns = Arc::new(Turns::default());
        let waker = Arc::new(CountingWaker::default());
        let mut io = Batched::new(Counting::default(), turns.clone());

        turn(&mut io, &turns, &waker, &[b"a", b"b", b"c"]);
        assert_eq!(io.io.written, b"abc", "writes are not held back");
        assert_eq!(io.io.flushes, 0, "the flush waits for the next turn");
        assert!(turns.take_flush_wanted(), "the driver is told to take another turn");
        assert!(!turns.take_flush_wanted(), "once");

        turn(&mut io, &turns, &waker, &[b"d", b"e"]);
        assert_eq!(io.io.flushes, 1, "one flush for the first turn's frames, at the next turn's first");
        assert!(turns.take_flush_wanted(), "and the second turn's own flush is put off");
        assert_eq!(waker.0.load(Ordering::Relaxed), 0, "nothing wakes the driver: it is running");

        turn(&mut io, &turns, &waker, &[]);
        assert_eq!(io.io.flushes, 1, "a turn without a flush asked does none");
        let waker_ref = waker.clone().into();
        let mut cx = Context::from_waker(&waker_ref);
        turns.next();
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(io.io.flushes, 2, "the put-off flush is done at the next one asked");
        assert_eq!(io.deferred_in, 0);
        assert_eq!(io.io.written, b"abcde");
    }

    /// Shutting down writes out what a put-off flush held.
    #[test]
    fn a_shutdown_does_the_put_off_flush() {
        let turns = Arc::new(Turns::default());
        let waker = Arc::new(CountingWaker::default());
        let mut io = Batched::new(Counting::default(), turns.clone());
        turn(&mut io, &turns, &waker, &[b"bye"]);
        let waker_ref = waker.clone().into();
        let mut cx = Context::from_waker(&waker_ref);
        assert!(Pin::new(&mut io).poll_shutdown(&mut cx).is_ready());
        assert_eq!((io.io.flushes, io.deferred_in), (1, 0));
    }
}
