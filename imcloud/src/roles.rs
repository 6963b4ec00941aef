//! `imcloud comet | logic | job | api`: one role per process, for a cluster. The processes find each other
//! through etcd and share Kafka (and Redis for sessions); see docs/deployment.md.
//!
//! Comet, logic and job check `adapters::require_shared`; logic warns without Redis (in-process sessions are
//! right only with exactly one logic) and on SQLite. Each role logs its banner, binds its listeners, connects
//! its adapters (logic: the Kafka producer; job: the Kafka consumer), sets up its readiness checks, serves
//! `/metrics`, `/healthz` and `/readyz` on `IMCLOUD_METRICS_ADDR` (when set) until it has drained, and runs
//! until SIGTERM or Ctrl-C, then does its one step of the drain (docs/operations.md).

use anyhow::{Context, Result};
use imcloud_comet::CometListeners;
use imcloud_common::Config;
use imcloud_common::readiness::Readiness;
use imcloud_logic::LogicDeps;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{adapters, readiness_checks, telemetry};

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

/// Runs a role, with the metrics listener beside it when IMCLOUD_METRICS_ADDR is set. The listener
/// (`/metrics`, `/healthz`, `/readyz`) lives until the role has finished draining, and the readiness
/// checks run meanwhile.
async fn with_metrics<E>(
    cfg: &Config,
    metrics: Option<PrometheusHandle>,
    readiness: &Readiness,
    role: impl std::future::Future<Output = Result<(), E>>,
) -> Result<()>
where
    anyhow::Error: From<E>,
{
    let done = CancellationToken::new();
    readiness.start(
        std::time::Duration::from_secs(cfg.readiness_check_secs),
        done.clone(),
    );
    let listener = match cfg.metrics_addr.trim() {
        "" => None,
        addr => {
            Some(telemetry::serve_metrics(addr, metrics, readiness.clone(), done.clone()).await?)
        }
    };
    let result = role.await;
    done.cancel();
    if let Some(l) = listener {
        let _ = l.await;
    }
    Ok(result?)
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
    let readiness = Readiness::new();
    readiness_checks::registry(&readiness, &registry);
    readiness_checks::logic(&readiness, &cfg, &registry);
    let role = imcloud_comet::run(&cfg, registry, listeners, readiness.clone(), stop);
    with_metrics(&cfg, metrics, &readiness, role).await
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
        history: adapters::history(&cfg, false).await?,
        db: if cfg.im_enabled() {
            Some(adapters::database(&cfg).await?)
        } else {
            None
        },
    };
    if deps.db.as_ref().is_some_and(adapters::is_sqlite) {
        tracing::warn!(
            "IMCLOUD_DATABASE_URL is not a postgres:// url: the IM stores are a SQLite file of this process, \
             which is right only while exactly one logic runs"
        );
    }
    let readiness = Readiness::new();
    readiness_checks::registry(&readiness, &deps.registry);
    readiness_checks::producer(&readiness, &deps.queue);
    readiness_checks::sessions(&readiness, &cfg);
    if let Some(db) = &deps.db {
        readiness_checks::database(&readiness, db);
    }
    let role = imcloud_logic::run(&cfg, deps, listener, readiness.clone(), stop);
    with_metrics(&cfg, metrics, &readiness, role).await
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
    let history = adapters::history(&cfg, false).await?;
    let readiness = Readiness::new();
    readiness_checks::registry(&readiness, &registry);
    readiness_checks::consumer(&readiness, &consumer);
    let role = imcloud_job::run(&cfg, registry, consumer, history, readiness.clone(), stop);
    with_metrics(&cfg, metrics, &readiness, role).await
}

/// The api serves `/metrics`, `/healthz` and `/readyz` on its own HTTP listener.
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
    let readiness = Readiness::new();
    if !cfg.etcd_endpoints.trim().is_empty() {
        readiness_checks::registry(&readiness, &registry);
    }
    readiness_checks::logic(&readiness, &cfg, &registry);
    let done = CancellationToken::new();
    readiness.start(
        std::time::Duration::from_secs(cfg.readiness_check_secs),
        done.clone(),
    );
    let result = imcloud_api::run(&cfg, registry, listener, metrics, readiness, stop).await;
    done.cancel();
    Ok(result?)
}
