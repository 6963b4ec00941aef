//! `imcloud standalone`: all four roles in one process, talking to each other over the same gRPC as in a
//! cluster. By default on the embedded adapters (in-process registry and queue, in-memory sessions); with
//! IMCLOUD_ETCD_ENDPOINTS / IMCLOUD_REDIS_URL / IMCLOUD_KAFKA_BROKERS set, on etcd, Redis and Kafka.
//!
//! `run()` generates the auth secret, API key and internal token when they are unset (and prints the first
//! two), splits the descriptor budget (the api a quarter, the comets the rest), binds every listener (the
//! gRPC ones on loopback unless set), connects the adapters, prints the banner and spawns the roles. SIGTERM
//! or Ctrl-C, or the failure of any role, stops them in order, each finishing before the next: the api,
//! logic (from then on no push is accepted, so everything queued is job's to deliver), job (drains the
//! queue), comet (its drain). Because logic stops before comet, the comets' last calls to logic fail: new
//! connections are refused ("auth failed"), op 4 is answered with code -500, heartbeats and the final
//! `Disconnect` log a warning; sessions in Redis then stay until their TTL.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use imcloud_comet::CometListeners;
use imcloud_common::fd_budget;
use imcloud_common::{Config, ConfigArgs};

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

/// Standalone keeps its internal gRPC listeners (logic, comet) on loopback unless their addresses were
/// set: nothing outside this machine needs them.
pub fn bind_internal_to_loopback(cfg: &mut Config, args: &ConfigArgs) {
    for (key, addr) in [
        ("logic_grpc_addr", &mut cfg.logic_grpc_addr),
        ("comet_grpc_addr", &mut cfg.comet_grpc_addr),
    ] {
        if !Config::explicitly_set(args, key) {
            addr.set_ip([127, 0, 0, 1].into());
        }
    }
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
    let mtls = !cfg.internal_ca_file.trim().is_empty();
    if !mtls && cfg.internal_token.trim().is_empty() {
        // All roles share this process: the token only has to be unguessable.
        cfg.internal_token = format!("{}{}", generate_secret(), generate_secret());
    }
    cfg.check_secrets(true)?;
    // One descriptor table for every listener: the api gets a quarter of the budget unless told
    // otherwise, the comets the rest, so a flood on one cannot starve the other.
    let budget = fd_budget::client_budget(cfg.fd_reserve);
    if cfg.api_max_connections == 0 {
        cfg.api_max_connections = (budget / 4).max(1);
    }
    if cfg.comet_max_connections == 0 {
        cfg.comet_max_connections = budget.saturating_sub(cfg.api_max_connections).max(1);
    }

    let logic_l = bind("logic gRPC", cfg.logic_grpc_addr).await?;
    let logic_addr = shown(logic_l.local_addr()?);
    cfg.logic_addr = logic_addr.clone();
    let comet_l = CometListeners {
        ws: bind("websocket", cfg.comet_ws_addr).await?,
        tcp: bind("goim TCP", cfg.comet_tcp_addr).await?,
        grpc: bind("comet gRPC", cfg.comet_grpc_addr).await?,
        wss: match cfg.comet_wss_addr() {
            Some(a) => Some(bind("wss", a).await?),
            None => None,
        },
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
    // Job appends to it, logic reads it for recoveries: one instance for both.
    let history = adapters::history(&cfg, true).await?;
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

    println!("imcloud {} standalone", env!("CARGO_PKG_VERSION"));
    let wss = comet_l
        .wss
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(shown);
    let scheme = if cfg.api_tls { "https" } else { "http" };
    println!("  websocket    ws://{ws}/sub");
    if let Some(wss) = &wss {
        println!("  websocket    wss://{wss}/sub");
    }
    let tcp_tls = if cfg.comet_tcp_tls { "  (TLS)" } else { "" };
    println!("  goim tcp     {tcp}{tcp_tls}");
    if cfg.im_enabled() {
        println!(
            "  http api     {scheme}://{http}  (IM JSON API under /v1, OpenAPI at /v1/openapi.json)"
        );
    } else {
        println!("  http api     {scheme}://{http}  (IM tier off: IMCLOUD_IM=off)");
    }
    println!("  logic gRPC   {logic_addr}");
    println!("  comet gRPC   {grpc}");
    for line in adapters::describe(&cfg) {
        println!("  {line}");
    }
    println!(
        "  internal RPC {}",
        if mtls {
            "mutual TLS"
        } else {
            "internal token (generated unless IMCLOUD_INTERNAL_TOKEN is set)"
        }
    );
    // A secret given by the operator is not echoed (it may end up in a log); a generated one must be
    // shown, or nobody could use it.
    let shown_secret = |generated: bool, value: &str, var: &str| {
        if generated {
            format!("{value}  (generated; set {var} to keep it)")
        } else {
            format!("(from {var})")
        }
    };
    let secret_arg = |generated: bool, value: &str, var: &str| {
        if generated {
            value.to_string()
        } else {
            format!("\"${var}\"")
        }
    };
    println!(
        "  auth secret  {}",
        shown_secret(secret_generated, &cfg.auth_secret, "IMCLOUD_AUTH_SECRET")
    );
    println!(
        "  api key      {}",
        shown_secret(key_generated, &cfg.api_key, "IMCLOUD_API_KEY")
    );
    let ws_url = match &wss {
        Some(wss) => format!("wss://{wss}/sub"),
        None => format!("ws://{ws}/sub"),
    };
    println!("try, in two more terminals:");
    println!(
        "  imcloud client sub --url {ws_url} --mid 1 --room live://1000 --secret {}",
        secret_arg(secret_generated, &cfg.auth_secret, "IMCLOUD_AUTH_SECRET")
    );
    println!(
        "  imcloud client push --api {scheme}://{http} --api-key {} room --type live --room 1000 'hello'",
        secret_arg(key_generated, &cfg.api_key, "IMCLOUD_API_KEY")
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
    let logic_history = history.clone();
    let logic = spawn_role(
        "logic",
        Box::pin(async move {
            let deps = LogicDeps {
                registry: reg,
                sessions,
                queue: producer,
                history: logic_history,
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
        Box::pin(async move {
            Ok(imcloud_job::run(&c, reg, consumer, history, Readiness::new(), stop).await?)
        }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: ConfigArgs,
    }

    #[test]
    fn internal_grpc_stays_on_loopback_unless_set() {
        let cli = Cli::parse_from(["x", "--comet-grpc-addr", "0.0.0.0:4109"]);
        let mut cfg = Config::load(&cli.config).unwrap();
        bind_internal_to_loopback(&mut cfg, &cli.config);
        assert_eq!(cfg.logic_grpc_addr, "127.0.0.1:3119".parse().unwrap());
        assert_eq!(
            cfg.comet_grpc_addr,
            "0.0.0.0:4109".parse().unwrap(),
            "set explicitly"
        );
        assert_eq!(
            cfg.comet_ws_addr,
            "0.0.0.0:3102".parse().unwrap(),
            "public listeners untouched"
        );
    }
}
