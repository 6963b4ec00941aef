//! Merges room messages: a room's messages wait up to `flush_after` (or until `max` of them) and then go
//! to every comet as one BroadcastRoom, which each comet turns into one op 9 frame per connection.
//!
//! Its input holds 4,096 messages (`add` waits beyond that, and so does the consumer). A batch is settled
//! only when every comet settled it (else every message of it is `Abandoned`). When every handle is
//! dropped it flushes everything still pending, then stops.
//!
//! **Persistent messages get their offsets here.** Before a batch goes out, its persistent messages are
//! appended to the room's history in one atomic call, which gives each its offset (and the room's epoch),
//! written into its `Proto`. Batches are flushed one after another by this one task, and a room's messages
//! reach it in queue order (Kafka keys room pushes by room), so offsets follow the delivery order.
//! A redelivered message (a job takeover) keeps its first offset: the append knows it by its queue
//! position. If the history cannot be written for [`APPEND_RETRY`] (Redis down), the batch goes out
//! without offsets (counted in `imcloud_job_history_failures_total`) and the room's next append starts a
//! new epoch, so clients that recover across the hole are told "epoch changed" instead of missing the
//! message silently. Meanwhile this task waits, and so do the other rooms' batches.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use imcloud_common::room_history::{NewEntry, RoomHistory, Source};
use imcloud_proto::protocol::Proto;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use crate::comet_pool::{CometPool, Delivery, Done, Outcome, all_settled};

/// How long an append is retried before the batch goes out without offsets.
pub const APPEND_RETRY: Duration = Duration::from_secs(5);

struct Pending {
    protos: Vec<Proto>,
    /// Per message: `Some(its queue position)` when it is persistent.
    persistent: Vec<Option<Source>>,
    waiters: Vec<oneshot::Sender<Outcome>>,
    due: Instant,
    /// The span of the batch's first message: the batch's delivery continues its trace.
    span: tracing::Span,
}

struct Add {
    room: String,
    proto: Proto,
    persistent: Option<Source>,
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
        history: Option<Arc<dyn RoomHistory>>,
        max: usize,
        flush_after: Duration,
    ) -> (RoomBatcher, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let flusher = Flusher {
            pool,
            history,
            resets: HashSet::new(),
        };
        let task = tokio::spawn(run(flusher, rx, max.max(1), flush_after));
        (RoomBatcher { tx }, task)
    }

    /// Adds a message to its room's batch; resolves when the batch has been handed to every comet
    /// ([`Outcome::Abandoned`] if any comet's delivery was). `persistent`: the message's queue position,
    /// when it is to be kept in the room's history.
    pub async fn add(&self, room: String, proto: Proto, persistent: Option<Source>) -> Done {
        let (done, rx) = oneshot::channel();
        // If the batcher is gone the receiver resolves at once with an error: not settled, not committed.
        let span = tracing::Span::current();
        let _ = self
            .tx
            .send(Add {
                room,
                proto,
                persistent,
                done,
                span,
            })
            .await;
        rx
    }
}

async fn run(mut f: Flusher, mut rx: mpsc::Receiver<Add>, max: usize, flush_after: Duration) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    loop {
        let next_due = pending.values().map(|p| p.due).min();
        tokio::select! {
            add = rx.recv() => {
                let Some(add) = add else { break };
                let p = pending.entry(add.room.clone()).or_insert_with(|| Pending {
                    protos: Vec::new(),
                    persistent: Vec::new(),
                    waiters: Vec::new(),
                    due: Instant::now() + flush_after,
                    span: add.span.clone(),
                });
                p.protos.push(add.proto);
                p.persistent.push(add.persistent);
                p.waiters.push(add.done);
                if p.protos.len() >= max
                    && let Some(p) = pending.remove(&add.room)
                {
                    f.flush(add.room, p).await;
                }
            }
            _ = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                let now = Instant::now();
                let due: Vec<String> = pending.iter().filter(|(_, p)| p.due <= now).map(|(r, _)| r.clone()).collect();
                for room in due {
                    if let Some(p) = pending.remove(&room) {
                        f.flush(room, p).await;
                    }
                }
            }
        }
    }
    for (room, p) in pending.drain() {
        f.flush(room, p).await;
    }
}

struct Flusher {
    pool: Arc<CometPool>,
    history: Option<Arc<dyn RoomHistory>>,
    /// Rooms whose history missed a message: their next append starts a new epoch.
    resets: HashSet<String>,
}

impl Flusher {
    async fn flush(&mut self, room: String, mut p: Pending) {
        if p.persistent.iter().any(Option::is_some) {
            self.stamp(&room, &mut p).await;
        }
        flush(&self.pool, room, p).await;
    }

    /// Appends the batch's persistent messages to the room's history and writes their offsets into them.
    async fn stamp(&mut self, room: &str, p: &mut Pending) {
        let Some(history) = &self.history else {
            // Logic refuses persistent pushes without a shared history; one queued before a restart
            // without Redis goes out as a plain message.
            tracing::warn!(
                room,
                "persistent room push without a room history: sent without an offset"
            );
            return;
        };
        let at: Vec<usize> = (0..p.protos.len())
            .filter(|&i| p.persistent[i].is_some())
            .collect();
        let entries: Vec<NewEntry> = at
            .iter()
            .map(|&i| NewEntry {
                op: p.protos[i].op,
                body: p.protos[i].body.clone(),
                source: p.persistent[i].clone(),
            })
            .collect();
        let reset = self.resets.contains(room);
        let deadline = tokio::time::Instant::now() + APPEND_RETRY;
        let mut backoff = Duration::from_millis(50);
        loop {
            match history.append(room, &entries, reset).await {
                Ok((epoch, offsets)) if offsets.len() == at.len() => {
                    for (&i, offset) in at.iter().zip(offsets) {
                        p.protos[i].history_epoch = epoch;
                        p.protos[i].history_offset = offset;
                    }
                    self.resets.remove(room);
                    return;
                }
                Ok((_, offsets)) => {
                    tracing::error!(
                        room,
                        "room history gave {} offsets for {} messages",
                        offsets.len(),
                        at.len()
                    );
                    break;
                }
                Err(e) if tokio::time::Instant::now() + backoff < deadline => {
                    tracing::warn!(room, "room history append failed, retrying: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    tracing::error!(room, "room history append failed for {APPEND_RETRY:?}: {e}");
                    break;
                }
            }
        }
        // Sent without offsets; the room's next history starts a new epoch.
        metrics::counter!("imcloud_job_history_failures_total").increment(at.len() as u64);
        self.resets.insert(room.to_string());
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
