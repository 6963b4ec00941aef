//! `imcloud comet | logic | job | api`: one role per process, for a cluster. The processes find each other
//! through etcd and share Kafka (and Redis for sessions); see docs/deployment.md.

use anyhow::{Context, Result};
use imcloud_comet::CometListeners;
use imcloud_common::Config;
use imcloud_logic::LogicDeps;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{adapters, telemetry};

async fn bind(what: &str, addr: std::net::SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

fn banner(role: &str, cfg: &Config) {
    tracing::info!("imcloud {} {role}", env!("CARGO_PKG_VERSION"));
    for line in adapters::describe(cfg) {
        tracing::info!("  {line}");
    }
}

/// Starts the metrics listener when IMCLOUD_METRICS_ADDR is set; it stops with `stop`.
async fn metrics_listener(
    cfg: &Config,
    metrics: Option<PrometheusHandle>,
    stop: &CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    if cfg.metrics_addr.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(
        telemetry::serve_metrics(cfg.metrics_addr.trim(), metrics, stop.clone()).await?,
    ))
}

pub async fn comet(
    cfg: Config,
    metrics: Option<PrometheusHandle>,
    stop: CancellationToken,
) -> Result<()> {
    adapters::require_shared(&cfg, "comet", false)?;
    banner("comet", &cfg);
    let listeners = CometListeners {
        ws: bind("websocket", cfg.comet_ws_addr).await?,
        tcp: bind("goim TCP", cfg.comet_tcp_addr).await?,
        grpc: bind("comet gRPC", cfg.comet_grpc_addr).await?,
    };
    let registry = adapters::registry(&cfg).await?;
    let m = metrics_listener(&cfg, metrics, &stop).await?;
    imcloud_comet::run(&cfg, registry, listeners, stop).await?;
    if let Some(m) = m {
        let _ = m.await;
    }
    Ok(())
}

pub async fn logic(
    cfg: Config,
    metrics: Option<PrometheusHandle>,
    stop: CancellationToken,
) -> Result<()> {
    adapters::require_shared(&cfg, "logic", true)?;
    if cfg.redis_url.trim().is_empty() {
        tracing::warn!(
            "IMCLOUD_REDIS_URL is not set: sessions live in this process only, which is right only while \
             exactly one logic runs"
        );
    }
    banner("logic", &cfg);
    let listener = bind("logic gRPC", cfg.logic_grpc_addr).await?;
    let deps = LogicDeps {
        registry: adapters::registry(&cfg).await?,
        sessions: adapters::sessions(&cfg).await?,
        queue: adapters::kafka_producer(&cfg).await?,
    };
    let m = metrics_listener(&cfg, metrics, &stop).await?;
    imcloud_logic::run(&cfg, deps, listener, stop).await?;
    if let Some(m) = m {
        let _ = m.await;
    }
    Ok(())
}

pub async fn job(
    cfg: Config,
    metrics: Option<PrometheusHandle>,
    stop: CancellationToken,
) -> Result<()> {
    adapters::require_shared(&cfg, "job", true)?;
    banner("job", &cfg);
    let registry = adapters::registry(&cfg).await?;
    let consumer = adapters::kafka_consumer(&cfg).await?;
    let m = metrics_listener(&cfg, metrics, &stop).await?;
    imcloud_job::run(&cfg, registry, consumer, stop).await?;
    if let Some(m) = m {
        let _ = m.await;
    }
    Ok(())
}

pub async fn api(
    cfg: Config,
    metrics: Option<PrometheusHandle>,
    stop: CancellationToken,
) -> Result<()> {
    banner("api", &cfg);
    let listener = bind("HTTP API", cfg.api_http_addr).await?;
    let registry = adapters::registry(&cfg).await?;
    Ok(imcloud_api::run(&cfg, registry, listener, metrics, stop).await?)
}
