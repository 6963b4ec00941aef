//! The `imcloud` binary: the server roles, standalone mode, and operator client tools.
//!
//! Subcommands: `standalone` (`standalone.rs`), `comet`, `logic`, `job`, `api` (`roles.rs`), and
//! `client sub|push|token` (`cli_client.rs`). Every server subcommand takes the same settings
//! (`ConfigArgs`); telemetry (`telemetry.rs`) is set up before the role runs and flushed after it stops.

mod cli_client;

use anyhow::Result;
use clap::{Parser, Subcommand};
use imcloud::{process_gauges, roles, standalone, telemetry};
use imcloud_common::{Config, shutdown};
use tokio_util::sync::CancellationToken;

/// imcloud: a goim-compatible push platform. Settings come from --config FILE, then IMCLOUD_* environment
/// variables, then flags (each flag's help names its variable).
#[derive(Parser)]
#[command(name = "imcloud", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run comet, logic, job and api in one process (embedded adapters by default; etcd/Redis when configured)
    Standalone(imcloud_common::ConfigArgs),
    /// Run a comet: websocket /sub and goim TCP connections, gRPC for job (needs etcd; finds logic there)
    Comet(imcloud_common::ConfigArgs),
    /// Run logic: auth, sessions (Redis), online counts, push RPCs producing to Kafka (needs etcd and Kafka)
    Logic(imcloud_common::ConfigArgs),
    /// Run a job worker: consumes Kafka in a consumer group and delivers to the comets (needs etcd and Kafka)
    Job(imcloud_common::ConfigArgs),
    /// Run the HTTP api edge (finds logic through etcd, else at IMCLOUD_LOGIC_ADDR)
    Api(imcloud_common::ConfigArgs),
    /// Operator tools: connect as a user, push, mint tokens
    #[command(subcommand)]
    Client(cli_client::ClientCmd),
}

fn main() -> Result<()> {
    let returns_large_blocks = imcloud::malloc_policy::return_large_blocks();
    imcloud_common::tls::install_default_provider();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (role, args) = match cli.cmd {
            Cmd::Client(c) => {
                telemetry::init_logs();
                return cli_client::run(c).await;
            }
            Cmd::Standalone(args) => ("standalone", args),
            Cmd::Comet(args) => ("comet", args),
            Cmd::Logic(args) => ("logic", args),
            Cmd::Job(args) => ("job", args),
            Cmd::Api(args) => ("api", args),
        };
        let mut cfg = Config::load(&args)?;
        if role == "standalone" {
            standalone::bind_internal_to_loopback(&mut cfg, &args);
        }
        let telemetry = telemetry::init(role, cfg.log_format == "json");
        if !returns_large_blocks {
            tracing::warn!(
                "mallopt(M_MMAP_THRESHOLD) was refused: freed large blocks may stay resident"
            );
        }
        let limit = imcloud_common::fd_budget::raise_limit();
        tracing::debug!(limit, "open files limit");
        let metrics = telemetry::init_metrics();
        if metrics.is_some() {
            process_gauges::spawn();
        }
        let stop = CancellationToken::new();
        shutdown::cancel_on_signal(stop.clone());
        let result = match role {
            "standalone" => standalone::run(cfg, metrics, stop).await,
            "comet" => roles::comet(cfg, metrics, stop).await,
            "logic" => roles::logic(cfg, metrics, stop).await,
            "job" => roles::job(cfg, metrics, stop).await,
            _ => roles::api(cfg, metrics, stop).await,
        };
        telemetry.shutdown().await;
        result
    })
}
