//! The consumer loop: decode each queue message, hand it to the comets, and commit it (in queue order)
//! only once every comet it addresses has accepted it (or has left the registry, or refused it as invalid).
//! A message abandoned at shutdown blocks its partition's commits, so the next consumer delivers it again.
//!
//! Each message becomes one frame (`ver 1`, `op = operation`, `seq 0`, `body = msg`). Undecodable messages
//! and ops below 1000 are skipped and counted in `imcloud_job_bad_messages_total`, except op 6 in a `PUSH`
//! (logic closing those connections). The message and its `Done` receivers (one per comet delivery) go
//! into a window of `IN_FLIGHT` (4,096) uncommitted messages; `commit_in_order` takes them in the order
//! received and commits a message only when all its deliveries settled, so an offset is never committed
//! before every earlier message of this job has ended its delivery. A lost worker or batcher counts as not
//! settled. A paced broadcast (`speed > 0`) counts as delivered once the comet has started it, and a comet
//! answers OK once the frames are queued on its connections, not written.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use imcloud_common::queue::{Delivery as QueueDelivery, QueueConsumer, QueueError};
use imcloud_common::room_history::Source;
use imcloud_proto::queue::{PushMsg, push_msg};
use imcloud_proto::{Frame, op};
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::comet_pool::{CometPool, Delivery, Done, all_settled};
use crate::room_batcher::RoomBatcher;

/// Messages handed on but not yet committed, before consuming waits.
const IN_FLIGHT: usize = 4096;
/// On shutdown, keep consuming while messages arrive within this gap (draining the queue).
const DRAIN_GAP: Duration = Duration::from_millis(200);
/// Longest drain: in a cluster other logic nodes may keep producing; what is left stays uncommitted in
/// Kafka for the other jobs.
const DRAIN_MAX: Duration = Duration::from_secs(10);
/// On shutdown, how long deliveries to unreachable comets are still retried before they are abandoned
/// (uncommitted, so another job delivers them).
const ABANDON_AFTER: Duration = Duration::from_secs(5);

pub struct Consumer {
    pub queue: Arc<dyn QueueConsumer>,
    pub pool: Arc<CometPool>,
    pub rooms: RoomBatcher,
    /// The queue's identity in room history sources (`kafka:<topic>`, or the embedded queue of this
    /// process): a persistent message's source is `<scope>/<partition>` and its offset there.
    pub scope: String,
}

fn proto(m: &PushMsg) -> imcloud_proto::protocol::Proto {
    let mut p: imcloud_proto::protocol::Proto = (&Frame::new(m.operation, 0, m.msg.clone())).into();
    p.accepted_unix_us = m.accepted_unix_us;
    p
}

impl Consumer {
    /// Consumes until `shutdown`, then (on an in-process queue only: a shared broker gives the rest to
    /// the other jobs) drains what is still queued, and returns after the last commit.
    pub async fn run(self, shutdown: CancellationToken) {
        let (inflight_tx, inflight_rx) = mpsc::channel(IN_FLIGHT);
        let mut committer = tokio::spawn(commit_in_order(self.queue.clone(), inflight_rx));
        loop {
            let next = tokio::select! {
                d = self.queue.recv() => d,
                _ = shutdown.cancelled() => break,
            };
            if !self.handle_next(next, &inflight_tx).await {
                break;
            }
        }
        // Drain: keep going while the queue still has messages, for at most DRAIN_MAX. Not on a shared
        // broker: there this job stops fetching, and what it did not take is the other jobs' to deliver.
        let drain_end = tokio::time::Instant::now() + DRAIN_MAX;
        while !self.queue.is_shared()
            && let Ok(next) = tokio::time::timeout(DRAIN_GAP, self.queue.recv()).await
        {
            if !self.handle_next(next, &inflight_tx).await {
                break;
            }
            if tokio::time::Instant::now() >= drain_end {
                tracing::warn!(
                    "messages still arriving {DRAIN_MAX:?} into shutdown; leaving them to the other jobs"
                );
                break;
            }
        }
        drop(self.rooms);
        drop(inflight_tx);
        if tokio::time::timeout(ABANDON_AFTER, &mut committer)
            .await
            .is_err()
        {
            tracing::warn!(
                "deliveries still pending {ABANDON_AFTER:?} after shutdown; abandoning them uncommitted"
            );
            self.pool.abandon();
            let _ = committer.await;
        }
    }

    /// `false` when the queue is closed.
    async fn handle_next(
        &self,
        next: Result<QueueDelivery, QueueError>,
        inflight: &mpsc::Sender<(QueueDelivery, Vec<Done>)>,
    ) -> bool {
        let d = match next {
            Ok(d) => d,
            Err(QueueError::Closed) => return false,
            Err(e) => {
                tracing::warn!("queue: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                return true;
            }
        };
        if let Some(waited) = d.produced_at.and_then(|t| t.elapsed().ok()) {
            metrics::histogram!("imcloud_job_queue_wait_seconds").record(waited.as_secs_f64());
        }
        let span = imcloud_common::traced_span!(
            "job.consume",
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.destination.partition.id = d.partition,
            messaging.kafka.offset = d.offset,
        );
        imcloud_common::trace_context::set_parent_from_headers(&span, &d.headers);
        let done = self.dispatch(&d).instrument(span).await;
        inflight.send((d, done)).await.is_ok()
    }

    async fn dispatch(&self, d: &QueueDelivery) -> Vec<Done> {
        let m = match PushMsg::decode(&d.payload[..]) {
            Ok(m) => m,
            Err(e) => {
                metrics::counter!("imcloud_job_bad_messages_total").increment(1);
                tracing::error!(
                    partition = d.partition,
                    offset = d.offset,
                    "undecodable queue message skipped: {e}"
                );
                return Vec::new();
            }
        };
        // Application ops, and op 6 to keys (the server closing those connections).
        let kick = m.operation == op::DISCONNECT_REPLY && m.r#type() == push_msg::Type::Push;
        if m.operation < op::APP_MIN && !kick {
            metrics::counter!("imcloud_job_bad_messages_total").increment(1);
            tracing::error!(
                offset = d.offset,
                "queue message with protocol op {} skipped",
                m.operation
            );
            return Vec::new();
        }
        metrics::counter!("imcloud_job_consumed_total", "type" => m.r#type().label()).increment(1);
        match m.r#type() {
            push_msg::Type::Push => {
                let delivery = Delivery::Keys {
                    protos: vec![proto(&m)],
                    keys: m.keys,
                };
                self.pool
                    .to_comet(&m.server, delivery)
                    .await
                    .into_iter()
                    .collect()
            }
            push_msg::Type::Room => {
                let persistent = m.persistent.then(|| Source {
                    scope: format!("{}/{}", self.scope, d.partition),
                    position: d.offset,
                });
                vec![self.rooms.add(m.room.clone(), proto(&m), persistent).await]
            }
            push_msg::Type::Broadcast => {
                let protos = Arc::new(vec![proto(&m)]);
                self.pool
                    .to_all(|| Delivery::Broadcast {
                        protos: protos.clone(),
                        speed: m.speed,
                    })
                    .await
            }
        }
    }
}

async fn commit_in_order(
    queue: Arc<dyn QueueConsumer>,
    mut rx: mpsc::Receiver<(QueueDelivery, Vec<Done>)>,
) {
    // Partitions with an abandoned message: committing a later offset would commit that one too.
    let mut blocked: HashSet<i32> = HashSet::new();
    while let Some((d, done)) = rx.recv().await {
        if !all_settled(done).await {
            blocked.insert(d.partition);
        }
        if blocked.contains(&d.partition) {
            continue;
        }
        if let Err(e) = queue.commit(&d).await {
            tracing::warn!(partition = d.partition, offset = d.offset, "commit: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use imcloud_common::queue_memory::{MemoryConsumer, memory_queue};
    use tokio::sync::oneshot;

    use super::*;
    use crate::comet_pool::Outcome;

    fn delivery(offset: i64) -> QueueDelivery {
        QueueDelivery {
            key: "k".into(),
            payload: Vec::new(),
            partition: 0,
            offset,
            produced_at: None,
            headers: Vec::new(),
        }
    }

    fn done(outcome: Option<Outcome>) -> Done {
        let (tx, rx) = oneshot::channel();
        match outcome {
            Some(o) => {
                let _ = tx.send(o);
            }
            None => drop(tx),
        }
        rx
    }

    /// Runs the committer over deliveries 0.. with these outcomes; returns the highest committed offset.
    async fn committed_after(outcomes: Vec<Option<Outcome>>) -> i64 {
        let (_producer, consumer) = memory_queue(8);
        let consumer: Arc<MemoryConsumer> = Arc::new(consumer);
        let (tx, rx) = mpsc::channel(16);
        let committer = tokio::spawn(commit_in_order(consumer.clone(), rx));
        for (offset, o) in outcomes.into_iter().enumerate() {
            tx.send((delivery(offset as i64), vec![done(o)]))
                .await
                .expect("committer alive");
        }
        drop(tx);
        committer.await.expect("committer");
        consumer.committed()
    }

    #[tokio::test]
    async fn settled_deliveries_are_committed() {
        use Outcome::*;
        let all = vec![Some(Delivered), Some(Rejected), Some(CometLeft)];
        assert_eq!(committed_after(all).await, 2);
    }

    #[tokio::test]
    async fn an_abandoned_delivery_blocks_later_commits_of_its_partition() {
        use Outcome::*;
        let outcomes = vec![Some(Delivered), Some(Abandoned), Some(Delivered)];
        assert_eq!(committed_after(outcomes).await, 0);
    }

    #[tokio::test]
    async fn a_lost_worker_counts_as_not_delivered() {
        use Outcome::*;
        let outcomes = vec![Some(Delivered), Some(Delivered), None, Some(Delivered)];
        assert_eq!(committed_after(outcomes).await, 1);
    }
}
