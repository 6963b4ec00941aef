//! One delivery worker per live comet, kept in step with the registry. A worker sends its comet's
//! deliveries one after another (so each comet sees them in queue order); keys pushes already queued
//! together go out in one `PushMsgs` call. A comet that does not answer is
//! retried with backoff for as long as it stays registered: its deliveries are never given up while it may
//! come back. Each delivery ends with an [`Outcome`] that tells the consumer whether it may be committed.
//!
//! - A worker's queue holds `WORKER_QUEUE` (1,024) deliveries; a full one makes the enqueue wait, which
//!   stalls the single consumer loop (or the batcher): one slow comet, or one registered but unreachable,
//!   slows delivery to every comet until it answers or leaves the registry.
//! - Up to `PUSH_BATCH` (64) queued keys pushes go in one `PushMsgs` call (one call per push capped a comet
//!   at one round trip per push, about 6,000 to 7,500 pushes/s, docs/benchmarks.md).
//! - Retries: backoff 50 ms doubling to `MAX_BACKOFF` (2 s), each try bounded by the channel's 10 s call
//!   timeout, counted in `imcloud_job_delivery_retries_total`, logged at the first failure and every tenth.
//!   `INVALID_ARGUMENT` is not retried (`Rejected`); a comet that leaves the registry ends its pending
//!   deliveries as `CometLeft` (its connections are gone); `abandon()` ends the rest as `Abandoned`.
//! - A `PUSH` for a comet the watch does not show triggers a direct registry read (at most every
//!   `REFRESH_EVERY`, 200 ms, for a watch that lags); still unknown, it is committed at once and counted in
//!   `imcloud_job_unknown_comet_total`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use imcloud_common::grpc_channel::{Caller, lazy_channel};
use imcloud_common::grpc_telemetry::NodeChannel;
use imcloud_common::registry::Registry;
use imcloud_common::{NodeInfo, Role};
use imcloud_proto::comet::comet_client::CometClient;
use imcloud_proto::comet::{BroadcastReq, BroadcastRoomReq, PushMsgReq, PushMsgsReq};
use imcloud_proto::protocol::Proto;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Deliveries waiting per comet before the consumer waits.
const WORKER_QUEUE: usize = 1024;
/// Most keys pushes sent in one `PushMsgs` call. One call per push capped a comet at one round trip per
/// push (about 6,000 pushes/s here); those queued while a call is out now go in the next call together.
const PUSH_BATCH: usize = 64;
/// Longest pause between two attempts at an unreachable comet.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Least time between two direct registry reads for pushes naming a comet the watch has not shown.
const REFRESH_EVERY: Duration = Duration::from_millis(200);

/// How a delivery to one comet ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The comet accepted it.
    Delivered,
    /// The comet refused it as invalid; retrying cannot help (logged and counted).
    Rejected,
    /// The comet left the registry before accepting it: its connections are gone (logged and counted).
    CometLeft,
    /// Given up at shutdown while the comet was still registered: must not be committed.
    Abandoned,
}

impl Outcome {
    /// Whether the message may be committed as far as this comet is concerned.
    pub fn settled(self) -> bool {
        self != Outcome::Abandoned
    }
}

/// Resolves when one comet's delivery has ended.
pub type Done = oneshot::Receiver<Outcome>;

/// Whether every delivery ended in a way that lets the message be committed (a lost worker counts as not).
pub async fn all_settled(done: Vec<Done>) -> bool {
    futures_util::future::join_all(done)
        .await
        .into_iter()
        .all(|o| o.is_ok_and(Outcome::settled))
}

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
    fn is_keys(&self) -> bool {
        matches!(self, Delivery::Keys { .. })
    }

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
    done: oneshot::Sender<Outcome>,
    /// The span of the message being delivered (its trace continues into the comet call).
    span: tracing::Span,
}

struct Worker {
    grpc_addr: String,
    tx: mpsc::Sender<Task>,
    /// Cancelled when the comet leaves the registry.
    left: CancellationToken,
}

pub struct CometPool {
    /// How this job calls comets (its role and internal credentials).
    caller: Caller,
    workers: RwLock<HashMap<String, Worker>>,
    /// Cancelled when shutdown stops waiting: workers end what they hold as [`Outcome::Abandoned`].
    abandon: CancellationToken,
    /// Read directly when a push names a comet the watch has not shown yet (the watch can lag).
    registry: OnceLock<Arc<dyn Registry>>,
    last_refresh: Mutex<Option<Instant>>,
}

impl CometPool {
    pub fn new(caller: Caller) -> CometPool {
        CometPool {
            caller,
            workers: RwLock::default(),
            abandon: CancellationToken::new(),
            registry: OnceLock::new(),
            last_refresh: Mutex::default(),
        }
    }

    /// Loads the registry's comets, then follows them until `shutdown`. The first load is a direct read, so
    /// deliveries consumed right after start-up find their comet even before a watch has caught up.
    pub async fn watch(self: &Arc<Self>, registry: Arc<dyn Registry>, shutdown: CancellationToken) {
        let mut rx = registry.watch(Role::Comet);
        rx.borrow_and_update();
        match registry.list(Role::Comet).await {
            Ok(comets) => self.sync(&comets),
            Err(e) => tracing::warn!("listing comets: {e}; waiting for the registry watch"),
        }
        let _ = self.registry.set(registry);
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
            let stays = comets
                .iter()
                .any(|c| &c.id == id && c.grpc_addr == w.grpc_addr);
            if !stays {
                tracing::info!(comet = %id, "comet left the registry; its pending deliveries are skipped");
                w.left.cancel();
            }
            stays
        });
        for c in comets {
            if c.grpc_addr.is_empty() || workers.contains_key(&c.id) {
                continue;
            }
            match lazy_channel(&c.grpc_addr, &self.caller, Role::Comet).map(CometClient::new) {
                Ok(client) => {
                    let (tx, rx) = mpsc::channel(WORKER_QUEUE);
                    let left = CancellationToken::new();
                    tokio::spawn(work(
                        c.id.clone(),
                        client,
                        rx,
                        left.clone(),
                        self.abandon.clone(),
                    ));
                    workers.insert(
                        c.id.clone(),
                        Worker {
                            grpc_addr: c.grpc_addr.clone(),
                            tx,
                            left,
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

    /// Makes every worker give up what it still holds (as [`Outcome::Abandoned`]): shutdown's last resort.
    pub fn abandon(&self) {
        self.abandon.cancel();
    }

    async fn enqueue(tx: mpsc::Sender<Task>, delivery: Delivery) -> Option<Done> {
        let (done, rx) = oneshot::channel();
        let span = tracing::Span::current();
        tx.send(Task {
            delivery,
            done,
            span,
        })
        .await
        .ok()
        .map(|_| rx)
    }

    /// Queues a delivery to one comet; `None` when that comet is not registered (counted and logged).
    pub async fn to_comet(&self, id: &str, delivery: Delivery) -> Option<Done> {
        let sender = match self.sender(id) {
            Some(tx) => Some(tx),
            None => {
                self.refresh().await;
                self.sender(id)
            }
        };
        match sender {
            Some(tx) => Self::enqueue(tx, delivery).await,
            None => {
                metrics::counter!("imcloud_job_unknown_comet_total").increment(1);
                tracing::warn!(comet = %id, "push for a comet that is not registered: skipped");
                None
            }
        }
    }

    /// Reads the comets from the registry (at most every [`REFRESH_EVERY`]): a comet that registered a
    /// moment ago may hold the target connection before the watch has reported it.
    async fn refresh(&self) {
        let Some(registry) = self.registry.get() else {
            return;
        };
        {
            let mut last = self.last_refresh.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < REFRESH_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        match registry.list(Role::Comet).await {
            Ok(comets) => self.sync(&comets),
            Err(e) => tracing::warn!("listing comets: {e}"),
        }
    }

    /// Queues a delivery to every comet.
    pub async fn to_all(&self, make: impl Fn() -> Delivery) -> Vec<Done> {
        let mut done = Vec::new();
        for tx in self.all_senders() {
            done.extend(Self::enqueue(tx, make()).await);
        }
        done
    }
}

async fn work(
    id: String,
    mut client: CometClient<NodeChannel>,
    mut rx: mpsc::Receiver<Task>,
    left: CancellationToken,
    abandon: CancellationToken,
) {
    let mut held: Option<Task> = None;
    loop {
        let first = match held.take() {
            Some(t) => t,
            None => match rx.recv().await {
                Some(t) => t,
                None => return,
            },
        };
        // Keys pushes queued behind the first one go along in the same call; anything else waits its turn.
        let mut tasks = vec![first];
        while tasks.len() < PUSH_BATCH && tasks[0].delivery.is_keys() {
            match rx.try_recv() {
                Ok(t) if t.delivery.is_keys() => tasks.push(t),
                Ok(t) => {
                    held = Some(t);
                    break;
                }
                Err(_) => break,
            }
        }
        let span = imcloud_common::traced_span!(
            parent: &tasks[0].span,
            "job.deliver",
            comet = %id,
            kind = tasks[0].delivery.kind(),
            messages = tasks.len(),
        );
        let outcomes = deliver(&id, &mut client, &tasks, &left, &abandon)
            .instrument(span)
            .await;
        for (task, outcome) in tasks.into_iter().zip(outcomes) {
            record(&id, task.delivery.kind(), outcome);
            let _ = task.done.send(outcome);
        }
    }
}

fn record(id: &str, kind: &'static str, outcome: Outcome) {
    match outcome {
        Outcome::Delivered => {
            metrics::counter!("imcloud_job_delivered_total", "type" => kind, "comet" => id.to_string())
                .increment(1)
        }
        Outcome::Rejected => {
            metrics::counter!("imcloud_job_delivery_rejected_total", "type" => kind).increment(1)
        }
        Outcome::CometLeft => {
            metrics::counter!("imcloud_job_comet_left_skipped_total", "type" => kind).increment(1);
            tracing::warn!(comet = %id, "{kind} delivery skipped: the comet left the registry");
        }
        Outcome::Abandoned => {
            metrics::counter!("imcloud_job_delivery_abandoned_total", "type" => kind).increment(1);
            tracing::warn!(comet = %id, "{kind} delivery abandoned at shutdown; it stays uncommitted");
        }
    }
}

/// Tries until the comet accepts or refuses the deliveries, leaves the registry, or shutdown gives up.
/// Returns one outcome per task.
async fn deliver(
    id: &str,
    client: &mut CometClient<NodeChannel>,
    tasks: &[Task],
    left: &CancellationToken,
    abandon: &CancellationToken,
) -> Vec<Outcome> {
    let all = |o: Outcome| vec![o; tasks.len()];
    let kind = tasks.first().map_or("push", |t| t.delivery.kind());
    let mut backoff = Duration::from_millis(50);
    for attempt in 1u64.. {
        if left.is_cancelled() {
            return all(Outcome::CometLeft);
        }
        if abandon.is_cancelled() {
            return all(Outcome::Abandoned);
        }
        let result = tokio::select! {
            r = send(client, tasks) => r,
            _ = left.cancelled() => return all(Outcome::CometLeft),
            _ = abandon.cancelled() => return all(Outcome::Abandoned),
        };
        match result {
            Ok(outcomes) => return outcomes,
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                tracing::error!(comet = %id, "{kind} delivery refused: {}", status.message());
                return all(Outcome::Rejected);
            }
            Err(status) => {
                metrics::counter!("imcloud_job_delivery_retries_total").increment(1);
                // The first failure and then one in ten, so a long outage does not flood the log.
                if attempt % 10 == 1 {
                    tracing::warn!(comet = %id, "{kind} delivery attempt {attempt} failed, retrying: {}", status.message());
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = left.cancelled() => return all(Outcome::CometLeft),
                    _ = abandon.cancelled() => return all(Outcome::Abandoned),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    all(Outcome::Abandoned)
}

/// One call for the tasks: the delivery's own RPC for a single task, `PushMsgs` for several keys pushes.
async fn send(
    client: &mut CometClient<NodeChannel>,
    tasks: &[Task],
) -> Result<Vec<Outcome>, tonic::Status> {
    if let [task] = tasks {
        send_one(client, &task.delivery).await?;
        return Ok(vec![Outcome::Delivered]);
    }
    let pushes = tasks
        .iter()
        .filter_map(|t| match &t.delivery {
            Delivery::Keys { keys, protos } => Some(PushMsgReq {
                keys: keys.clone(),
                protos: protos.clone(),
            }),
            _ => None,
        })
        .collect();
    let reply = client.push_msgs(PushMsgsReq { pushes }).await?.into_inner();
    let mut outcomes = vec![Outcome::Delivered; tasks.len()];
    for i in reply.rejected {
        if let Some(o) = outcomes.get_mut(i as usize) {
            *o = Outcome::Rejected;
        }
    }
    Ok(outcomes)
}

async fn send_one(
    client: &mut CometClient<NodeChannel>,
    d: &Delivery,
) -> Result<(), tonic::Status> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable_comet(id: &str) -> NodeInfo {
        let mut n = NodeInfo::new(Role::Comet, id.to_string());
        // Nothing listens on port 1: every attempt fails at connect.
        n.grpc_addr = "127.0.0.1:1".into();
        n
    }

    fn pool() -> CometPool {
        let auth = imcloud_common::internal_auth::InternalAuth::Token("test-token".into());
        CometPool::new(Caller::new(Role::Job, Arc::new(auth)))
    }

    fn push() -> Delivery {
        Delivery::Keys {
            keys: vec!["k".into()],
            protos: Vec::new(),
        }
    }

    #[tokio::test]
    async fn an_unreachable_comet_is_retried_until_it_leaves_the_registry() {
        let pool = pool();
        pool.sync(&[unreachable_comet("c1")]);
        let mut done = pool.to_comet("c1", push()).await.expect("c1 is registered");
        // Still retrying after several attempts' worth of time.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            done.try_recv().is_err(),
            "given up while the comet is registered"
        );
        pool.sync(&[]);
        let outcome = tokio::time::timeout(Duration::from_secs(5), done)
            .await
            .expect("ends once the comet left")
            .expect("outcome");
        assert_eq!(outcome, Outcome::CometLeft);
        assert!(outcome.settled());
    }

    #[tokio::test]
    async fn shutdown_abandons_pending_deliveries_uncommitted() {
        let pool = pool();
        pool.sync(&[unreachable_comet("c1")]);
        let done = pool.to_comet("c1", push()).await.expect("c1 is registered");
        pool.abandon();
        let outcome = tokio::time::timeout(Duration::from_secs(5), done)
            .await
            .expect("ends at abandon")
            .expect("outcome");
        assert_eq!(outcome, Outcome::Abandoned);
        assert!(!outcome.settled());
    }

    #[tokio::test]
    async fn a_comet_the_watch_has_not_shown_is_read_from_the_registry() {
        use imcloud_common::registry_memory::MemoryRegistry;
        let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
        let pool = Arc::new(pool());
        let stop = CancellationToken::new();
        pool.watch(registry.clone(), stop.clone()).await;
        // Registered behind the pool's back: only a direct read can find it (the watch task is stopped).
        stop.cancel();
        tokio::task::yield_now().await;
        registry
            .register(unreachable_comet("late"))
            .await
            .expect("register");
        pool.sync(&[]);
        assert!(
            pool.to_comet("late", push()).await.is_some(),
            "found by the direct read"
        );
    }

    #[tokio::test]
    async fn a_push_for_an_unregistered_comet_is_skipped() {
        let pool = pool();
        assert!(pool.to_comet("nowhere", push()).await.is_none());
    }
}
