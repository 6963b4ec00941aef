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

/// Runs a role, with the metrics listener beside it when IMCLOUD_METRICS_ADDR is set (it stops with `stop`).
async fn with_metrics<E>(
    cfg: &Config,
    metrics: Option<PrometheusHandle>,
    stop: &CancellationToken,
    role: impl std::future::Future<Output = Result<(), E>>,
) -> Result<()>
where
    anyhow::Error: From<E>,
{
    let listener = match cfg.metrics_addr.trim() {
        "" => None,
        addr => Some(telemetry::serve_metrics(addr, metrics, stop.clone()).await?),
    };
    role.await?;
    if let Some(l) = listener {
        let _ = l.await;
    }
    Ok(())
}

pub async fn comet(
    cfg: Config,
    metrics: Option<PrometheusHandle>,
    stop: CancellationToken,
) -> Result<()> {
    adapters::require_shared(&cfg, "comet", false)?;
    cfg.check_secrets(false)?;
    imcloud_common::internal_auth::check_config(&cfg)?;
    banner("comet", &cfg);
    let listeners = CometListeners {
        ws: bind("websocket", cfg.comet_ws_addr).await?,
        tcp: bind("goim TCP", cfg.comet_tcp_addr).await?,
        grpc: bind("comet gRPC", cfg.comet_grpc_addr).await?,
        wss: match cfg.comet_wss_addr() {
            Some(a) => Some(bind("wss", a).await?),
            None => None,
        },
    };
    let registry = adapters::registry(&cfg).await?;
    let role = imcloud_comet::run(&cfg, registry, listeners, stop.clone());
    with_metrics(&cfg, metrics, &stop, role).await
}

pub async fn logic(
    cfg: Config,
    metrics: Option<PrometheusHandle>,
    stop: CancellationToken,
) -> Result<()> {
    adapters::require_shared(&cfg, "logic", true)?;
    cfg.check_secrets(false)?;
    imcloud_common::internal_auth::check_config(&cfg)?;
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
        db: adapters::database(&cfg).await?,
    };
    if adapters::is_sqlite(&deps.db) {
        tracing::warn!(
            "IMCLOUD_DATABASE_URL is not a postgres:// url: the IM stores are a SQLite file of this process, \
             which is right only while exactly one logic runs"
        );
    }
    let role = imcloud_logic::run(&cfg, deps, listener, stop.clone());
    with_metrics(&cfg, metrics, &stop, role).await
}

pub async fn job(
    cfg: Config,
    metrics: Option<PrometheusHandle>,
    stop: CancellationToken,
) -> Result<()> {
    adapters::require_shared(&cfg, "job", true)?;
    cfg.check_secrets(false)?;
    imcloud_common::internal_auth::check_config(&cfg)?;
    banner("job", &cfg);
    let registry = adapters::registry(&cfg).await?;
    let consumer = adapters::kafka_consumer(&cfg).await?;
    let role = imcloud_job::run(&cfg, registry, consumer, stop.clone());
    with_metrics(&cfg, metrics, &stop, role).await
}

pub async fn api(
    cfg: Config,
    metrics: Option<PrometheusHandle>,
    stop: CancellationToken,
) -> Result<()> {
    cfg.check_secrets(false)?;
    imcloud_common::internal_auth::check_config(&cfg)?;
    banner("api", &cfg);
    let listener = bind("HTTP API", cfg.api_http_addr).await?;
    let registry = adapters::registry(&cfg).await?;
    Ok(imcloud_api::run(&cfg, registry, listener, metrics, stop).await?)
}
