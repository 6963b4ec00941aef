//! The engine checks behind each role's `/readyz` (`common/src/readiness.rs` runs them every
//! `IMCLOUD_READINESS_CHECK_SECS`): one cheap round trip each.
//!
//! | role | checks |
//! |---|---|
//! | comet | registry, logic |
//! | logic | registry, queue (Kafka), sessions (Redis, when configured), database |
//! | job | registry, queue (Kafka) |
//! | api | registry (when etcd is configured), logic |
//!
//! Invariant: a check says whether the engine answers, never whether it holds the right data; "logic"
//! means one registered logic node (or `IMCLOUD_LOGIC_ADDR` without etcd) accepts a TCP connection.

use std::sync::Arc;
use std::time::Duration;

use imcloud_common::queue::{QueueConsumer, QueueProducer};
use imcloud_common::readiness::Readiness;
use imcloud_common::registry::Registry;
use imcloud_common::{Config, Role};
use imcloud_logic::im::db::Db;

const CONNECT_WAIT: Duration = Duration::from_secs(1);

/// The registry answers a read.
pub fn registry(r: &Readiness, registry: &Arc<dyn Registry>) {
    let registry = registry.clone();
    r.add_check("registry", move || {
        let registry = registry.clone();
        async move {
            registry
                .list(Role::Logic)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    });
}

/// Some logic node accepts connections.
pub fn logic(r: &Readiness, cfg: &Config, registry: &Arc<dyn Registry>) {
    let registry = registry.clone();
    let fallback = cfg.logic_addr.clone();
    let discovered = !cfg.etcd_endpoints.trim().is_empty();
    r.add_check("logic", move || {
        let (registry, fallback) = (registry.clone(), fallback.clone());
        async move {
            let mut addrs: Vec<String> = if discovered {
                registry
                    .list(Role::Logic)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|n| n.grpc_addr)
                    .filter(|a| !a.is_empty())
                    .collect()
            } else {
                Vec::new()
            };
            if addrs.is_empty() {
                addrs.push(fallback);
            }
            let mut last = String::new();
            for a in &addrs {
                match tokio::time::timeout(CONNECT_WAIT, tokio::net::TcpStream::connect(a)).await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) => last = format!("{a}: {e}"),
                    Err(_) => last = format!("{a}: no answer"),
                }
            }
            Err(format!("no logic node answers ({last})"))
        }
    });
}

/// The queue the producer writes to answers.
pub fn producer(r: &Readiness, q: &Arc<dyn QueueProducer>) {
    let q = q.clone();
    r.add_check("queue", move || {
        let q = q.clone();
        async move { q.health().await.map_err(|e| e.to_string()) }
    });
}

/// The queue the consumer reads answers.
pub fn consumer(r: &Readiness, q: &Arc<dyn QueueConsumer>) {
    let q = q.clone();
    r.add_check("queue", move || {
        let q = q.clone();
        async move { q.health().await.map_err(|e| e.to_string()) }
    });
}

/// Redis answers PING (only when `IMCLOUD_REDIS_URL` is set).
pub fn sessions(r: &Readiness, cfg: &Config) {
    let url = cfg.redis_url.trim().to_string();
    if url.is_empty() {
        return;
    }
    let conn: Arc<tokio::sync::OnceCell<redis::aio::ConnectionManager>> = Arc::default();
    r.add_check("sessions", move || {
        let (url, conn) = (url.clone(), conn.clone());
        async move {
            let c = conn
                .get_or_try_init(|| async {
                    let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
                    redis::aio::ConnectionManager::new(client)
                        .await
                        .map_err(|e| e.to_string())
                })
                .await?;
            let _: String = redis::cmd("PING")
                .query_async(&mut c.clone())
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        }
    });
}

/// The IM database answers `SELECT 1`.
pub fn database(r: &Readiness, db: &Db) {
    let pool = db.pool.clone();
    r.add_check("database", move || {
        let pool = pool.clone();
        async move {
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    });
}
