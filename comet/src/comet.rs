//! The comet's shared state: buckets, the logic client, and the room counts logic last reported.
//!
//! A connection lives in bucket `hash(key) % comet_buckets` (a per-process `RandomState`), so a key's
//! bucket never changes. `push_keys` delivers a batch to connections by key, `kick_keys` closes them on the
//! server's behalf (`Kick::ByServer`), `push_room` visits every bucket's share of a room. `CometSettings`
//! holds what connections need from the configuration.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use imcloud_common::Config;
use imcloud_common::grpc_telemetry::NodeChannel;
use imcloud_proto::logic::logic_client::LogicClient;

use crate::batch::Batch;
use crate::bucket::Bucket;
use crate::drain::DrainState;
use crate::outbox::{Outbox, OutboxBudget};

/// Settings of the connection path, from [`Config`].
#[derive(Debug, Clone)]
pub struct CometSettings {
    pub handshake_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub heartbeat_max_misses: u32,
    /// Bytes one connection's outbox may hold (see [`crate::outbox`]).
    pub conn_queue_bytes: usize,
    /// Bytes all outboxes together may hold.
    pub outbox_budget_bytes: usize,
    pub max_client_body: usize,
    /// Frames a client may send per second (bursts of twice that); 0 = no limit.
    pub frames_per_sec: u32,
    /// Rooms one connection may be in.
    pub max_rooms: usize,
}

impl CometSettings {
    pub fn from_config(cfg: &Config) -> CometSettings {
        CometSettings {
            handshake_timeout: Duration::from_millis(cfg.handshake_timeout_ms),
            heartbeat_interval: Duration::from_secs(cfg.heartbeat_secs),
            heartbeat_max_misses: cfg.heartbeat_max_misses,
            conn_queue_bytes: cfg.conn_queue_bytes,
            outbox_budget_bytes: cfg.comet_outbox_budget_bytes,
            max_client_body: cfg.max_client_body,
            frames_per_sec: cfg.comet_frames_per_sec,
            max_rooms: cfg.comet_max_rooms,
        }
    }
}

pub struct Comet {
    /// This comet's node id (what logic stores as the session's server).
    pub id: String,
    pub settings: CometSettings,
    pub logic: LogicClient<NodeChannel>,
    /// Set when the comet starts draining (reconnect hints).
    pub drain: DrainState,
    buckets: Vec<Bucket>,
    hasher: RandomState,
    next_conn_id: AtomicU64,
    room_online: RwLock<Arc<HashMap<String, i32>>>,
    outbox_budget: Arc<OutboxBudget>,
    /// The start of [`Comet::clock_ms`].
    epoch: std::time::Instant,
    /// `Logic.Disconnect` calls in flight at most ([`DISCONNECTS_IN_FLIGHT`]).
    pub(crate) disconnect_slots: tokio::sync::Semaphore,
}

/// `Logic.Disconnect` calls one comet makes at once. When thousands of connections end together (a
/// load balancer or a client fleet dropping them), each would otherwise hold a gRPC call and its
/// buffers at the same moment: 15,000 closed at once left a standalone at 188 to 233 MiB resident
/// afterwards, against 60 to 72 MiB with this bound (the allocator keeps a burst's peak). The others
/// wait their turn, within the call's own timeout.
pub const DISCONNECTS_IN_FLIGHT: usize = 64;

/// What a comet holds, for online reports.
#[derive(Debug, Default)]
pub struct Counts {
    pub rooms: HashMap<String, i32>,
    pub conns: u64,
    pub ips: u64,
}

impl Comet {
    pub fn new(
        id: String,
        settings: CometSettings,
        buckets: usize,
        logic: LogicClient<NodeChannel>,
    ) -> Comet {
        Comet {
            id,
            outbox_budget: OutboxBudget::new(settings.outbox_budget_bytes),
            settings,
            logic,
            drain: DrainState::default(),
            buckets: (0..buckets.max(1)).map(|_| Bucket::default()).collect(),
            hasher: RandomState::new(),
            next_conn_id: AtomicU64::new(1),
            room_online: RwLock::new(Arc::new(HashMap::new())),
            epoch: std::time::Instant::now(),
            disconnect_slots: tokio::sync::Semaphore::new(DISCONNECTS_IN_FLIGHT),
        }
    }

    /// A comet for unit tests: its logic client points at a port nobody listens on (the tests never
    /// call logic).
    #[cfg(test)]
    pub(crate) fn for_tests(settings: CometSettings, buckets: usize) -> Comet {
        use imcloud_common::Role;
        use imcloud_common::grpc_channel::{Caller, lazy_channel};
        use imcloud_common::internal_auth::InternalAuth;
        let caller = Caller::new(Role::Comet, Arc::new(InternalAuth::Token("t".into())));
        let channel = lazy_channel("127.0.0.1:1", &caller, Role::Logic).expect("a valid address");
        Comet::new("c".into(), settings, buckets, LogicClient::new(channel))
    }

    pub fn bucket(&self, key: &str) -> &Bucket {
        &self.buckets[(self.hasher.hash_one(key) as usize) % self.buckets.len()]
    }

    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// Milliseconds since the comet started (what heartbeat deadlines are kept in).
    pub fn clock_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// How long a connection may go without a heartbeat, in ms.
    pub fn heartbeat_deadline_ms(&self) -> u64 {
        (self.settings.heartbeat_interval * self.settings.heartbeat_max_misses).as_millis() as u64
    }

    /// Wakes every connection's task (after the hard stop is cancelled: each then sees it and leaves).
    pub fn wake_all(&self) {
        for b in &self.buckets {
            b.for_each_channel(|ch| ch.outbox.wake());
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// An empty outbox for a new connection, under this comet's budget.
    pub fn new_outbox(&self) -> Outbox {
        Outbox::new(self.settings.conn_queue_bytes, self.outbox_budget.clone())
    }

    /// Bytes queued in all outboxes.
    pub fn outbox_bytes(&self) -> usize {
        self.outbox_budget.used()
    }

    /// Queues a push to the given keys; returns how many connections got it.
    pub fn push_keys(&self, keys: &[String], batch: &Batch) -> u32 {
        keys.iter()
            .filter_map(|k| self.bucket(k).channel(k))
            .filter(|ch| ch.push(batch))
            .count() as u32
    }

    /// Closes the connections of these keys on the server's behalf, telling each `reason` (op 6).
    pub fn kick_keys(&self, keys: &[String], reason: &str) -> u32 {
        keys.iter()
            .filter_map(|k| self.bucket(k).channel(k))
            .inspect(|ch| ch.kick_by_server(reason))
            .count() as u32
    }

    pub fn push_room(&self, room: &str, batch: &Batch) -> u32 {
        self.buckets.iter().map(|b| b.push_room(room, batch)).sum()
    }

    pub fn counts(&self) -> Counts {
        let mut rooms = HashMap::new();
        let mut ips = HashSet::new();
        let conns: usize = self
            .buckets
            .iter()
            .map(|b| b.count_into(&mut rooms, &mut ips))
            .sum();
        Counts {
            rooms,
            conns: conns as u64,
            ips: ips.len() as u64,
        }
    }

    pub fn connection_count(&self) -> u64 {
        self.buckets.iter().map(|b| b.channel_count() as u64).sum()
    }

    /// The online count of a room over all comets, as logic last reported it.
    pub fn room_online(&self, room: &str) -> i32 {
        self.room_online
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(room)
            .copied()
            .unwrap_or(0)
    }

    pub fn set_room_online(&self, counts: HashMap<String, i32>) {
        *self.room_online.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(counts);
    }
}
