//! One delivery worker per live comet, kept in step with the registry. A worker sends its comet's
//! deliveries one after another (so each comet sees them in queue order), retrying with backoff.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use imcloud_common::grpc_channel::lazy_channel;
use imcloud_common::registry::Registry;
use imcloud_common::{NodeInfo, Role};
use imcloud_proto::comet::comet_client::CometClient;
use imcloud_proto::comet::{BroadcastReq, BroadcastRoomReq, PushMsgReq};
use imcloud_proto::protocol::Proto;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Deliveries waiting per comet before the consumer waits.
const WORKER_QUEUE: usize = 1024;
/// Attempts per delivery before it is given up (with a log line and a metric).
const ATTEMPTS: u32 = 5;

pub enum Delivery {
    Keys {
        keys: Vec<String>,
        protos: Vec<Proto>,
    },
    Room {
        room: String,
        protos: Arc<Vec<Proto>>,
    },
    Broadcast {
        protos: Arc<Vec<Proto>>,
        speed: i32,
    },
}

impl Delivery {
    fn kind(&self) -> &'static str {
        match self {
            Delivery::Keys { .. } => "push",
            Delivery::Room { .. } => "room",
            Delivery::Broadcast { .. } => "broadcast",
        }
    }
}

struct Task {
    delivery: Delivery,
    done: oneshot::Sender<()>,
}

struct Worker {
    grpc_addr: String,
    tx: mpsc::Sender<Task>,
}

#[derive(Default)]
pub struct CometPool {
    workers: RwLock<HashMap<String, Worker>>,
}

impl CometPool {
    /// Loads the registry's comets, then follows them until `shutdown`. The first load is a direct read, so
    /// deliveries consumed right after start-up find their comet even before a watch has caught up.
    pub async fn watch(self: &Arc<Self>, registry: &dyn Registry, shutdown: CancellationToken) {
        let mut rx = registry.watch(Role::Comet);
        rx.borrow_and_update();
        match registry.list(Role::Comet).await {
            Ok(comets) => self.sync(&comets),
            Err(e) => tracing::warn!("listing comets: {e}; waiting for the registry watch"),
        }
        let pool = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = rx.changed() => if changed.is_err() { return },
                }
                let comets = rx.borrow_and_update().clone();
                pool.sync(&comets);
            }
        });
    }

    /// Starts workers for new comets and stops those of comets that left (they finish what they hold).
    pub fn sync(&self, comets: &[NodeInfo]) {
        let mut workers = self.workers.write().unwrap_or_else(|e| e.into_inner());
        workers.retain(|id, w| {
            comets
                .iter()
                .any(|c| &c.id == id && c.grpc_addr == w.grpc_addr)
        });
        for c in comets {
            if c.grpc_addr.is_empty() || workers.contains_key(&c.id) {
                continue;
            }
            match lazy_channel(&c.grpc_addr).map(CometClient::new) {
                Ok(client) => {
                    let (tx, rx) = mpsc::channel(WORKER_QUEUE);
                    tokio::spawn(work(c.id.clone(), client, rx));
                    workers.insert(
                        c.id.clone(),
                        Worker {
                            grpc_addr: c.grpc_addr.clone(),
                            tx,
                        },
                    );
                    tracing::info!(comet = %c.id, addr = %c.grpc_addr, "delivering to comet");
                }
                Err(e) => {
                    tracing::error!(comet = %c.id, "{e}")
                }
            }
        }
    }

    fn sender(&self, id: &str) -> Option<mpsc::Sender<Task>> {
        self.workers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|w| w.tx.clone())
    }

    fn all_senders(&self) -> Vec<mpsc::Sender<Task>> {
        self.workers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|w| w.tx.clone())
            .collect()
    }

    async fn enqueue(tx: mpsc::Sender<Task>, delivery: Delivery) -> Option<oneshot::Receiver<()>> {
        let (done, rx) = oneshot::channel();
        tx.send(Task { delivery, done }).await.ok().map(|_| rx)
    }

    /// Queues a delivery to one comet; `None` when that comet is not registered (counted and logged).
    pub async fn to_comet(&self, id: &str, delivery: Delivery) -> Option<oneshot::Receiver<()>> {
        match self.sender(id) {
            Some(tx) => Self::enqueue(tx, delivery).await,
            None => {
                metrics::counter!("imcloud_job_unknown_comet_total").increment(1);
                tracing::warn!(comet = %id, "push for a comet that is not registered: skipped");
                None
            }
        }
    }

    /// Queues a delivery to every comet.
    pub async fn to_all(&self, make: impl Fn() -> Delivery) -> Vec<oneshot::Receiver<()>> {
        let mut done = Vec::new();
        for tx in self.all_senders() {
            done.extend(Self::enqueue(tx, make()).await);
        }
        done
    }
}

async fn work(id: String, mut client: CometClient<Channel>, mut rx: mpsc::Receiver<Task>) {
    while let Some(task) = rx.recv().await {
        let kind = task.delivery.kind();
        let mut backoff = Duration::from_millis(50);
        for attempt in 1..=ATTEMPTS {
            match send(&mut client, &task.delivery).await {
                Ok(()) => {
                    metrics::counter!("imcloud_job_delivered_total", "type" => kind).increment(1);
                    break;
                }
                Err(status)
                    if attempt == ATTEMPTS || status.code() == tonic::Code::InvalidArgument =>
                {
                    metrics::counter!("imcloud_job_delivery_failures_total", "type" => kind)
                        .increment(1);
                    tracing::error!(comet = %id, "{kind} delivery failed after {attempt} attempts: {}", status.message());
                    break;
                }
                Err(status) => {
                    metrics::counter!("imcloud_job_delivery_retries_total").increment(1);
                    tracing::warn!(comet = %id, "{kind} delivery attempt {attempt} failed: {}", status.message());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        let _ = task.done.send(());
    }
}

async fn send(client: &mut CometClient<Channel>, d: &Delivery) -> Result<(), tonic::Status> {
    match d {
        Delivery::Keys { keys, protos } => {
            client
                .push_msg(PushMsgReq {
                    keys: keys.clone(),
                    protos: protos.clone(),
                })
                .await?;
        }
        Delivery::Room { room, protos } => {
            client
                .broadcast_room(BroadcastRoomReq {
                    room_id: room.clone(),
                    protos: protos.to_vec(),
                })
                .await?;
        }
        Delivery::Broadcast { protos, speed } => {
            client
                .broadcast(BroadcastReq {
                    protos: protos.to_vec(),
                    speed: *speed,
                })
                .await?;
        }
    }
    Ok(())
}
