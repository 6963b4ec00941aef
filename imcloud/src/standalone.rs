//! `imcloud standalone`: all four roles in one process, talking to each other over the same gRPC as in a
//! cluster. By default on the embedded adapters (in-process registry and queue, in-memory sessions); with
//! IMCLOUD_ETCD_ENDPOINTS / IMCLOUD_REDIS_URL / IMCLOUD_KAFKA_BROKERS set, on etcd, Redis and Kafka.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use imcloud_comet::CometListeners;
use imcloud_common::Config;

use crate::{adapters, readiness_checks};
use imcloud_common::node::advertised;
use imcloud_common::readiness::Readiness;
use imcloud_common::registry::Registry;
use imcloud_logic::LogicDeps;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A random 128-bit hex secret.
fn generate_secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

fn shown(addr: SocketAddr) -> String {
    advertised(addr, "127.0.0.1")
}

/// Runs everything until SIGTERM/Ctrl-C, then stops in order: api and logic (no new pushes), job (draining
/// the queue), comet (flushing and closing connections).
pub async fn run(
    mut cfg: Config,
    metrics: Option<PrometheusHandle>,
    shutdown: CancellationToken,
) -> Result<()> {
    let secret_generated = cfg.auth_secret.is_empty();
    if secret_generated {
        cfg.auth_secret = generate_secret();
    }
    let key_generated = cfg.api_key.is_empty();
    if key_generated {
        cfg.api_key = generate_secret();
    }

    let logic_l = bind("logic gRPC", cfg.logic_grpc_addr).await?;
    let logic_addr = shown(logic_l.local_addr()?);
    cfg.logic_addr = logic_addr.clone();
    let comet_l = CometListeners {
        ws: bind("websocket", cfg.comet_ws_addr).await?,
        tcp: bind("goim TCP", cfg.comet_tcp_addr).await?,
        grpc: bind("comet gRPC", cfg.comet_grpc_addr).await?,
    };
    let api_l = bind("HTTP API", cfg.api_http_addr).await?;
    let (ws, tcp, grpc, http) = (
        shown(comet_l.ws.local_addr()?),
        shown(comet_l.tcp.local_addr()?),
        shown(comet_l.grpc.local_addr()?),
        shown(api_l.local_addr()?),
    );

    let registry: Arc<dyn Registry> = adapters::registry(&cfg).await?;
    let sessions = adapters::sessions(&cfg).await?;
    let (producer, consumer) = adapters::queue(&cfg).await?;
    // With the IM tier off, no database is opened at all.
    let db = if cfg.im_enabled() {
        Some(adapters::database(&cfg).await?)
    } else {
        None
    };
    // One readiness for the process (/readyz on the api listener): every role serving, every configured
    // engine answering, and not stopping.
    let readiness = Readiness::new();
    readiness_checks::registry(&readiness, &registry);
    readiness_checks::producer(&readiness, &producer);
    readiness_checks::sessions(&readiness, &cfg);
    if let Some(db) = &db {
        readiness_checks::database(&readiness, db);
    }
    let checks_stop = CancellationToken::new();
    readiness.start(
        std::time::Duration::from_secs(cfg.readiness_check_secs),
        checks_stop.clone(),
    );
    let _checks_stop = checks_stop.drop_guard();

    let note = |generated: bool, var: &str| {
        if generated {
            format!("(generated; set {var} to keep it)")
        } else {
            format!("(from {var})")
        }
    };
    println!("imcloud {} standalone", env!("CARGO_PKG_VERSION"));
    println!("  websocket    ws://{ws}/sub");
    println!("  goim tcp     {tcp}");
    if cfg.im_enabled() {
        println!(
            "  http api     http://{http}  (IM JSON API under /v1, OpenAPI at /v1/openapi.json)"
        );
    } else {
        println!("  http api     http://{http}  (IM tier off: IMCLOUD_IM=off)");
    }
    println!("  logic gRPC   {logic_addr}");
    println!("  comet gRPC   {grpc}");
    for line in adapters::describe(&cfg) {
        println!("  {line}");
    }
    println!(
        "  auth secret  {}  {}",
        cfg.auth_secret,
        note(secret_generated, "IMCLOUD_AUTH_SECRET")
    );
    println!(
        "  api key      {}  {}",
        cfg.api_key,
        note(key_generated, "IMCLOUD_API_KEY")
    );
    println!("try, in two more terminals:");
    println!(
        "  imcloud client sub --url ws://{ws}/sub --mid 1 --room live://1000 --secret {}",
        cfg.auth_secret
    );
    println!(
        "  imcloud client push --api http://{http} --api-key {} room --type live --room 1000 'hello'",
        cfg.api_key
    );

    let api_stop = CancellationToken::new();
    let job_stop = CancellationToken::new();
    let comet_stop = CancellationToken::new();
    let logic_stop = CancellationToken::new();
    let failed = CancellationToken::new();

    let spawn_role =
        |name: &'static str,
         fut: std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>|
         -> JoinHandle<Result<()>> {
            let failed = failed.clone();
            tokio::spawn(async move {
                let r = fut.await;
                if let Err(e) = &r {
                    tracing::error!("{name} failed: {e:#}");
                    failed.cancel();
                }
                r
            })
        };

    let c = cfg.clone();
    let (reg, stop) = (registry.clone(), logic_stop.clone());
    let logic = spawn_role(
        "logic",
        Box::pin(async move {
            let deps = LogicDeps {
                registry: reg,
                sessions,
                queue: producer,
                db,
            };
            Ok(imcloud_logic::run(&c, deps, logic_l, Readiness::new(), stop).await?)
        }),
    );
    let c = cfg.clone();
    let (reg, stop) = (registry.clone(), comet_stop.clone());
    let comet = spawn_role(
        "comet",
        Box::pin(
            async move { Ok(imcloud_comet::run(&c, reg, comet_l, Readiness::new(), stop).await?) },
        ),
    );
    let c = cfg.clone();
    let (reg, stop) = (registry.clone(), job_stop.clone());
    let job = spawn_role(
        "job",
        Box::pin(
            async move { Ok(imcloud_job::run(&c, reg, consumer, Readiness::new(), stop).await?) },
        ),
    );
    let c = cfg.clone();
    let (reg, stop) = (registry.clone(), api_stop.clone());
    // The api answers /readyz for the whole process (the checks above); the api is stopped first, so
    // its drain is the process's.
    let ready = readiness.clone();
    let api = spawn_role(
        "api",
        Box::pin(async move { Ok(imcloud_api::run(&c, reg, api_l, metrics, ready, stop).await?) }),
    );

    tokio::select! {
        _ = shutdown.cancelled() => tracing::info!("stopping: api, logic, then job (draining), then comet"),
        _ = failed.cancelled() => tracing::error!("a role failed; stopping the others"),
    }
    readiness.set_draining();
    let mut result = Ok(());
    for (name, stop, handle) in [
        ("api", api_stop, api),
        ("logic", logic_stop, logic),
        ("job", job_stop, job),
        ("comet", comet_stop, comet),
    ] {
        stop.cancel();
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e.context(format!("{name} failed"))),
            Err(e) => result = Err(anyhow::anyhow!("{name} panicked: {e}")),
        }
    }
    result
}
