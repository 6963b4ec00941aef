//! imcloud job: consumes the push queue and delivers each message to the comet(s) it addresses:
//! PUSH to the comet named in it, ROOM (batched) and BROADCAST to every comet.
//!
//! `run()` registers, watches the comets (`CometPool::watch`: one worker per registered comet), starts the
//! room batcher and runs the `Consumer` until shutdown. Then it stops fetching: on Kafka that is all (what it
//! has not taken is the other jobs'); on the in-process queue it keeps consuming while messages arrive
//! within `DRAIN_GAP` (200 ms) of each other, for at most `DRAIN_MAX` (10 s). It drops the batcher (which
//! flushes the pending rooms), waits for the committer, abandons after `ABANDON_AFTER` (5 s) the deliveries
//! to comets that do not answer (uncommitted), stops watching, closes the queue (Kafka: commit the stored
//! offsets and leave the group, so the other jobs take the partitions at once) and deregisters.

pub mod comet_pool;
pub mod consumer;
pub mod room_batcher;

use std::sync::Arc;
use std::time::Duration;

use imcloud_common::grpc_channel::Caller;
use imcloud_common::internal_auth::{InternalAuth, InternalAuthError};
use imcloud_common::queue::QueueConsumer;
use imcloud_common::readiness::Readiness;
use imcloud_common::registry::{Registry, RegistryError};
use imcloud_common::room_history::RoomHistory;
use imcloud_common::{Config, NodeInfo, Role};
use tokio_util::sync::CancellationToken;

use crate::comet_pool::CometPool;
use crate::consumer::Consumer;
use crate::room_batcher::RoomBatcher;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Auth(#[from] InternalAuthError),
}

/// Runs a job worker until `shutdown`, then stops fetching (an in-process queue: drains it), finishes the
/// deliveries in flight, commits, leaves the group and returns. Not ready from `shutdown` on.
pub async fn run(
    cfg: &Config,
    registry: Arc<dyn Registry>,
    queue: Arc<dyn QueueConsumer>,
    history: Option<Arc<dyn RoomHistory>>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), JobError> {
    let auth = InternalAuth::from_config(cfg)?;
    let me = NodeInfo::new(
        Role::Job,
        cfg.node_id_or(format_args!("job{}", std::process::id())),
    );
    registry.register(me.clone()).await?;
    let pool = Arc::new(CometPool::new(Caller::new(Role::Job, auth)));
    let watch_stop = CancellationToken::new();
    pool.watch(registry.clone(), watch_stop.clone()).await;
    let (rooms, batcher) = RoomBatcher::start(
        pool.clone(),
        history,
        cfg.room_batch_max,
        Duration::from_millis(cfg.room_flush_ms),
    );
    tracing::info!(id = %me.id, "job consuming");
    readiness.set_serving();
    let (r, s) = (readiness.clone(), shutdown.clone());
    tokio::spawn(async move {
        s.cancelled().await;
        r.set_draining();
    });
    Consumer {
        queue: queue.clone(),
        pool,
        rooms,
        scope: if queue.is_shared() {
            format!("kafka:{}", cfg.kafka_topic)
        } else {
            // The embedded queue numbers its messages from 0 in every process.
            format!("memory:{}", imcloud_common::grpc_telemetry::now_unix_us())
        },
    }
    .run(shutdown)
    .await;
    let _ = batcher.await;
    watch_stop.cancel();
    queue.close().await;
    if let Err(e) = registry.deregister(Role::Job, &me.id).await {
        tracing::warn!("deregister: {e}");
    }
    tracing::info!("job stopped");
    Ok(())
}
