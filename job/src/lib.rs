//! imcloud job: consumes the push queue and delivers each message to the comet(s) it addresses:
//! PUSH to the comet named in it, ROOM (batched) and BROADCAST to every comet.

pub mod comet_pool;
pub mod consumer;
pub mod room_batcher;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use imcloud_common::queue::QueueConsumer;
use imcloud_common::registry::{Registry, RegistryError};
use imcloud_common::{Config, NodeInfo, Role};
use tokio_util::sync::CancellationToken;

use crate::comet_pool::CometPool;
use crate::consumer::Consumer;
use crate::room_batcher::RoomBatcher;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Runs a job worker until `shutdown`, then drains the queue and returns after the last commit.
pub async fn run(
    cfg: &Config,
    registry: Arc<dyn Registry>,
    queue: Arc<dyn QueueConsumer>,
    shutdown: CancellationToken,
) -> Result<(), JobError> {
    let me = NodeInfo::new(
        Role::Job,
        cfg.node_id_or(format_args!("job{}", std::process::id())),
    );
    registry.register(me.clone()).await?;
    let pool = Arc::new(CometPool::default());
    let watch_stop = CancellationToken::new();
    pool.watch(registry.clone(), watch_stop.clone()).await;
    let (rooms, batcher) = RoomBatcher::start(
        pool.clone(),
        cfg.room_batch_max,
        Duration::from_millis(cfg.room_flush_ms),
    );
    let rejoiner = tokio::spawn(rejoin_on_job_loss(
        registry.clone(),
        queue.clone(),
        me.id.clone(),
        Duration::from_millis(u64::from(cfg.kafka_session_timeout_ms) + 2000),
        watch_stop.clone(),
    ));
    tracing::info!(id = %me.id, "job consuming");
    Consumer {
        queue: queue.clone(),
        pool,
        rooms,
    }
    .run(shutdown)
    .await;
    let _ = batcher.await;
    // No rejoin may follow the close.
    watch_stop.cancel();
    let _ = rejoiner.await;
    queue.close().await;
    if let Err(e) = registry.deregister(Role::Job, &me.id).await {
        tracing::warn!("deregister: {e}");
    }
    tracing::info!("job stopped");
    Ok(())
}

/// When another job leaves the registry (killed: its lease expired), the live job with the lowest id waits
/// out the broker's session timeout, by which time the broker has dropped the dead member, and rejoins the
/// consumer group so the dead job's partitions are assigned again (see [`QueueConsumer::rejoin`]).
async fn rejoin_on_job_loss(
    registry: Arc<dyn Registry>,
    queue: Arc<dyn QueueConsumer>,
    me: String,
    delay: Duration,
    shutdown: CancellationToken,
) {
    let mut rx = registry.watch(Role::Job);
    let ids =
        |nodes: &[NodeInfo]| -> BTreeSet<String> { nodes.iter().map(|n| n.id.clone()).collect() };
    let mut known = ids(&rx.borrow_and_update());
    loop {
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
        let live = ids(&rx.borrow_and_update());
        let lost: Vec<&String> = known.difference(&live).filter(|id| **id != me).collect();
        if !lost.is_empty() && live.first() == Some(&me) {
            tracing::info!(
                ?lost,
                "job(s) left the registry; rejoining the consumer group in {delay:?}"
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => queue.rejoin().await,
                _ = shutdown.cancelled() => return,
            }
        }
        known = live;
    }
}
