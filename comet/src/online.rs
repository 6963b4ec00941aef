//! Periodic report to logic (room counts, connections, IPs) and to the registry (connection count).

use std::sync::Arc;
use std::time::Duration;

use imcloud_common::NodeInfo;
use imcloud_common::registry::Registry;
use imcloud_proto::logic::OnlineReq;
use tokio_util::sync::CancellationToken;

use crate::comet::Comet;

pub async fn report_loop(
    comet: Arc<Comet>,
    registry: Arc<dyn Registry>,
    mut me: NodeInfo,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let counts = comet.counts();
        let req = OnlineReq {
            server: comet.id.clone(),
            room_count: counts.rooms,
            conn_count: counts.conns,
            ip_count: counts.ips,
        };
        match tokio::time::timeout(
            every.max(Duration::from_secs(1)),
            comet.logic.clone().renew_online(req),
        )
        .await
        {
            Ok(Ok(reply)) => comet.set_room_online(reply.into_inner().all_room_count),
            Ok(Err(e)) => tracing::warn!("logic.RenewOnline: {}", e.message()),
            Err(_) => tracing::warn!("logic.RenewOnline timed out"),
        }
        let draining = comet.drain.is_draining();
        if me.connections != counts.conns || me.draining != draining {
            me.connections = counts.conns;
            me.draining = draining;
            if let Err(e) = registry.register(me.clone()).await {
                tracing::warn!("registry update: {e}");
            }
        }
    }
}
