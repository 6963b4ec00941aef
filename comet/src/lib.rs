//! imcloud comet: holds the client connections (websocket `/sub` and goim TCP), keeps them in buckets and
//! rooms, and delivers what job pushes over gRPC. See docs/architecture.md.

pub mod batch;
pub mod bucket;
pub mod channel;
pub mod comet;
pub mod command;
pub mod connection;
pub mod drain;
pub mod grpc;
pub mod listener;
pub mod online;
pub mod op_filter;
pub mod out_frame;
pub mod outbox;
pub mod room;
pub mod server_tcp;
pub mod server_websocket;
pub mod socket_io;
pub mod transport;
pub mod ws_codec;
pub mod ws_handshake;

use std::sync::Arc;
use std::time::Duration;

use imcloud_common::grpc_channel::{self, logic_channel};
use imcloud_common::grpc_telemetry::ServerTelemetry;
use imcloud_common::node::advertised;
use imcloud_common::readiness::Readiness;
use imcloud_common::registry::{Registry, RegistryError};
use imcloud_common::{Config, NodeInfo, Role};
use imcloud_proto::comet::comet_server::CometServer;
use imcloud_proto::logic::logic_client::LogicClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::comet::{Comet, CometSettings};

/// How long shutdown waits for connections to flush and close after the drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum CometError {
    #[error("{0}")]
    LogicAddr(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

pub struct CometListeners {
    pub ws: TcpListener,
    pub tcp: TcpListener,
    pub grpc: TcpListener,
}

/// Runs a comet until `shutdown`: accepts clients, serves job's gRPC, reports online counts. Then drains
/// (`drain.rs`): not ready, no new connections, reconnect hints and closes spread over the drain window,
/// and only then deregisters and stops the gRPC server, so deliveries reach every connection to its end.
pub async fn run(
    cfg: &Config,
    registry: Arc<dyn Registry>,
    listeners: CometListeners,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), CometError> {
    let grpc_addr = listeners.grpc.local_addr()?;
    let host = cfg.advertise_host();
    let mut me = NodeInfo::new(Role::Comet, cfg.node_id_or(grpc_addr.port()));
    me.grpc_addr = advertised(grpc_addr, &host);
    me.ws_addr = advertised(listeners.ws.local_addr()?, &host);
    me.tcp_addr = advertised(listeners.tcp.local_addr()?, &host);
    me.weight = cfg.comet_weight;

    let comet = Arc::new(Comet::new(
        me.id.clone(),
        CometSettings::from_config(cfg),
        cfg.comet_buckets,
        LogicClient::new(
            logic_channel(cfg, &registry)
                .await
                .map_err(CometError::LogicAddr)?,
        ),
    ));
    // accept_stop: the listeners (drain start); hard_stop: connections still open after the drain;
    // grpc_stop: the delivery server and the online reports (last).
    let (accept_stop, hard_stop, grpc_stop) = (
        CancellationToken::new(),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    let tracker = TaskTracker::new();
    let (c, stop) = (comet.clone(), hard_stop.clone());
    tokio::spawn(listener::accept_loop(
        "websocket",
        listeners.ws,
        accept_stop.clone(),
        tracker.clone(),
        move |stream, peer| server_websocket::handle(c.clone(), stream, peer, stop.clone()),
    ));
    let (c, stop) = (comet.clone(), hard_stop.clone());
    tokio::spawn(listener::accept_loop(
        "tcp",
        listeners.tcp,
        accept_stop.clone(),
        tracker.clone(),
        move |stream, peer| server_tcp::handle(c.clone(), stream, peer, stop.clone()),
    ));
    let reporter = tokio::spawn(online::report_loop(
        comet.clone(),
        registry.clone(),
        me.clone(),
        Duration::from_secs(cfg.online_renew_secs),
        grpc_stop.clone(),
    ));
    registry.register(me.clone()).await?;
    tracing::info!(id = %me.id, ws = %me.ws_addr, tcp = %me.tcp_addr, grpc = %me.grpc_addr, "comet serving");

    let mut server = tokio::spawn(
        grpc_channel::server()
            .add_service(ServerTelemetry::new(CometServer::new(grpc::CometService {
                comet: comet.clone(),
            })))
            .serve_with_incoming_shutdown(
                grpc_channel::incoming(listeners.grpc),
                grpc_stop.clone().cancelled_owned(),
            ),
    );
    readiness.set_serving();
    let early = tokio::select! {
        _ = shutdown.cancelled() => None,
        r = &mut server => Some(r),
    };

    // Drain: not ready, no new connections, hints and closes spread over the window.
    readiness.set_draining();
    accept_stop.cancel();
    if early.is_none() {
        drain::drain(
            &comet,
            &registry,
            &me,
            &drain::DrainSettings::from_config(cfg),
            &tracker,
        )
        .await;
    }
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connections still open {DRAIN_TIMEOUT:?} after the drain; closing them",
            comet.connection_count()
        );
        hard_stop.cancel();
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait()).await;
    }
    hard_stop.cancel();
    grpc_stop.cancel();
    let _ = reporter.await;
    if let Err(e) = registry.deregister(Role::Comet, &me.id).await {
        tracing::warn!("deregister: {e}");
    }
    let served = match early {
        Some(r) => r,
        None => server.await,
    };
    tracing::info!("comet stopped");
    match served {
        Ok(r) => Ok(r?),
        Err(e) => Err(CometError::Io(std::io::Error::other(format!(
            "gRPC server task: {e}"
        )))),
    }
}
