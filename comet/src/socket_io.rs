//! A connection's socket I/O, shaped so that an idle connection holds no buffer and no call ever loses
//! or repeats a byte when its future is dropped (every `select!` branch is cancel-safe):
//!
//! - [`poll_read_chunk`] reads through a stack buffer and appends to the caller's buffer only what
//!   arrived, so nothing is allocated while the connection waits for data.
//! - [`WriteQueue`] holds what is still to be written, as shared `Bytes` written with vectored writes (many
//!   frames per system call, no copy into a per-connection buffer), and releases its slots once all is
//!   written. How much of the first string has been
//!   written is kept in the queue, not in a future, so an interrupted flush resumes where it stopped.
//!
//! - `read_while_writing` waits for the client while writing, and stops reading while `MAX_UNWRITTEN`
//!   (64 KiB) of replies wait, so a client that sends requests but never reads their replies is bounded.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket per read call.
const READ_CHUNK: usize = 2048;
/// Unwritten bytes beyond which a connection stops reading from its peer: a client that sends requests
/// but never reads the replies stalls itself (and then misses its heartbeat deadline) instead of growing
/// the queue.
pub const MAX_UNWRITTEN: usize = 64 * 1024;

/// What [`read_while_writing`] saw happen first.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// This many bytes arrived (0: the peer ended the stream).
    Read(usize),
    /// Everything queued has been written.
    Written,
}

/// Waits until `read` gets bytes from the peer, or until everything `out` holds has been written,
/// writing meanwhile as far as the socket takes it. Reading pauses while more than [`MAX_UNWRITTEN`]
/// bytes wait to be written.
pub async fn read_while_writing<S, R>(
    stream: &mut S,
    out: &mut WriteQueue,
    mut read: R,
) -> io::Result<Progress>
where
    S: AsyncWrite + Unpin,
    R: FnMut(&mut S, &mut Context<'_>) -> Poll<io::Result<usize>>,
{
    poll_fn(|cx| poll_read_while_writing(stream, out, &mut read, cx)).await
}

/// [`read_while_writing`] as a poll function, for a caller that keeps no future of its own.
pub fn poll_read_while_writing<S, R>(
    stream: &mut S,
    out: &mut WriteQueue,
    read: &mut R,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Progress>>
where
    S: AsyncWrite + Unpin,
    R: FnMut(&mut S, &mut Context<'_>) -> Poll<io::Result<usize>>,
{
    if !out.is_empty() {
        match out.poll_flush(stream, cx) {
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => return Poll::Ready(Ok(Progress::Written)),
            Poll::Pending if out.unwritten() > MAX_UNWRITTEN => return Poll::Pending,
            Poll::Pending => {}
        }
    }
    read(stream, cx).map_ok(Progress::Read)
}

/// Reads what the socket has (up to [`READ_CHUNK`] bytes) and appends it to `buf`; `Ok(0)` at the end
/// of the stream. Allocates only when bytes arrive.
pub fn poll_read_chunk<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let mut chunk = [0u8; READ_CHUNK];
    let mut rb = ReadBuf::new(&mut chunk);
    match Pin::new(stream).poll_read(cx, &mut rb) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Ready(Ok(())) => {
            buf.extend_from_slice(rb.filled());
            Poll::Ready(Ok(rb.filled().len()))
        }
    }
}

/// Most byte strings handed to one write call.
const MAX_SLICES: usize = 64;

#[derive(Debug, Default)]
pub struct WriteQueue {
    items: VecDeque<Bytes>,
    /// Bytes of `items[0]` already written.
    written: usize,
    /// Total length of `items`.
    unwritten: usize,
}

impl WriteQueue {
    pub fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.unwritten += bytes.len();
            self.items.push_back(bytes);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes queued and not yet written.
    pub fn unwritten(&self) -> usize {
        self.unwritten - self.written
    }

    /// Writes everything queued, then flushes the stream.
    pub async fn flush<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) -> io::Result<()> {
        poll_fn(|cx| self.poll_flush(stream, cx)).await
    }

    /// Writes as much as the stream takes; ready once everything is written and flushed.
    pub fn poll_flush<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.items.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut n = 0;
            for (i, item) in self.items.iter().take(MAX_SLICES).enumerate() {
                slices[i] = IoSlice::new(if i == 0 { &item[self.written..] } else { item });
                n += 1;
            }
            let wrote = match Pin::new(&mut *stream).poll_write_vectored(cx, &slices[..n]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(k)) => k,
            };
            self.advance(wrote);
        }
        // Nothing in flight: give the slots back, so an idle connection holds no write queue (an empty
        // `VecDeque` allocates nothing; keeping 4 slots cost 128 bytes per connection after the auth reply).
        if self.items.capacity() > 0 {
            self.items = VecDeque::new();
        }
        Pin::new(&mut *stream).poll_flush(cx)
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(first) = self.items.front() else {
                return;
            };
            let left = first.len() - self.written;
            if n >= left {
                n -= left;
                self.unwritten -= first.len();
                self.items.pop_front();
                self.written = 0;
            } else {
                self.written += n;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes at most `step` bytes per call and is sometimes not ready.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            if self.calls.is_multiple_of(3) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let mut n = 0;
            for b in bufs {
                let take = (self.step - n).min(b.len());
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.step {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn partial_writes_and_cancelled_flushes_lose_and_repeat_nothing() {
        let mut expected = Vec::new();
        let mut q = WriteQueue::default();
        for i in 0..200u8 {
            let item = vec![i; (i as usize % 7) + 1];
            expected.extend_from_slice(&item);
            q.push(Bytes::from(item));
        }
        let mut sink = Trickle {
            got: Vec::new(),
            step: 5,
            calls: 0,
        };
        // Drop the flush after every few polls, as a select! that picked another branch would.
        while !q.is_empty() {
            let _ =
                tokio::time::timeout(std::time::Duration::from_micros(1), q.flush(&mut sink)).await;
            tokio::task::yield_now().await;
        }
        q.flush(&mut sink).await.unwrap();
        assert_eq!(sink.got, expected);
        assert_eq!(q.items.capacity(), 0, "a written queue holds no memory");
    }
}
