//! Merges room messages: a room's messages wait up to `flush_after` (or until `max` of them) and then go
//! to every comet as one BroadcastRoom, which each comet turns into one op 9 frame per connection. While
//! the room's previous batch is still on its way to the comets, the next one waits up to three times
//! longer, so batches grow with the load.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use imcloud_proto::protocol::Proto;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use crate::comet_pool::{CometPool, Delivery, Done, Outcome, all_settled};

/// How many flush waits a room's batch may be held past its due time while its previous batch is in flight.
const HOLD_FACTOR: u32 = 3;

struct Pending {
    protos: Vec<Proto>,
    waiters: Vec<oneshot::Sender<Outcome>>,
    due: Instant,
}

struct Add {
    room: String,
    proto: Proto,
    done: oneshot::Sender<Outcome>,
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
        let _ = self.tx.send(Add { room, proto, done }).await;
        rx
    }
}

async fn run(pool: Arc<CometPool>, mut rx: mpsc::Receiver<Add>, max: usize, flush_after: Duration) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    // Per room, the flushes the comets have not all accepted yet; each reports back when it has settled.
    let mut in_flight: HashMap<String, usize> = HashMap::new();
    let (settled_tx, mut settled_rx) = mpsc::unbounded_channel::<String>();
    // A room whose previous batch is still in flight keeps collecting past its due time, up to this much
    // longer: under load (comets slow to accept) batches grow, so every connection gets fewer, fuller
    // frames; an unreachable comet (retried while it stays registered) delays the others by no more.
    let hold = flush_after * HOLD_FACTOR;
    let ready_at = |in_flight: &HashMap<String, usize>, room: &str, p: &Pending| {
        if in_flight.contains_key(room) {
            p.due + hold
        } else {
            p.due
        }
    };
    loop {
        let next_due = pending
            .iter()
            .map(|(room, p)| ready_at(&in_flight, room, p))
            .min();
        tokio::select! {
            add = rx.recv() => {
                let Some(add) = add else { break };
                let p = pending.entry(add.room.clone()).or_insert_with(|| Pending {
                    protos: Vec::new(),
                    waiters: Vec::new(),
                    due: Instant::now() + flush_after,
                });
                p.protos.push(add.proto);
                p.waiters.push(add.done);
                if p.protos.len() >= max
                    && let Some(p) = pending.remove(&add.room)
                {
                    *in_flight.entry(add.room.clone()).or_default() += 1;
                    flush(&pool, add.room, p, &settled_tx).await;
                }
            }
            Some(room) = settled_rx.recv() => {
                if let Some(n) = in_flight.get_mut(&room) {
                    *n -= 1;
                    if *n == 0 {
                        in_flight.remove(&room);
                    }
                }
            }
            _ = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                let now = Instant::now();
                let due: Vec<String> = pending
                    .iter()
                    .filter(|(r, p)| ready_at(&in_flight, r, p) <= now)
                    .map(|(r, _)| r.clone())
                    .collect();
                for room in due {
                    if let Some(p) = pending.remove(&room) {
                        *in_flight.entry(room.clone()).or_default() += 1;
                        flush(&pool, room, p, &settled_tx).await;
                    }
                }
            }
        }
    }
    for (room, p) in pending.drain() {
        flush(&pool, room, p, &settled_tx).await;
    }
}

async fn flush(
    pool: &CometPool,
    room: String,
    p: Pending,
    settled: &mpsc::UnboundedSender<String>,
) {
    metrics::histogram!("imcloud_job_room_batch_size").record(p.protos.len() as f64);
    let protos = Arc::new(p.protos);
    let done = pool
        .to_all(|| Delivery::Room {
            room: room.clone(),
            protos: protos.clone(),
        })
        .await;
    let settled = settled.clone();
    tokio::spawn(async move {
        let outcome = if all_settled(done).await {
            Outcome::Delivered
        } else {
            Outcome::Abandoned
        };
        for w in p.waiters {
            let _ = w.send(outcome);
        }
        let _ = settled.send(room);
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use imcloud_common::grpc_channel;
    use imcloud_common::{NodeInfo, Role};
    use imcloud_proto::comet::comet_server::{Comet, CometServer};
    use imcloud_proto::comet::{
        BroadcastReply, BroadcastReq, BroadcastRoomReply, BroadcastRoomReq, PushMsgReply,
        PushMsgReq, PushMsgsReply, PushMsgsReq, RoomsReply, RoomsReq,
    };
    use tonic::{Request, Response, Status};

    use super::*;

    /// A comet that takes `delay` to accept each room batch and records the batch sizes.
    struct SlowComet {
        delay: Duration,
        batches: Arc<Mutex<Vec<usize>>>,
    }

    #[tonic::async_trait]
    impl Comet for SlowComet {
        async fn push_msg(&self, _: Request<PushMsgReq>) -> Result<Response<PushMsgReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn push_msgs(
            &self,
            _: Request<PushMsgsReq>,
        ) -> Result<Response<PushMsgsReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn broadcast(
            &self,
            _: Request<BroadcastReq>,
        ) -> Result<Response<BroadcastReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn broadcast_room(
            &self,
            req: Request<BroadcastRoomReq>,
        ) -> Result<Response<BroadcastRoomReply>, Status> {
            let n = req.into_inner().protos.len();
            self.batches
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(n);
            tokio::time::sleep(self.delay).await;
            Ok(Response::new(BroadcastRoomReply {
                delivered: n as u32,
            }))
        }
        async fn rooms(&self, _: Request<RoomsReq>) -> Result<Response<RoomsReply>, Status> {
            Ok(Response::new(RoomsReply::default()))
        }
    }

    #[tokio::test]
    async fn a_batch_grows_while_the_previous_one_is_in_flight() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let batches = Arc::new(Mutex::new(Vec::new()));
        let comet = SlowComet {
            delay: Duration::from_millis(800),
            batches: batches.clone(),
        };
        tokio::spawn(
            grpc_channel::server()
                .add_service(CometServer::new(comet))
                .serve_with_incoming(grpc_channel::incoming(listener)),
        );
        let pool = Arc::new(CometPool::default());
        let mut node = NodeInfo::new(Role::Comet, "c1".to_string());
        node.grpc_addr = addr.to_string();
        pool.sync(&[node]);
        // Flush after 50 ms; held up to 150 ms longer while the room's previous batch is in flight.
        let (rooms, _task) = RoomBatcher::start(pool, 32, Duration::from_millis(50));

        let first = rooms.add("live://1".into(), Proto::default()).await;
        // The first batch goes out at 50 ms and takes 800 ms. The next two messages are 100 ms apart,
        // more than one flush wait, yet they go together: the second arrives within the hold.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = rooms.add("live://1".into(), Proto::default()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let third = rooms.add("live://1".into(), Proto::default()).await;
        for done in [first, second, third] {
            let outcome = tokio::time::timeout(Duration::from_secs(10), done)
                .await
                .expect("settled")
                .expect("outcome");
            assert_eq!(outcome, Outcome::Delivered);
        }
        assert_eq!(*batches.lock().unwrap(), vec![1, 2]);
    }
}
