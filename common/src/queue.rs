//! The queue between logic (producer) and job (consumer). Embedded: [`crate::queue_memory`]; distributed: Kafka
//! (`queue_kafka`). `imcloud/src/adapters.rs` picks one from the configuration.
//!
//! Payloads are encoded `imcloud.queue.PushMsg`s. What every implementation promises (and
//! `queue_conformance` checks): `send` returns once the queue accepted the message (Kafka: the broker
//! acknowledged it); messages with the same key keep their order; consumers of one group share the
//! messages; a consumer commits a delivery only after it has been handled, and a commit covers every
//! earlier delivery of its partition (at-least-once); `close` makes the commits durable and leaves the
//! group. Record headers (`send_with_headers`, `Delivery::headers`) carry the trace context; `health` is
//! the readiness check; `is_shared` tells a stopping job whether others take over what it leaves.

use std::time::SystemTime;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue full: no room within {0:?}")]
    Full(std::time::Duration),
    #[error("queue closed")]
    Closed,
    #[error("queue unavailable: {0}")]
    Unavailable(String),
}

/// One consumed message and where it came from.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub key: String,
    pub payload: Vec<u8>,
    pub partition: i32,
    pub offset: i64,
    /// When the producer handed the message over (Kafka: the record's timestamp, in milliseconds), if
    /// known: the consumer reports how long messages waited in the queue.
    pub produced_at: Option<SystemTime>,
    /// Record headers as produced (the W3C trace context: `traceparent`, `tracestate`); empty if none.
    pub headers: crate::trace_context::Headers,
}

#[async_trait]
pub trait QueueProducer: Send + Sync + 'static {
    /// Returns once the queue has accepted the message (for Kafka: acknowledged by the broker).
    async fn send(&self, key: &str, payload: Vec<u8>) -> Result<(), QueueError>;
    /// How many partitions messages spread over by key (the embedded queue is one FIFO). Producers use
    /// it to split a target's traffic over several keys, so that every consumer gets a share.
    fn partitions(&self) -> u32 {
        1
    }
    /// [`QueueProducer::send`] with record headers, which the consumer gets back in [`Delivery::headers`].
    async fn send_with_headers(
        &self,
        key: &str,
        payload: Vec<u8>,
        headers: crate::trace_context::Headers,
    ) -> Result<(), QueueError> {
        let _ = headers;
        self.send(key, payload).await
    }
    /// Whether the queue answers (readiness): one round trip to the broker, or `Ok` in-process.
    async fn health(&self) -> Result<(), QueueError> {
        Ok(())
    }
}

#[async_trait]
pub trait QueueConsumer: Send + Sync + 'static {
    /// The next message; several consumers of one group share the messages.
    async fn recv(&self) -> Result<Delivery, QueueError>;
    /// Marks a delivery (and all earlier ones of its partition) as handled.
    async fn commit(&self, delivery: &Delivery) -> Result<(), QueueError>;
    /// Makes the commits durable and leaves the group, so other consumers take over at once.
    async fn close(&self) {}
    /// Whether other consumers can take over this one's messages (a shared broker): then a stopping job
    /// stops fetching at once; an in-process queue must be drained by its only consumer.
    fn is_shared(&self) -> bool {
        false
    }
    /// Whether the queue answers (readiness): one round trip to the broker, or `Ok` in-process.
    async fn health(&self) -> Result<(), QueueError> {
        Ok(())
    }
}
