//! A connection's bounded outbound queue. Unlike a tokio mpsc channel, which allocates a block of slots up
//! front, it allocates nothing while empty, so idle connections stay small.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

/// Capacity kept after a burst drains; more is released.
const KEEP_CAPACITY: usize = 8;

#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    Full,
    Closed,
}

struct State {
    frames: VecDeque<Bytes>,
    closed: bool,
}

pub struct Outbox {
    state: Mutex<State>,
    capacity: usize,
    ready: Notify,
}

impl Outbox {
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                closed: false,
            }),
            capacity: capacity.max(1),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Critical sections are single queue operations, so a poisoned queue is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame without waiting.
    pub fn push(&self, frame: Bytes) -> Result<(), PushError> {
        {
            let mut st = self.lock();
            if st.closed {
                return Err(PushError::Closed);
            }
            if st.frames.len() >= self.capacity {
                return Err(PushError::Full);
            }
            st.frames.push_back(frame);
        }
        self.ready.notify_one();
        Ok(())
    }

    pub fn try_pop(&self) -> Option<Bytes> {
        let mut st = self.lock();
        let frame = st.frames.pop_front();
        if st.frames.is_empty() && st.frames.capacity() > KEEP_CAPACITY {
            st.frames.shrink_to(KEEP_CAPACITY);
        }
        frame
    }

    /// The next frame; waits while the queue is empty. Cancel-safe.
    pub async fn pop(&self) -> Bytes {
        loop {
            if let Some(f) = self.try_pop() {
                return f;
            }
            self.ready.notified().await;
        }
    }

    /// Refuses further frames (the connection is ending).
    pub fn close(&self) {
        self.lock().closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_fifo_that_wakes_the_reader() {
        let o = std::sync::Arc::new(Outbox::new(2));
        let reader = {
            let o = o.clone();
            tokio::spawn(async move { (o.pop().await, o.pop().await) })
        };
        tokio::task::yield_now().await;
        o.push(Bytes::from_static(b"a")).unwrap();
        o.push(Bytes::from_static(b"b")).unwrap();
        assert_eq!(
            reader.await.unwrap(),
            (Bytes::from_static(b"a"), Bytes::from_static(b"b"))
        );
        o.push(Bytes::from_static(b"c")).unwrap();
        o.push(Bytes::from_static(b"d")).unwrap();
        assert_eq!(o.push(Bytes::from_static(b"e")), Err(PushError::Full));
        assert_eq!(o.try_pop(), Some(Bytes::from_static(b"c")));
        o.close();
        assert_eq!(o.push(Bytes::from_static(b"f")), Err(PushError::Closed));
    }

    #[test]
    fn an_empty_outbox_allocates_nothing() {
        let o = Outbox::new(256);
        assert_eq!(o.lock().frames.capacity(), 0);
        for _ in 0..100 {
            o.push(Bytes::from_static(b"x")).unwrap();
        }
        while o.try_pop().is_some() {}
        assert!(
            o.lock().frames.capacity() <= KEEP_CAPACITY,
            "a drained burst gives its memory back"
        );
    }
}
