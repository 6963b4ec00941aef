//! A connection's bounded outbound queue, bounded in bytes. Unlike a tokio mpsc channel, which allocates
//! a block of slots up front, it allocates nothing while empty, so idle connections stay small.
//!
//! Policy when full: [`Outbox::push`] refuses the frame ([`PushError::Full`]) and the caller closes the
//! connection as a slow consumer; nothing already queued is dropped. Two bounds apply:
//! - per connection, `limit` bytes (each frame counts its length plus [`FRAME_OVERHEAD`]);
//! - per comet, the shared [`OutboxBudget`]: once the total of every outbox reaches it, only empty
//!   outboxes accept a frame. A reader that keeps up (its outbox drains between pushes) is never refused;
//!   the ones already behind are.
//!
//! A frame into an empty outbox is always accepted, whatever its size, so a push larger than the bound is
//! still delivered to a reader that keeps up. The memory one connection can pin is therefore at most
//! `limit` plus one frame. Frames shared by several connections count in full in each, so the budget is
//! an upper bound of what outboxes hold, not an exact count.
//!
//! It shrinks back to a few slots after a burst and refuses frames once closed. Its wake-up also carries the
//! channel's kicks ([`Outbox::wake`]), so the connection task waits on one notification.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::out_frame::OutFrame;

/// Capacity kept after a burst drains; more is released.
const KEEP_CAPACITY: usize = 8;
/// What a queued frame costs beyond its bytes (its slot and the shared buffer's header).
pub const FRAME_OVERHEAD: usize = 64;

#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    Full,
    Closed,
}

/// The bytes queued in every outbox of a comet, against its budget.
#[derive(Debug)]
pub struct OutboxBudget {
    used: AtomicUsize,
    limit: usize,
}

impl OutboxBudget {
    pub fn new(limit: usize) -> Arc<OutboxBudget> {
        Arc::new(OutboxBudget {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    /// Bytes queued in all outboxes now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

struct State {
    frames: VecDeque<OutFrame>,
    bytes: usize,
    closed: bool,
}

pub struct Outbox {
    state: Mutex<State>,
    limit: usize,
    budget: Arc<OutboxBudget>,
    ready: Notify,
}

fn cost(f: &OutFrame) -> usize {
    f.len() + FRAME_OVERHEAD
}

impl Outbox {
    pub fn new(limit: usize, budget: Arc<OutboxBudget>) -> Outbox {
        Outbox {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                bytes: 0,
                closed: false,
            }),
            limit,
            budget,
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Critical sections are single queue operations, so a poisoned queue is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame without waiting.
    pub fn push(&self, frame: OutFrame) -> Result<(), PushError> {
        let c = cost(&frame);
        {
            let mut st = self.lock();
            if st.closed {
                return Err(PushError::Closed);
            }
            if st.bytes > 0 {
                let over_budget = self.budget.used() + c > self.budget.limit;
                if st.bytes + c > self.limit || over_budget {
                    return Err(PushError::Full);
                }
            }
            st.bytes += c;
            st.frames.push_back(frame);
        }
        self.budget.used.fetch_add(c, Ordering::Relaxed);
        self.ready.notify_one();
        Ok(())
    }

    pub fn try_pop(&self) -> Option<OutFrame> {
        let mut st = self.lock();
        let frame = st.frames.pop_front()?;
        let c = cost(&frame);
        st.bytes -= c;
        if st.frames.is_empty() && st.frames.capacity() > KEEP_CAPACITY {
            st.frames.shrink_to(KEEP_CAPACITY);
        }
        drop(st);
        self.budget.used.fetch_sub(c, Ordering::Relaxed);
        Some(frame)
    }

    /// The next frame; waits while the queue is empty. Cancel-safe.
    pub async fn pop(&self) -> OutFrame {
        loop {
            if let Some(f) = self.try_pop() {
                return f;
            }
            self.ready.notified().await;
        }
    }

    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.lock().frames.is_empty()
    }

    /// Wakes the connection task as a push does, without queueing anything (a kick, see
    /// [`crate::channel::Channel::kick`]): one wake-up source per connection, so its task waits on one
    /// `Notified` instead of two.
    pub fn wake(&self) {
        self.ready.notify_one();
    }

    /// Resolves after the next push or [`Outbox::wake`] (or at once if one happened since the last wait).
    /// Cancel-safe; meant for one waiter, the connection task.
    pub async fn woken(&self) {
        self.ready.notified().await;
    }

    /// Refuses further frames and releases those still queued (the connection is ending).
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        let freed = std::mem::take(&mut st.bytes);
        st.frames = VecDeque::new();
        drop(st);
        self.budget.used.fetch_sub(freed, Ordering::Relaxed);
    }

    /// Bytes queued (frames plus their overhead).
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        self.budget.used.fetch_sub(st.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use imcloud_proto::Frame;

    use super::*;

    fn frame(len: usize) -> OutFrame {
        OutFrame::frame(&Frame::new(1000, 0, Bytes::from(vec![0u8; len])))
    }

    #[tokio::test]
    async fn bounded_fifo_that_wakes_the_reader() {
        let o = Arc::new(Outbox::new(
            2 * cost(&frame(10)),
            OutboxBudget::new(1 << 20),
        ));
        let reader = {
            let o = o.clone();
            tokio::spawn(async move { (o.pop().await, o.pop().await) })
        };
        tokio::task::yield_now().await;
        o.push(frame(1)).unwrap();
        o.push(frame(2)).unwrap();
        assert_eq!(reader.await.unwrap(), (frame(1), frame(2)));
        o.push(frame(10)).unwrap();
        o.push(frame(10)).unwrap();
        assert_eq!(o.push(frame(10)), Err(PushError::Full));
        assert_eq!(o.try_pop(), Some(frame(10)));
        o.close();
        assert_eq!(o.push(frame(1)), Err(PushError::Closed));
    }

    #[test]
    fn the_bound_is_in_bytes_and_an_empty_outbox_takes_any_frame() {
        let o = Outbox::new(1000, OutboxBudget::new(1 << 30));
        o.push(frame(5000))
            .expect("an empty outbox takes a frame larger than its bound");
        assert_eq!(o.push(frame(1)), Err(PushError::Full));
        assert!(o.try_pop().is_some());
        for _ in 0..8 {
            o.push(frame(40)).unwrap();
        }
        assert_eq!(
            o.push(frame(40)),
            Err(PushError::Full),
            "9 x (2 + 16 + 40 + 64) bytes > 1000"
        );
        assert!(o.queued_bytes() <= 1000);
    }

    #[test]
    fn the_comet_budget_refuses_only_readers_that_are_behind() {
        let budget = OutboxBudget::new(3 * cost(&frame(100)));
        let slow = Outbox::new(1 << 20, budget.clone());
        let fast = Outbox::new(1 << 20, budget.clone());
        slow.push(frame(100)).unwrap();
        slow.push(frame(100)).unwrap();
        slow.push(frame(100)).unwrap();
        assert_eq!(slow.push(frame(100)), Err(PushError::Full), "over budget");
        fast.push(frame(100))
            .expect("an empty outbox is never refused");
        assert_eq!(budget.used(), 4 * cost(&frame(100)));
        assert!(fast.try_pop().is_some());
        slow.close();
        assert_eq!(budget.used(), 0, "a closed outbox gives its bytes back");
        drop(fast);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn an_empty_outbox_allocates_nothing() {
        let o = Outbox::new(1 << 20, OutboxBudget::new(1 << 30));
        assert_eq!(o.lock().frames.capacity(), 0);
        for _ in 0..100 {
            o.push(frame(1)).unwrap();
        }
        while o.try_pop().is_some() {}
        assert!(
            o.lock().frames.capacity() <= KEEP_CAPACITY,
            "a drained burst gives its memory back"
        );
    }
}
