//! imcloud comet: holds the client connections (websocket `/sub` and goim TCP), keeps them in buckets and
//! rooms, and delivers what job pushes over gRPC. docs/architecture.md has the map of the crate.
//!
//! `run()` advertises its `NodeInfo` (addresses bound to 0.0.0.0 become `advertise_host:port`), starts the
//! accept loops, the online reporter and the gRPC server (`CometService` behind `InternalAuthLayer` with
//! `COMET_POLICY`). On shutdown: not ready, the accept loops stop, the drain (`drain.rs`), then up to
//! `DRAIN_TIMEOUT` (10 s) for the last connection tasks; only then does it deregister and stop the gRPC
//! server, so job's deliveries reach every connection to its end.

pub mod batch;
pub mod bucket;
pub mod channel;
pub mod comet;
pub mod command;
pub mod connection;
pub mod drain;
pub mod grpc;
pub mod heartbeat;
pub mod limits;
pub mod listener;
pub mod online;
pub mod op_filter;
pub mod out_frame;
pub mod outbox;
pub mod recovery;
pub mod registration_lapse;
pub mod room;
pub mod server_tcp;
pub mod server_websocket;
pub mod socket_io;
pub mod tls;
pub mod transport;
pub mod ws_codec;
pub mod ws_handshake;

use std::sync::Arc;
use std::time::Duration;

use imcloud_common::fd_budget;
use imcloud_common::grpc_channel::{self, Caller, logic_channel};
use imcloud_common::grpc_telemetry::ServerTelemetry;
use imcloud_common::internal_auth::{COMET_POLICY, InternalAuth, InternalAuthLayer};
use imcloud_common::node::advertised;
use imcloud_common::readiness::Readiness;
use imcloud_common::registry::{Registry, RegistryError};
use imcloud_common::tls::public_tls;
use imcloud_common::{Config, NodeInfo, Role};
use imcloud_proto::comet::comet_server::CometServer;
use imcloud_proto::logic::logic_client::LogicClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::comet::{Comet, CometSettings};
use crate::limits::{CometLimits, Protocol};
use crate::listener::OnRefusal;

/// How long shutdown waits for connections to flush and close after the drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum CometError {
    #[error("{0}")]
    LogicAddr(String),
    #[error("{0}")]
    Config(String),
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
    /// wss, when `IMCLOUD_COMET_WSS_ADDR` is set.
    pub wss: Option<TcpListener>,
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
    let config = |e: &dyn std::fmt::Display| CometError::Config(e.to_string());
    let auth = InternalAuth::from_config(cfg).map_err(|e| config(&e))?;
    // wss negotiates HTTP/1.1 by ALPN; goim TCP over TLS has no application protocol to name.
    let load_tls = |on: bool, alpn: &'static [&'static [u8]]| -> Result<_, CometError> {
        if !on {
            return Ok(None);
        }
        let t = public_tls(&cfg.tls_cert_file, &cfg.tls_key_file, alpn).map_err(|e| config(&e))?;
        t.watch(Duration::from_secs(cfg.tls_reload_secs));
        Ok(Some(t))
    };
    let wss_tls = load_tls(listeners.wss.is_some(), &[b"http/1.1"])?;
    let tcp_tls = load_tls(cfg.comet_tcp_tls, &[])?;
    let max_connections = match cfg.comet_max_connections {
        0 => fd_budget::client_budget(cfg.fd_reserve),
        n => n,
    };
    let limits = Arc::new(CometLimits::new(cfg, max_connections));
    let grpc_addr = listeners.grpc.local_addr()?;
    let host = cfg.advertise_host();
    let mut me = NodeInfo::new(Role::Comet, cfg.node_id_or(grpc_addr.port()));
    me.grpc_addr = cfg.grpc_advertised(grpc_addr);
    me.ws_addr = advertised(listeners.ws.local_addr()?, &host);
    me.tcp_addr = advertised(listeners.tcp.local_addr()?, &host);
    if let Some(wss) = &listeners.wss {
        me.wss_addr = advertised(wss.local_addr()?, &host);
    }
    me.weight = cfg.comet_weight;

    let comet = Arc::new(Comet::new(
        me.id.clone(),
        CometSettings::from_config(cfg),
        cfg.comet_buckets,
        LogicClient::new(
            logic_channel(cfg, &registry, &Caller::new(Role::Comet, auth.clone()))
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
        limits.clone(),
        OnRefusal::Explain(Protocol::Websocket),
        move |stream, peer| server_websocket::handle(c.clone(), stream, peer, stop.clone()),
    ));
    if let (Some(wss), Some(tls)) = (listeners.wss, wss_tls) {
        let (c, stop) = (comet.clone(), hard_stop.clone());
        tokio::spawn(listener::accept_loop(
            "wss",
            wss,
            accept_stop.clone(),
            tracker.clone(),
            limits.clone(),
            OnRefusal::Close,
            move |stream, peer| tls::handle_wss(c.clone(), tls.clone(), stream, peer, stop.clone()),
        ));
    }
    let (c, stop) = (comet.clone(), hard_stop.clone());
    match tcp_tls {
        Some(tls) => tokio::spawn(listener::accept_loop(
            "tcp+tls",
            listeners.tcp,
            accept_stop.clone(),
            tracker.clone(),
            limits.clone(),
            OnRefusal::Close,
            move |stream, peer| tls::handle_tcp(c.clone(), tls.clone(), stream, peer, stop.clone()),
        )),
        None => tokio::spawn(listener::accept_loop(
            "tcp",
            listeners.tcp,
            accept_stop.clone(),
            tracker.clone(),
            limits.clone(),
            OnRefusal::Explain(Protocol::GoimTcp),
            move |stream, peer| server_tcp::handle(c.clone(), stream, peer, stop.clone()),
        )),
    };
    tokio::spawn(heartbeat::sweep_loop(comet.clone(), grpc_stop.clone()));
    let reporter = tokio::spawn(online::report_loop(
        comet.clone(),
        registry.clone(),
        me.clone(),
        Duration::from_secs(cfg.online_renew_secs),
        grpc_stop.clone(),
    ));
    tokio::spawn(registration_lapse::close_on_lapse(
        comet.clone(),
        registry.lapses(),
        grpc_stop.clone(),
    ));
    registry.register(me.clone()).await?;
    tracing::info!(
        id = %me.id, ws = %me.ws_addr, wss = %me.wss_addr, tcp = %me.tcp_addr, tcp_tls = cfg.comet_tcp_tls,
        grpc = %me.grpc_addr, internal_mtls = auth.is_mtls(), max_connections = limits.max_connections(),
        "comet serving"
    );

    // Only jobs and logic may deliver (imcloud_common::internal_auth::COMET_POLICY).
    let mut server = tokio::spawn(
        grpc_channel::server()
            .layer(InternalAuthLayer::new(auth.clone(), &COMET_POLICY, ""))
            .add_service(ServerTelemetry::new(CometServer::new(grpc::CometService {
                comet: comet.clone(),
            })))
            .serve_with_incoming_shutdown(
                grpc_channel::incoming(listeners.grpc, auth, "comet gRPC"),
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
        comet.wake_all();
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait()).await;
    }
    hard_stop.cancel();
    comet.wake_all();
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
