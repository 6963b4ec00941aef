//! The `imcloud` binary: the server roles, standalone mode, and operator client tools.

mod cli_client;

use anyhow::Result;
use clap::{Parser, Subcommand};
use imcloud::{roles, standalone, telemetry};
use imcloud_common::{Config, ConfigArgs, shutdown};
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
    Standalone(ConfigArgs),
    /// Run a comet: websocket /sub and goim TCP connections, gRPC for job (needs etcd; finds logic there)
    Comet(ConfigArgs),
    /// Run logic: auth, sessions (Redis), online counts, push RPCs producing to Kafka (needs etcd and Kafka)
    Logic(ConfigArgs),
    /// Run a job worker: consumes Kafka in a consumer group and delivers to the comets (needs etcd and Kafka)
    Job(ConfigArgs),
    /// Run the HTTP api edge (finds logic through etcd, else at IMCLOUD_LOGIC_ADDR)
    Api(ConfigArgs),
    /// Operator tools: connect as a user, push, mint tokens
    #[command(subcommand)]
    Client(cli_client::ClientCmd),
}

fn main() -> Result<()> {
    imcloud_common::tls::install_default_provider();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Client(c) => cli_client::run(c).await,
            Cmd::Standalone(args) => {
                let (mut cfg, metrics, stop) = server_start(&args)?;
                standalone::bind_internal_to_loopback(&mut cfg, &args);
                standalone::run(cfg, metrics, stop).await
            }
            Cmd::Comet(args) => {
                let (cfg, metrics, stop) = server_start(&args)?;
                roles::comet(cfg, metrics, stop).await
            }
            Cmd::Logic(args) => {
                let (cfg, metrics, stop) = server_start(&args)?;
                roles::logic(cfg, metrics, stop).await
            }
            Cmd::Job(args) => {
                let (cfg, metrics, stop) = server_start(&args)?;
                roles::job(cfg, metrics, stop).await
            }
            Cmd::Api(args) => {
                let (cfg, metrics, stop) = server_start(&args)?;
                roles::api(cfg, metrics, stop).await
            }
        }
    })
}

fn server_start(
    args: &ConfigArgs,
) -> Result<(
    Config,
    Option<metrics_exporter_prometheus::PrometheusHandle>,
    CancellationToken,
)> {
    telemetry::init_logs();
    let cfg = Config::load(args)?;
    let limit = imcloud_common::fd_budget::raise_limit();
    tracing::debug!(limit, "open files limit");
    let metrics = telemetry::init_metrics();
    let stop = CancellationToken::new();
    shutdown::cancel_on_signal(stop.clone());
    Ok((cfg, metrics, stop))
}
