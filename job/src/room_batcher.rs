//! Merges room messages: a room's messages wait up to `flush_after` (or until `max` of them) and then go
//! to every comet as one BroadcastRoom, which each comet turns into one op 9 frame per connection.
//!
//! Its input holds 4,096 messages (`add` waits beyond that, and so does the consumer). A batch is settled
//! only when every comet settled it (else every message of it is `Abandoned`). When every handle is
//! dropped it flushes everything still pending, then stops.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use imcloud_proto::protocol::Proto;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use crate::comet_pool::{CometPool, Delivery, Done, Outcome, all_settled};

struct Pending {
    protos: Vec<Proto>,
    waiters: Vec<oneshot::Sender<Outcome>>,
    due: Instant,
    /// The span of the batch's first message: the batch's delivery continues its trace.
    span: tracing::Span,
}

struct Add {
    room: String,
    proto: Proto,
    done: oneshot::Sender<Outcome>,
    span: tracing::Span,
}

#[derive(Clone)]
pub struct RoomBatcher {
    tx: mpsc::Sender<Add>,
}

impl RoomBatcher {
    /// Starts the batcher; it flushes everything and stops when every handle is dropped.
    pub fn start(
        pool: Arc<CometPool>,
        max: usize,
        flush_after: Duration,
    ) -> (RoomBatcher, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let task = tokio::spawn(run(pool, rx, max.max(1), flush_after));
        (RoomBatcher { tx }, task)
    }

    /// Adds a message to its room's batch; resolves when the batch has been handed to every comet
    /// ([`Outcome::Abandoned`] if any comet's delivery was).
    pub async fn add(&self, room: String, proto: Proto) -> Done {
        let (done, rx) = oneshot::channel();
        // If the batcher is gone the receiver resolves at once with an error: not settled, not committed.
        let span = tracing::Span::current();
        let _ = self
            .tx
            .send(Add {
                room,
                proto,
                done,
                span,
            })
            .await;
        rx
    }
}

async fn run(pool: Arc<CometPool>, mut rx: mpsc::Receiver<Add>, max: usize, flush_after: Duration) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    loop {
        let next_due = pending.values().map(|p| p.due).min();
        tokio::select! {
            add = rx.recv() => {
                let Some(add) = add else { break };
                let p = pending.entry(add.room.clone()).or_insert_with(|| Pending {
                    protos: Vec::new(),
                    waiters: Vec::new(),
                    due: Instant::now() + flush_after,
                    span: add.span.clone(),
                });
                p.protos.push(add.proto);
                p.waiters.push(add.done);
                if p.protos.len() >= max
                    && let Some(p) = pending.remove(&add.room)
                {
                    flush(&pool, add.room, p).await;
                }
            }
            _ = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                let now = Instant::now();
                let due: Vec<String> = pending.iter().filter(|(_, p)| p.due <= now).map(|(r, _)| r.clone()).collect();
                for room in due {
                    if let Some(p) = pending.remove(&room) {
                        flush(&pool, room, p).await;
                    }
                }
            }
        }
    }
    for (room, p) in pending.drain() {
        flush(&pool, room, p).await;
    }
}

async fn flush(pool: &CometPool, room: String, p: Pending) {
    metrics::histogram!("imcloud_job_room_batch_size").record(p.protos.len() as f64);
    let protos = Arc::new(p.protos);
    let done = pool
        .to_all(|| Delivery::Room {
            room: room.clone(),
            protos: protos.clone(),
        })
        .instrument(p.span)
        .await;
    tokio::spawn(async move {
        let outcome = if all_settled(done).await {
            Outcome::Delivered
        } else {
            Outcome::Abandoned
        };
        for w in p.waiters {
            let _ = w.send(outcome);
        }
    });
}
