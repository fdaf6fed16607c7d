//! Copies bytes both ways between a tunnel stream and the connection it was dialed to
//! ([`splice`]), with buffers that start small and grow on full reads.
//!
//! Most of an agent's streams are watches: open for minutes, a few hundred bytes now and then.
//! Two 64-KiB buffers per stream (tokio's `copy_bidirectional_with_sizes`, as before) made a
//! thousand watches cost the agent 128 MB; here an idle stream holds 2 × [`START`] and a bulk one
//! reaches [`MAX`] after a few reads.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Each direction's first buffer.
pub(crate) const START: usize = 4 * 1024;
/// The largest a buffer grows (a tunnel frame's default size).
pub(crate) const MAX: usize = 64 * 1024;

/// One direction: read into `buf`, write it all out; at end of input, flush and shut the writer
/// down (a half-close: the other direction carries on).
struct Pump {
    buf: Vec<u8>,
    /// Bytes `pos..len` of `buf` are still to be written.
    pos: usize,
    len: usize,
    eof: bool,
    done: bool,
    /// The last read filled the buffer: grow it before the next.
    full: bool,
    copied: u64,
}

impl Pump {
    fn new() -> Self {
        Pump { buf: Vec::new(), pos: 0, len: 0, eof: false, done: false, full: false, copied: 0 }
    }

    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.done {
                return Poll::Ready(Ok(self.copied));
            }
            if self.pos == self.len && !self.eof {
                if self.buf.is_empty() {
                    self.buf = vec![0; START];
                } else if self.full && self.buf.len() < MAX {
                    self.buf = vec![0; (self.buf.len() * 2).min(MAX)];
                }
                let mut rb = ReadBuf::new(&mut self.buf);
                match r.as_mut().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        // Nothing to read: what was written must not sit in the writer's buffer.
                        ready!(w.as_mut().poll_flush(cx))?;
                        return Poll::Pending;
                    }
                }
                let n = rb.filled().len();
                self.full = n == self.buf.len();
                (self.pos, self.len) = (0, n);
                self.eof = n == 0;
            }
            while self.pos < self.len {
                let n = ready!(w.as_mut().poll_write(cx, &self.buf[self.pos..self.len]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.copied += n as u64;
            }
            if self.eof {
                ready!(w.as_mut().poll_flush(cx))?;
                ready!(w.as_mut().poll_shutdown(cx))?;
                self.done = true;
                self.buf = Vec::new();
            }
        }
    }
}

/// Copies `a` → `b` and `b` → `a` until both directions reached end of input (each then shuts
/// down its writer), or one fails. Returns the bytes copied each way.
///
/// # Errors
/// The first read, write or shutdown error of either direction.
pub(crate) async fn splice<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let (mut a_to_b, mut b_to_a) = (Pump::new(), Pump::new());
    poll_fn(|cx| {
        let forward = a_to_b.poll_copy(cx, Pin::new(&mut *a), Pin::new(&mut *b))?;
        let back = b_to_a.poll_copy(cx, Pin::new(&mut *b), Pin::new(&mut *a))?;
        match (forward, back) {
            (Poll::Ready(f), Poll::Ready(b)) => Poll::Ready(Ok((f, b))),
            _ => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    #[tokio::test]
    async fn bytes_flow_both_ways_and_each_end_of_input_half_closes_its_direction() {
        let (mut client, mut a) = duplex(1024);
        let (mut b, mut server) = duplex(1024);
        let task = tokio::spawn(async move { splice(&mut a, &mut b).await });

        let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let answer = big.clone();
        let server = tokio::spawn(async move {
            // The server sees the request and its end, and can still answer.
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            server.write_all(&answer).await.unwrap();
            server.shutdown().await.unwrap();
            got
        });
        client.write_all(b"request").await.unwrap();
        client.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(server.await.unwrap(), b"request");
        assert_eq!(back, big);
        assert_eq!(task.await.unwrap().unwrap(), (7, 300_000));
    }

    #[test]
    fn a_buffer_starts_small_and_grows_only_on_full_reads() {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut sink = Vec::new();
        // A trickle (a watch's events): reads of a few hundred bytes never grow the buffer.
        let mut pump = Pump::new();
        let mut trickle = Chunks::of(&[&[1; 100], &[2; 300], &[3; 200]]);
        assert!(pump.poll_copy(&mut cx, Pin::new(&mut trickle), Pin::new(&mut sink)).is_pending());
        assert_eq!(pump.buf.len(), START);
        assert_eq!(pump.copied, 600);
        // Bulk: each full read doubles it, up to MAX.
        let mut pump = Pump::new();
        let mut bulk = Chunks::of(&[&vec![7u8; 1 << 20]]);
        assert!(pump.poll_copy(&mut cx, Pin::new(&mut bulk), Pin::new(&mut sink)).is_pending());
        assert_eq!(pump.buf.len(), MAX);
        assert_eq!(pump.copied, 1 << 20);
    }

    /// Hands out the given chunks, one (cut to the buffer) per read, then stays pending.
    struct Chunks(std::collections::VecDeque<Vec<u8>>);

    impl Chunks {
        fn of(chunks: &[&[u8]]) -> Self {
            Chunks(chunks.iter().map(|c| c.to_vec()).collect())
        }
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let Some(front) = self.0.front_mut() else { return Poll::Pending };
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front[..n]);
            front.drain(..n);
            if front.is_empty() {
                self.0.pop_front();
            }
            Poll::Ready(Ok(()))
        }
    }
}
