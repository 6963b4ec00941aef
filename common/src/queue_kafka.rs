//! The distributed queue: Kafka through rdkafka (librdkafka, vendored).
//!
//! - The producer is idempotent with `acks=all`: [`QueueProducer::send`] returns only after the broker
//!   acknowledged the message, so an HTTP push answered 200 is in Kafka. Messages with one key go to one
//!   partition and keep their order. A message not acknowledged within 5 s fails with
//!   `QueueError::Unavailable` (HTTP 503); while librdkafka says every broker is down, a send is refused
//!   at once, unqueued, unless a metadata probe finds a broker (`kafka_broker_watch.rs`).
//! - The consumer is one member of a consumer group (cooperative-sticky assignor; a new group starts at the
//!   earliest offset). Offsets are never committed on receipt: a delivery is
//!   stored with [`QueueConsumer::commit`] once job has handed it to every comet it addresses, and the
//!   stored offsets are committed every [`COMMIT_INTERVAL_MS`] and when the consumer closes. A job killed
//!   in between makes the next owner of its partitions deliver the uncommitted tail again (at-least-once).
//!   `GroupLog` logs partition assignments, revocations and failed commits.
//! - [`ensure_topic`] creates the push topic at start-up when it is missing.
//!
//! Tests (on `IMCLOUD_TEST_KAFKA_BROKERS`, unique topic and group; they fail without a broker): the
//! conformance suite, a second consumer receiving again what the first did not commit, and a send to an
//! unreachable broker failing. Settings and failure behaviour: docs/deployment.md.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers as _, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::util::Timeout;

use crate::kafka_broker_watch::BrokerWatch;
use crate::queue::{Delivery, QueueConsumer, QueueError, QueueProducer};
use crate::trace_context::Headers;

/// How often the consumer commits the offsets job has stored.
pub const COMMIT_INTERVAL_MS: u32 = 500;
/// How long a push waits for the broker's acknowledgement (including retries) before it fails. Long enough
/// to ride out a partition leader election, and well inside the 10 s every internal RPC allows
/// (`grpc_channel`), so that a broker outage answers the backend with logic's 503 "queue unavailable"
/// rather than the api's own deadline (the fault test `a_kafka_broker_restart_loses_no_acknowledged_push`
/// saw a 500 "Timeout expired" when both were 10 s).
const DELIVERY_TIMEOUT_MS: u32 = 5_000;
/// Longest a readiness check waits for the brokers' metadata.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("Kafka client configuration: {0}")]
    Client(#[from] KafkaError),
    #[error("creating topic {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// Where the queue lives and how the push topic is laid out.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` list.
    pub brokers: String,
    pub topic: String,
    pub partitions: i32,
    pub replication: i32,
}

fn base(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        // librdkafka leaves Nagle on by default: a small produce or fetch request sent while an earlier
        // one is unacknowledged waits for that ACK.
        .set("socket.nagle.disable", "true")
        // librdkafka logs through its own callback; keep it to warnings.
        .set("log_level", "4");
    // Extra librdkafka debug contexts (e.g. `cgrp,topic`), for troubleshooting a deployment.
    if let Ok(debug) = std::env::var("IMCLOUD_KAFKA_DEBUG")
        && !debug.is_empty()
    {
        c.set("debug", debug).set("log_level", "7");
    }
    c
}

/// Creates the push topic unless it exists already.
pub async fn ensure_topic(s: &KafkaSettings) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = base(&s.brokers).create()?;
    let topic = NewTopic::new(
        &s.topic,
        s.partitions,
        TopicReplication::Fixed(s.replication),
    );
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&topic], &opts).await? {
        match result {
            Ok(name) => {
                tracing::info!(topic = %name, partitions = s.partitions, "created Kafka topic")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaSetupError::CreateTopic { topic, code }),
        }
    }
    Ok(())
}

pub struct KafkaProducer {
    producer: FutureProducer<BrokerWatch>,
    brokers: BrokerWatch,
    topic: String,
    partitions: u32,
}

impl KafkaProducer {
    pub fn new(s: &KafkaSettings) -> Result<Self, KafkaSetupError> {
        let brokers = BrokerWatch::default();
        let producer = base(&s.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", DELIVERY_TIMEOUT_MS.to_string())
            .create_with_context(brokers.clone())?;
        Ok(KafkaProducer {
            producer,
            brokers,
            topic: s.topic.clone(),
            partitions: u32::try_from(s.partitions).unwrap_or(1).max(1),
        })
    }

    /// One metadata round trip for the push topic within `timeout`.
    async fn metadata(&self, timeout: Duration) -> Result<(), QueueError> {
        let p = self.producer.clone();
        fetch_metadata(
            move |topic, t| p.client().fetch_metadata(Some(topic), t),
            &self.topic,
            timeout,
        )
        .await
    }
}

#[async_trait]
impl QueueProducer for KafkaProducer {
    async fn send(&self, key: &str, payload: Vec<u8>) -> Result<(), QueueError> {
        self.send_with_headers(key, payload, Headers::new()).await
    }

    async fn send_with_headers(
        &self,
        key: &str,
        payload: Vec<u8>,
        headers: Headers,
    ) -> Result<(), QueueError> {
        // With every broker down, refuse at once rather than queue for the message timeout
        // (kafka_broker_watch.rs).
        if self.brokers.all_down() {
            self.brokers.probe(|t| self.metadata(t)).await?;
        }
        let mut record = FutureRecord::to(&self.topic).key(key).payload(&payload);
        if !headers.is_empty() {
            record = record.headers(record_headers(&headers));
        }
        let delivery = self.producer.send(
            record,
            Timeout::After(Duration::from_millis(DELIVERY_TIMEOUT_MS.into())),
        );
        tokio::select! {
            r = delivery => match r {
                Ok(_) => {
                    self.brokers.delivered();
                    Ok(())
                }
                Err((e, _)) => Err(unavailable(e)),
            },
            _ = self.brokers.went_down() => {
                crate::engine_errors::count("kafka");
                Err(QueueError::Unavailable(
                    "Kafka: every broker went down before this push was acknowledged".into(),
                ))
            }
        }
    }

    /// The configured partition count (`IMCLOUD_KAFKA_PARTITIONS`); an existing topic may have another,
    /// which only makes the spread less even.
    fn partitions(&self) -> u32 {
        self.partitions
    }

    async fn health(&self) -> Result<(), QueueError> {
        self.metadata(HEALTH_TIMEOUT).await
    }
}

/// A Kafka error as the queue's, counted in `imcloud_engine_errors_total{engine="kafka"}`.
fn unavailable(e: KafkaError) -> QueueError {
    crate::engine_errors::count("kafka");
    QueueError::Unavailable(format!("Kafka: {e}"))
}

fn record_headers(headers: &Headers) -> OwnedHeaders {
    headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(rdkafka::message::Header {
            key: k,
            value: Some(v.as_bytes()),
        })
    })
}

fn headers_of(m: &impl Message) -> Headers {
    m.headers()
        .map(|hs| {
            hs.iter()
                .filter_map(|h| {
                    Some((
                        h.key.to_string(),
                        String::from_utf8(h.value?.to_vec()).ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One metadata round trip for the push topic (readiness), off the async threads: librdkafka blocks.
async fn fetch_metadata<F>(fetch: F, topic: &str, timeout: Duration) -> Result<(), QueueError>
where
    F: FnOnce(&str, Timeout) -> rdkafka::error::KafkaResult<rdkafka::metadata::Metadata>
        + Send
        + 'static,
{
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || fetch(&topic, Timeout::After(timeout)))
        .await
        .map_err(|e| QueueError::Unavailable(format!("Kafka metadata: {e}")))?
        .map(|_| ())
        .map_err(unavailable)
}

/// Logs the partitions this job gains and loses, and failed commits: what an operator needs to follow a
/// takeover.
pub struct GroupLog;

fn partitions(tpl: &TopicPartitionList) -> String {
    let mut ps: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    ps.sort_unstable();
    format!("{ps:?}")
}

impl ClientContext for GroupLog {}

impl ConsumerContext for GroupLog {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = %partitions(tpl), "Kafka partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = %partitions(tpl), "Kafka partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!("Kafka rebalance: {e}"),
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(partitions = %partitions(offsets), "Kafka commit: {e}"),
        }
    }
}

pub struct KafkaConsumer {
    consumer: std::sync::Arc<StreamConsumer<GroupLog>>,
    topic: String,
}

impl KafkaConsumer {
    /// Joins `group` and subscribes to the push topic. A new group starts at the earliest offset, so
    /// nothing produced before the first job started is skipped.
    pub fn new(
        s: &KafkaSettings,
        group: &str,
        session_timeout_ms: u32,
    ) -> Result<Self, KafkaSetupError> {
        let consumer: StreamConsumer<GroupLog> = base(&s.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", COMMIT_INTERVAL_MS.to_string())
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Incremental rebalancing: when a job joins or leaves, only the partitions that move stop,
            // and the other jobs keep delivering from theirs (the eager assignors stop every member).
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (session_timeout_ms / 3).max(1).to_string(),
            )
            .create_with_context(GroupLog)?;
        consumer.subscribe(&[&s.topic])?;
        Ok(KafkaConsumer {
            consumer: std::sync::Arc::new(consumer),
            topic: s.topic.clone(),
        })
    }
}

/// How long a closing job keeps trying to commit while the group is rebalancing.
const CLOSE_COMMIT_FOR: Duration = Duration::from_secs(5);

/// Commit errors that mean "this member has not joined the group's current generation yet": serving the
/// group's callbacks (a poll) lets it rejoin, and the commit then succeeds.
fn rejoin_then_retry(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::RebalanceInProgress
            | RDKafkaErrorCode::UnknownMemberId
    )
}

impl KafkaConsumer {
    /// Commits the stored offsets, synchronously (off the async threads). A commit that meets a rebalance
    /// this member has not joined yet polls the consumer for a moment, which serves the rebalance, and
    /// tries again, for up to [`CLOSE_COMMIT_FOR`]: without that, a job stopped while the group was
    /// rebalancing left the offsets of what it had delivered uncommitted, and the next owner delivered
    /// them again. A message fetched by that poll is neither handled nor stored: the next owner gets it.
    async fn commit_stored(&self) {
        let deadline = tokio::time::Instant::now() + CLOSE_COMMIT_FOR;
        loop {
            let c = self.consumer.clone();
            let committed =
                tokio::task::spawn_blocking(move || c.commit_consumer_state(CommitMode::Sync))
                    .await;
            let Ok(committed) = committed else {
                tracing::warn!("Kafka commit: the committing task failed");
                return;
            };
            match committed {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => return,
                Err(KafkaError::ConsumerCommit(code))
                    if rejoin_then_retry(code) && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!("Kafka commit: {code}; serving the rebalance, then again");
                    let _ = tokio::time::timeout(Duration::from_millis(100), self.consumer.recv())
                        .await;
                }
                Err(e) => {
                    tracing::warn!("Kafka commit: {e}");
                    return;
                }
            }
        }
    }
}

#[async_trait]
impl QueueConsumer for KafkaConsumer {
    async fn recv(&self) -> Result<Delivery, QueueError> {
        let m = self.consumer.recv().await.map_err(unavailable)?;
        Ok(Delivery {
            key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            payload: m.payload().unwrap_or_default().to_vec(),
            partition: m.partition(),
            offset: m.offset(),
            produced_at: m
                .timestamp()
                .to_millis()
                .and_then(|ms| u64::try_from(ms).ok())
                .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
            headers: headers_of(&m),
        })
    }

    async fn commit(&self, d: &Delivery) -> Result<(), QueueError> {
        // Stores offset + 1 as the partition's next position; the periodic commit sends it to the broker.
        self.consumer
            .store_offset(&self.topic, d.partition, d.offset)
            .map_err(unavailable)
    }

    /// Commits what has been stored and leaves the group, so the other jobs take the partitions at once.
    async fn close(&self) {
        self.commit_stored().await;
        self.consumer.unsubscribe();
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn health(&self) -> Result<(), QueueError> {
        let c = self.consumer.clone();
        fetch_metadata(
            move |topic, t| c.fetch_metadata(Some(topic), t),
            &self.topic,
            HEALTH_TIMEOUT,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_name::unique_test_name;

    /// Brokers for the tests: IMCLOUD_TEST_KAFKA_BROKERS (`.ci/run` starts Apache Kafka), else 127.0.0.1:9092.
    fn brokers() -> String {
        std::env::var("IMCLOUD_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
    }

    fn settings(partitions: i32) -> KafkaSettings {
        KafkaSettings {
            brokers: brokers(),
            topic: unique_test_name("imcloud-test"),
            partitions,
            replication: 1,
        }
    }

    #[tokio::test]
    async fn kafka_queue_passes_the_conformance_suite() {
        let s = settings(3);
        ensure_topic(&s).await.expect("create topic");
        ensure_topic(&s).await.expect("an existing topic is fine");
        let producer = KafkaProducer::new(&s).expect("producer");
        let group = unique_test_name("conformance");
        let consumer = KafkaConsumer::new(&s, &group, 6000).expect("consumer");
        crate::queue_conformance::run(&producer, &consumer).await;
        consumer.close().await;
    }

    #[tokio::test]
    async fn uncommitted_messages_are_delivered_again_to_the_next_consumer() {
        let s = settings(1);
        ensure_topic(&s).await.expect("create topic");
        let producer = KafkaProducer::new(&s).expect("producer");
        for i in 0..6 {
            producer
                .send("k", format!("m{i}").into_bytes())
                .await
                .expect("send");
        }
        let group = unique_test_name("redeliver");
        let first = KafkaConsumer::new(&s, &group, 6000).expect("consumer");
        let mut got = Vec::new();
        for _ in 0..6 {
            let d = tokio::time::timeout(Duration::from_secs(30), first.recv())
                .await
                .expect("message within 30 s")
                .expect("recv");
            got.push(d);
        }
        // Only the first three were handled.
        first.commit(&got[2]).await.expect("store");
        first.close().await;
        drop(first);

        let second = KafkaConsumer::new(&s, &group, 6000).expect("consumer");
        let d = tokio::time::timeout(Duration::from_secs(30), second.recv())
            .await
            .expect("message within 30 s")
            .expect("recv");
        assert_eq!(
            d.payload, b"m3",
            "the next consumer resumes after the last commit"
        );
        assert_eq!(d.offset, got[3].offset);
        second.close().await;
    }

    #[tokio::test]
    async fn an_unreachable_broker_fails_the_send() {
        let s = KafkaSettings {
            brokers: "127.0.0.1:1".into(),
            topic: "imcloud-nowhere".into(),
            partitions: 1,
            replication: 1,
        };
        let producer = KafkaProducer::new(&s).expect("producer");
        let started = std::time::Instant::now();
        let r = producer.send("k", b"x".to_vec()).await;
        assert!(matches!(r, Err(QueueError::Unavailable(_))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
