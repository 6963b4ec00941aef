//! Pushes from backends become queue messages: one per comet (and key shard, on Kafka) for keys/mids, one
//! for a room or for all.
//!
//! - keys: the live session of each key (`sessions_by_keys`; keys without one are skipped), then one `PUSH`
//!   per comet holding any, keyed by `queue_key` (the comet id; on Kafka with a shard of the connection key,
//!   `comet1#5`, so one comet's pushes spread over the partitions while each connection's keep their order);
//!   job sends it to that comet alone (`PushMsg`, or several together in `PushMsgs`).
//! - mids: every live connection of the users (`sessions_by_mids`), then as for keys.
//! - room: one `ROOM`, keyed by the room id `type://room` (`room_id`); job batches it into `BroadcastRoom`
//!   to every comet.
//! - all: one `BROADCAST`, keyed `broadcast`; job sends `Broadcast(protos, speed)` to every comet.
//!
//! Every push is checked first (`check`): an op below 1000 (the protocol's) or a body over `push_max_body`
//! is `INVALID_ARGUMENT`. A keys or mids push whose targets are all offline queues nothing (`queued: 0`),
//! which is not an error; one spanning several comets produces its messages concurrently, so a failure can
//! leave some queued (those are delivered). `kick_keys` is the one internal exception: an op 6 keys push
//! that closes connections, with the reason as its body.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::try_join_all;
use imcloud_common::queue::{QueueError, QueueProducer};
use imcloud_proto::op;
use imcloud_proto::queue::{PushMsg, push_msg};
use prost::Message;
use tracing::Instrument;

use crate::sessions::{SessionError, SessionStore};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Sessions(#[from] SessionError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Queue key of broadcasts: all of them share one key so they keep their order.
pub const BROADCAST_KEY: &str = "broadcast";

pub struct Pusher {
    sessions: Arc<dyn SessionStore>,
    queue: Arc<dyn QueueProducer>,
    max_msg: usize,
    /// Whether persistent room pushes can be kept (a room history the jobs share with this logic).
    persistent_rooms: bool,
}

/// The queue key of a push to connection `key` on comet `server`. With one partition it is the comet's
/// node id. With several it is the node id and a shard of the connection key (`comet1#5`), so that one
/// comet's pushes spread over the partitions, and so over the jobs, while each connection's pushes keep one
/// key and therefore their order.
pub fn queue_key(server: &str, key: &str, partitions: u32) -> String {
    if partitions <= 1 {
        return server.to_string();
    }
    // FNV-1a: stable across processes and versions, so every logic node picks the same shard.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{server}#{}", hash % u64::from(partitions))
}

/// goim's room id: `type://room`.
pub fn room_id(kind: &str, room: &str) -> String {
    format!("{kind}://{room}")
}

impl Pusher {
    pub fn new(
        sessions: Arc<dyn SessionStore>,
        queue: Arc<dyn QueueProducer>,
        max_msg: usize,
    ) -> Pusher {
        Pusher {
            sessions,
            queue,
            max_msg,
            persistent_rooms: true,
        }
    }

    /// Refuses persistent room pushes: no room history is shared with the jobs (separate processes
    /// without Redis).
    pub fn without_room_history(mut self) -> Pusher {
        self.persistent_rooms = false;
        self
    }

    fn check(&self, operation: i32, msg: &[u8]) -> Result<(), PushError> {
        if operation < op::APP_MIN {
            return Err(PushError::Invalid(format!(
                "operation must be >= {} (lower ops are the protocol's)",
                op::APP_MIN
            )));
        }
        if msg.len() > self.max_msg {
            return Err(PushError::Invalid(format!(
                "message of {} bytes exceeds {} bytes",
                msg.len(),
                self.max_msg
            )));
        }
        Ok(())
    }

    /// Queues one message, stamped with when its push was accepted (the end-to-end latency starts there)
    /// and carrying the trace context in its record headers.
    async fn produce(&self, key: &str, mut msg: PushMsg) -> Result<(), PushError> {
        msg.accepted_unix_us = imcloud_common::grpc_telemetry::accepted_unix_us();
        let span = imcloud_common::traced_span!(
            "queue.publish",
            otel.name = "queue publish",
            otel.kind = "producer",
            messaging.operation = "publish",
            messaging.message.key = %key,
            push.type = msg.r#type().label(),
        );
        let headers = imcloud_common::trace_context::headers_of(&span);
        self.queue
            .send_with_headers(key, msg.encode_to_vec(), headers)
            .instrument(span)
            .await?;
        metrics::counter!("imcloud_logic_queued_total", "type" => msg.r#type().label())
            .increment(1);
        Ok(())
    }

    /// One queue message per comet and key shard (see [`queue_key`]), produced concurrently: they
    /// address different connections, so their relative order does not matter.
    async fn produce_per_server(
        &self,
        operation: i32,
        by_server: BTreeMap<String, Vec<String>>,
        msg: &[u8],
    ) -> Result<u32, PushError> {
        let shards = self.queue.partitions();
        let mut by_queue_key: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
        for (server, keys) in by_server {
            for key in keys {
                by_queue_key
                    .entry(queue_key(&server, &key, shards))
                    .or_insert_with(|| (server.clone(), Vec::new()))
                    .1
                    .push(key);
            }
        }
        let queued = by_queue_key.len() as u32;
        try_join_all(by_queue_key.into_iter().map(|(queue_key, (server, keys))| {
            let m = PushMsg {
                r#type: push_msg::Type::Push as i32,
                operation,
                server,
                keys,
                msg: msg.to_vec(),
                ..Default::default()
            };
            async move { self.produce(&queue_key, m).await }
        }))
        .await?;
        Ok(queued)
    }

    /// Pushes to connection keys; keys without a live session are skipped. Returns the messages queued.
    pub async fn push_keys(
        &self,
        operation: i32,
        keys: &[String],
        msg: &[u8],
    ) -> Result<u32, PushError> {
        self.check(operation, msg)?;
        if keys.is_empty() {
            return Err(PushError::Invalid("no keys".into()));
        }
        let by_server = self.servers_of_keys(keys).await?;
        self.produce_per_server(operation, by_server, msg).await
    }

    /// The live keys among `keys`, by the comet that holds them.
    async fn servers_of_keys(
        &self,
        keys: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>, PushError> {
        let mut by_server: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in self
            .sessions
            .sessions_by_keys(keys)
            .await?
            .into_iter()
            .flatten()
        {
            by_server.entry(s.server).or_default().push(s.key);
        }
        Ok(by_server)
    }

    /// Closes these connections (an op 6 push, which a comet turns into a close telling `reason`).
    /// Keys without a live session are skipped. Internal: backends push only application ops.
    pub async fn kick_keys(&self, keys: &[String], reason: &str) -> Result<u32, PushError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let by_server = self.servers_of_keys(keys).await?;
        self.produce_per_server(op::DISCONNECT_REPLY, by_server, reason.as_bytes())
            .await
    }

    /// Pushes to every connection of the users.
    pub async fn push_mids(
        &self,
        operation: i32,
        mids: &[i64],
        msg: &[u8],
    ) -> Result<u32, PushError> {
        self.check(operation, msg)?;
        if mids.is_empty() {
            return Err(PushError::Invalid("no mids".into()));
        }
        let mut by_server: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in self.sessions.sessions_by_mids(mids).await? {
            by_server.entry(s.server).or_default().push(s.key);
        }
        self.produce_per_server(operation, by_server, msg).await
    }

    /// Pushes to a room. A `persistent` message is also kept in the room's history by job, which gives
    /// it its offset (see `imcloud_common::room_history`), so clients can recover it with op 23.
    pub async fn push_room(
        &self,
        operation: i32,
        kind: &str,
        room: &str,
        msg: &[u8],
        persistent: bool,
    ) -> Result<u32, PushError> {
        self.check(operation, msg)?;
        if room.is_empty() {
            return Err(PushError::Invalid("room must not be empty".into()));
        }
        if persistent && !self.persistent_rooms {
            return Err(PushError::Invalid(
                "persistent pushes need a room history shared with the jobs: set IMCLOUD_REDIS_URL \
                 (roles in separate processes cannot share an in-memory one)"
                    .into(),
            ));
        }
        let room = room_id(kind, room);
        let m = PushMsg {
            r#type: push_msg::Type::Room as i32,
            operation,
            room: room.clone(),
            msg: msg.to_vec(),
            persistent,
            ..Default::default()
        };
        self.produce(&room, m).await?;
        Ok(1)
    }

    pub async fn push_all(&self, operation: i32, speed: i32, msg: &[u8]) -> Result<u32, PushError> {
        self.check(operation, msg)?;
        if speed < 0 {
            return Err(PushError::Invalid("speed must not be negative".into()));
        }
        let m = PushMsg {
            r#type: push_msg::Type::Broadcast as i32,
            operation,
            speed,
            msg: msg.to_vec(),
            ..Default::default()
        };
        self.produce(BROADCAST_KEY, m).await?;
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use imcloud_common::queue::QueueConsumer;
    use imcloud_common::queue_memory::memory_queue;

    use super::*;
    use crate::sessions::Session;
    use crate::sessions_memory::MemorySessions;

    #[tokio::test]
    async fn keys_and_mids_are_grouped_per_comet() {
        let sessions = MemorySessions::new(Duration::from_secs(60), Duration::from_secs(60));
        for (mid, key, server) in [(1, "a", "c1"), (1, "b", "c2"), (2, "c", "c1")] {
            sessions
                .add(&Session {
                    mid,
                    key: key.into(),
                    server: server.into(),
                })
                .await
                .unwrap();
        }
        let (p, c) = memory_queue(16);
        let pusher = Pusher::new(sessions, Arc::new(p), 1024);

        let keys = ["a", "c", "zz"].map(String::from);
        assert_eq!(pusher.push_keys(1000, &keys, b"hi").await.unwrap(), 1);
        let d = c.recv().await.unwrap();
        let m = PushMsg::decode(&d.payload[..]).unwrap();
        assert_eq!(
            (d.key.as_str(), m.server.as_str(), m.keys.clone()),
            ("c1", "c1", vec!["a".to_string(), "c".to_string()])
        );
        assert_eq!(m.msg, b"hi");

        assert_eq!(pusher.push_mids(1001, &[1], b"x").await.unwrap(), 2);
        let servers: Vec<String> = [c.recv().await.unwrap(), c.recv().await.unwrap()]
            .iter()
            .map(|d| PushMsg::decode(&d.payload[..]).unwrap().server)
            .collect();
        assert_eq!(servers, vec!["c1", "c2"]);

        assert_eq!(
            pusher
                .push_room(1002, "live", "7", b"r", false)
                .await
                .unwrap(),
            1
        );
        let m = PushMsg::decode(&c.recv().await.unwrap().payload[..]).unwrap();
        assert_eq!(
            (m.r#type(), m.room.as_str()),
            (push_msg::Type::Room, "live://7")
        );
    }

    /// The embedded queue, claiming several partitions as Kafka would.
    struct Partitioned(imcloud_common::queue_memory::MemoryProducer, u32);

    #[async_trait::async_trait]
    impl QueueProducer for Partitioned {
        async fn send(&self, key: &str, payload: Vec<u8>) -> Result<(), QueueError> {
            self.0.send(key, payload).await
        }
        fn partitions(&self) -> u32 {
            self.1
        }
    }

    #[test]
    fn a_connection_keeps_one_queue_key() {
        assert_eq!(queue_key("comet1", "k", 1), "comet1");
        assert_eq!(queue_key("comet1", "k", 8), queue_key("comet1", "k", 8));
        let shards: std::collections::BTreeSet<String> = (0..64)
            .map(|i| queue_key("comet1", &format!("key-{i}"), 8))
            .collect();
        assert_eq!(shards.len(), 8, "{shards:?}");
        assert!(shards.iter().all(|k| k.starts_with("comet1#")));
    }

    #[tokio::test]
    async fn a_comets_pushes_spread_over_the_partitions() {
        let sessions = MemorySessions::new(Duration::from_secs(60), Duration::from_secs(60));
        let keys: Vec<String> = (0..32).map(|i| format!("key-{i}")).collect();
        for (i, key) in keys.iter().enumerate() {
            sessions
                .add(&Session {
                    mid: i as i64,
                    key: key.clone(),
                    server: "c1".into(),
                })
                .await
                .unwrap();
        }
        let (p, c) = memory_queue(64);
        let pusher = Pusher::new(sessions, Arc::new(Partitioned(p, 4)), 1024);
        let queued = pusher.push_keys(1000, &keys, b"hi").await.unwrap();
        assert_eq!(queued, 4);
        let mut seen = Vec::new();
        for _ in 0..queued {
            let d = c.recv().await.unwrap();
            let m = PushMsg::decode(&d.payload[..]).unwrap();
            assert_eq!(m.server, "c1");
            for k in &m.keys {
                assert_eq!(
                    queue_key("c1", k, 4),
                    d.key,
                    "{k} under the wrong queue key"
                );
            }
            seen.extend(m.keys);
        }
        seen.sort();
        let mut want = keys.clone();
        want.sort();
        assert_eq!(seen, want, "every key exactly once");
    }

    #[tokio::test]
    async fn bad_pushes_are_refused() {
        let (p, _c) = memory_queue(4);
        let pusher = Pusher::new(
            MemorySessions::new(Duration::from_secs(60), Duration::from_secs(60)),
            Arc::new(p),
            4,
        );
        assert!(matches!(
            pusher.push_all(3, 0, b"x").await,
            Err(PushError::Invalid(_))
        ));
        assert!(matches!(
            pusher.push_all(1000, 0, b"too long").await,
            Err(PushError::Invalid(_))
        ));
        assert!(matches!(
            pusher.push_keys(1000, &[], b"x").await,
            Err(PushError::Invalid(_))
        ));
        assert!(matches!(
            pusher.push_room(1000, "live", "", b"x", false).await,
            Err(PushError::Invalid(_))
        ));
        assert!(matches!(
            pusher.push_all(1000, -1, b"x").await,
            Err(PushError::Invalid(_))
        ));
    }
}
