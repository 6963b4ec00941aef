//! The embedded queue: one bounded in-process FIFO (`queue_capacity` messages, default 65,536). A full
//! queue makes producers wait up to `SEND_TIMEOUT` (5 s), then fail with `QueueError::Full`: the push call
//! answers 503 (code -500). A keys/mids push that spans several comets may have queued the messages for
//! the comets before the failure; those are delivered.
//!
//! One partition (0), offsets counting from 0; `commit` records the highest committed offset. Nothing is
//! ever delivered twice, so here "at-least-once" comes down to "in order, once, lost if the process dies".

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc};

use crate::queue::{Delivery, QueueConsumer, QueueError, QueueProducer};
use crate::trace_context::Headers;

/// How long a producer waits for room in a full queue.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// A message as it waits in the queue: key, payload, when it was sent, and its headers.
type Queued = (String, Vec<u8>, SystemTime, Headers);

pub struct MemoryProducer {
    tx: mpsc::Sender<Queued>,
    timeout: Duration,
}

pub struct MemoryConsumer {
    rx: Mutex<mpsc::Receiver<Queued>>,
    next_offset: AtomicI64,
    committed: Arc<AtomicI64>,
}

/// A queue holding at most `capacity` messages.
pub fn memory_queue(capacity: usize) -> (MemoryProducer, MemoryConsumer) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        MemoryProducer {
            tx,
            timeout: SEND_TIMEOUT,
        },
        MemoryConsumer {
            rx: Mutex::new(rx),
            next_offset: AtomicI64::new(0),
            committed: Arc::new(AtomicI64::new(-1)),
        },
    )
}

impl MemoryProducer {
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl MemoryConsumer {
    /// The highest committed offset (-1 before the first commit).
    pub fn committed(&self) -> i64 {
        self.committed.load(Ordering::Acquire)
    }
}

#[async_trait]
impl QueueProducer for MemoryProducer {
    async fn send(&self, key: &str, payload: Vec<u8>) -> Result<(), QueueError> {
        self.send_with_headers(key, payload, Headers::new()).await
    }

    async fn send_with_headers(
        &self,
        key: &str,
        payload: Vec<u8>,
        headers: Headers,
    ) -> Result<(), QueueError> {
        let queued = (key.to_string(), payload, SystemTime::now(), headers);
        match self.tx.send_timeout(queued, self.timeout).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(QueueError::Full(self.timeout)),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(QueueError::Closed),
        }
    }
}

#[async_trait]
impl QueueConsumer for MemoryConsumer {
    async fn recv(&self) -> Result<Delivery, QueueError> {
        let mut rx = self.rx.lock().await;
        let (key, payload, sent, headers) = rx.recv().await.ok_or(QueueError::Closed)?;
        let offset = self.next_offset.fetch_add(1, Ordering::AcqRel);
        Ok(Delivery {
            key,
            payload,
            partition: 0,
            offset,
            produced_at: Some(sent),
            headers,
        })
    }

    async fn commit(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.committed.fetch_max(delivery.offset, Ordering::AcqRel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let (p, c) = memory_queue(64);
        crate::queue_conformance::run(&p, &c).await;
        assert!(c.committed() >= 0);
    }

    #[tokio::test]
    async fn full_queue_times_out() {
        let (p, _c) = memory_queue(1);
        let p = p.with_timeout(Duration::from_millis(20));
        p.send("k", vec![1]).await.unwrap();
        assert!(matches!(
            p.send("k", vec![2]).await,
            Err(QueueError::Full(_))
        ));
    }

    #[tokio::test]
    async fn closed_queue_is_reported() {
        let (p, c) = memory_queue(1);
        drop(c);
        assert!(matches!(
            p.send("k", vec![1]).await,
            Err(QueueError::Closed)
        ));
    }
}
