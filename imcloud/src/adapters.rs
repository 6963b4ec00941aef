//! Picks each adapter from the configuration: the distributed engine when its setting is present, otherwise
//! the embedded implementation.
//!
//! - `registry()`: etcd when `etcd_endpoints` is set, else `MemoryRegistry`.
//! - `sessions()`: Redis (one node, or a cluster with `redis_cluster`) when `redis_url` is set, else
//!   `MemorySessions`; online reports live `online_ttl` = 3 × `online_renew_secs`.
//! - `queue()`: Kafka when `kafka_brokers` is set, else the in-process queue; `kafka_producer()` and
//!   `kafka_consumer()` each ensure the topic first.
//! - `database()`: the IM database (`Db::open`). `require_shared()` refuses a role process on an adapter
//!   that cannot be shared (comet without etcd, logic and job without etcd and Kafka). `describe()` gives
//!   the banner's adapter lines, passwords masked.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use imcloud_common::Config;
use imcloud_common::config::redact_url;
use imcloud_common::queue::{QueueConsumer, QueueProducer};
use imcloud_common::queue_kafka::{KafkaConsumer, KafkaProducer, KafkaSettings, ensure_topic};
use imcloud_common::queue_memory::memory_queue;
use imcloud_common::redis_conn::RedisConn;
use imcloud_common::registry::Registry;
use imcloud_common::registry_etcd::EtcdRegistry;
use imcloud_common::registry_memory::MemoryRegistry;
use imcloud_common::room_history::RoomHistory;
use imcloud_common::room_history_memory::MemoryHistory;
use imcloud_common::room_history_redis::RedisHistory;
use imcloud_logic::im::db::{Db, Engine};
use imcloud_logic::sessions::SessionStore;
use imcloud_logic::sessions_memory::MemorySessions;
use imcloud_logic::sessions_redis::RedisSessions;

/// The push topic's settings.
pub fn kafka(cfg: &Config) -> KafkaSettings {
    KafkaSettings {
        brokers: Config::list(&cfg.kafka_brokers).join(","),
        topic: cfg.kafka_topic.clone(),
        partitions: cfg.kafka_partitions,
        replication: cfg.kafka_replication,
    }
}

/// Whether the queue is Kafka (IMCLOUD_KAFKA_BROKERS set).
pub fn uses_kafka(cfg: &Config) -> bool {
    !Config::list(&cfg.kafka_brokers).is_empty()
}

/// The producing side of the queue on Kafka; the push topic is created when missing.
pub async fn kafka_producer(cfg: &Config) -> Result<Arc<dyn QueueProducer>> {
    let s = kafka(cfg);
    ensure_topic(&s)
        .await
        .with_context(|| format!("Kafka at {}", s.brokers))?;
    Ok(Arc::new(KafkaProducer::new(&s)?))
}

/// The consuming side of the queue on Kafka: one member of the job consumer group.
pub async fn kafka_consumer(cfg: &Config) -> Result<Arc<dyn QueueConsumer>> {
    let s = kafka(cfg);
    ensure_topic(&s)
        .await
        .with_context(|| format!("Kafka at {}", s.brokers))?;
    Ok(Arc::new(KafkaConsumer::new(
        &s,
        &cfg.kafka_group,
        cfg.kafka_session_timeout_ms,
    )?))
}

/// Kafka when IMCLOUD_KAFKA_BROKERS is set, else the bounded in-process queue.
pub async fn queue(cfg: &Config) -> Result<(Arc<dyn QueueProducer>, Arc<dyn QueueConsumer>)> {
    if uses_kafka(cfg) {
        return Ok((kafka_producer(cfg).await?, kafka_consumer(cfg).await?));
    }
    let (producer, consumer) = memory_queue(cfg.queue_capacity);
    Ok((Arc::new(producer), Arc::new(consumer)))
}

/// Refuses to run a role as its own process on an embedded adapter that cannot be shared between processes.
pub fn require_shared(cfg: &Config, role: &str, needs_queue: bool) -> Result<()> {
    if Config::list(&cfg.etcd_endpoints).is_empty() {
        bail!(
            "`imcloud {role}` runs beside other processes and needs etcd to find them: set IMCLOUD_ETCD_ENDPOINTS \
             (or run everything in one process with `imcloud standalone`)"
        );
    }
    if needs_queue && !uses_kafka(cfg) {
        bail!(
            "`imcloud {role}` needs the shared queue: set IMCLOUD_KAFKA_BROKERS \
             (or run everything in one process with `imcloud standalone`)"
        );
    }
    Ok(())
}

/// etcd when IMCLOUD_ETCD_ENDPOINTS is set, else the in-process registry.
pub async fn registry(cfg: &Config) -> Result<Arc<dyn Registry>> {
    let endpoints = Config::list(&cfg.etcd_endpoints);
    if endpoints.is_empty() {
        return Ok(Arc::new(MemoryRegistry::new()));
    }
    let reg = EtcdRegistry::connect(
        &endpoints,
        &cfg.etcd_prefix,
        Duration::from_secs(cfg.etcd_lease_ttl_secs),
    )
    .await
    .with_context(|| format!("etcd at {}", endpoints.join(",")))?;
    Ok(Arc::new(reg))
}

/// How long a comet's online report lives in the session store: three report intervals.
pub fn online_ttl(cfg: &Config) -> Duration {
    Duration::from_secs(cfg.online_renew_secs * 3)
}

/// Redis when IMCLOUD_REDIS_URL is set, else the in-memory store.
pub async fn sessions(cfg: &Config) -> Result<Arc<dyn SessionStore>> {
    let ttl = Duration::from_secs(cfg.session_ttl_secs);
    if cfg.redis_url.is_empty() {
        return Ok(MemorySessions::new(ttl, online_ttl(cfg)));
    }
    let store = if cfg.redis_cluster {
        let nodes = Config::list(&cfg.redis_url);
        RedisSessions::connect_cluster(&nodes, &cfg.redis_prefix, ttl, online_ttl(cfg)).await
    } else {
        RedisSessions::connect(&cfg.redis_url, &cfg.redis_prefix, ttl, online_ttl(cfg)).await
    };
    let store = store.with_context(|| format!("Redis at {}", redis_urls(cfg)))?;
    Ok(Arc::new(store))
}

/// The room history of persistent room pushes: Redis (or Redis Cluster) when IMCLOUD_REDIS_URL is set, else
/// in memory when `in_process` (standalone: job and logic share it), else none (a role in its own process
/// cannot share an in-memory history with the others; persistent pushes are then refused).
pub async fn history(cfg: &Config, in_process: bool) -> Result<Option<Arc<dyn RoomHistory>>> {
    let ttl = Duration::from_secs(cfg.room_history_ttl_secs);
    if cfg.redis_url.trim().is_empty() {
        if !in_process {
            return Ok(None);
        }
        return Ok(Some(Arc::new(MemoryHistory::new(
            cfg.room_history_size,
            ttl,
        ))));
    }
    let conn = if cfg.redis_cluster {
        RedisConn::cluster(&Config::list(&cfg.redis_url)).await
    } else {
        RedisConn::single(&cfg.redis_url).await
    }
    .with_context(|| format!("Redis at {} (room history)", redis_urls(cfg)))?;
    Ok(Some(Arc::new(RedisHistory::new(
        conn,
        &cfg.redis_prefix,
        cfg.room_history_size,
        ttl,
    ))))
}

/// The Redis URL(s), passwords masked.
fn redis_urls(cfg: &Config) -> String {
    Config::list(&cfg.redis_url)
        .iter()
        .map(|u| redact_url(u))
        .collect::<Vec<_>>()
        .join(",")
}

/// One line per adapter, for the start-up banner.
pub fn describe(cfg: &Config) -> Vec<String> {
    let registry = if cfg.etcd_endpoints.is_empty() {
        "embedded (in-process)".to_string()
    } else {
        format!("etcd {} under {}", cfg.etcd_endpoints, cfg.etcd_prefix)
    };
    let sessions = if cfg.redis_url.is_empty() {
        "embedded (in-memory)".to_string()
    } else {
        format!(
            "Redis{} {} with prefix {}",
            if cfg.redis_cluster { " Cluster" } else { "" },
            redis_urls(cfg),
            cfg.redis_prefix
        )
    };
    let queue = if uses_kafka(cfg) {
        let k = kafka(cfg);
        format!(
            "Kafka {} topic {} group {}",
            k.brokers, k.topic, cfg.kafka_group
        )
    } else {
        "embedded (in-process)".to_string()
    };
    let database = if !cfg.im_enabled() {
        "none (IM tier off)".to_string()
    } else if cfg.database_url.is_empty() {
        imcloud_logic::im::db::DEFAULT_URL.to_string()
    } else {
        redact_url(&cfg.database_url)
    };
    vec![
        format!("registry     {registry}"),
        format!("sessions     {sessions}"),
        format!("queue        {queue}"),
        format!("IM database  {database}"),
    ]
}

/// The IM database: IMCLOUD_DATABASE_URL (postgres://… or sqlite:…), else a SQLite file under ./data;
/// migrated on open.
pub async fn database(cfg: &Config) -> Result<Db> {
    imcloud_logic::check_im_settings(cfg)?;
    let db = Db::open(&cfg.database_url).await?;
    tracing::info!(
        engine = ?db.engine,
        "IM database ready{}",
        if cfg.database_url.is_empty() { " (sqlite://data/imcloud.db)" } else { "" }
    );
    Ok(db)
}

/// Whether the IM database is a SQLite file (right only for a single logic).
pub fn is_sqlite(db: &Db) -> bool {
    db.engine == Engine::Sqlite
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            imcloud_common::config::redact_url("redis://:s3cret@10.0.0.1:6379/0"),
            "redis://:***@10.0.0.1:6379/0"
        );
        assert_eq!(
            imcloud_common::config::redact_url("redis://app:s3cret@r:6379"),
            "redis://app:***@r:6379"
        );
        assert_eq!(
            imcloud_common::config::redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
    }
}
