//! The consumer loop: decode each queue message, hand it to the comets, and commit it (in queue order)
//! only once every comet it addresses has accepted it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use imcloud_common::queue::{Delivery as QueueDelivery, QueueConsumer, QueueError};
use imcloud_proto::queue::{PushMsg, push_msg};
use imcloud_proto::{Frame, op};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::comet_pool::{CometPool, Delivery};
use crate::room_batcher::RoomBatcher;

/// Messages handed on but not yet committed, before consuming waits.
const IN_FLIGHT: usize = 4096;
/// On shutdown, keep consuming while messages arrive within this gap (draining the queue).
const DRAIN_GAP: Duration = Duration::from_millis(200);

pub struct Consumer {
    pub queue: Arc<dyn QueueConsumer>,
    pub pool: Arc<CometPool>,
    pub rooms: RoomBatcher,
}

fn proto(m: &PushMsg) -> imcloud_proto::protocol::Proto {
    (&Frame::new(m.operation, 0, m.msg.clone())).into()
}

impl Consumer {
    /// Consumes until `shutdown`, then drains what is still queued, and returns after the last commit.
    pub async fn run(self, shutdown: CancellationToken) {
        let (inflight_tx, inflight_rx) = mpsc::channel(IN_FLIGHT);
        let committer = tokio::spawn(commit_in_order(self.queue.clone(), inflight_rx));
        loop {
            let next = tokio::select! {
                d = self.queue.recv() => d,
                _ = shutdown.cancelled() => break,
            };
            if !self.handle_next(next, &inflight_tx).await {
                break;
            }
        }
        // Drain: keep going while the queue still has messages.
        while let Ok(next) = tokio::time::timeout(DRAIN_GAP, self.queue.recv()).await {
            if !self.handle_next(next, &inflight_tx).await {
                break;
            }
        }
        drop(self.rooms);
        drop(inflight_tx);
        let _ = committer.await;
    }

    /// `false` when the queue is closed.
    async fn handle_next(
        &self,
        next: Result<QueueDelivery, QueueError>,
        inflight: &mpsc::Sender<(QueueDelivery, Vec<oneshot::Receiver<()>>)>,
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
        let done = self.dispatch(&d).await;
        inflight.send((d, done)).await.is_ok()
    }

    async fn dispatch(&self, d: &QueueDelivery) -> Vec<oneshot::Receiver<()>> {
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
        if m.operation < op::APP_MIN {
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
            push_msg::Type::Room => vec![self.rooms.add(m.room.clone(), proto(&m)).await],
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
    mut rx: mpsc::Receiver<(QueueDelivery, Vec<oneshot::Receiver<()>>)>,
) {
    while let Some((d, done)) = rx.recv().await {
        join_all(done).await;
        if let Err(e) = queue.commit(&d).await {
            tracing::warn!(partition = d.partition, offset = d.offset, "commit: {e}");
        }
    }
}
