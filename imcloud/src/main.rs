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
    /// Load generator: connection cost and push fan-out against a running imcloud
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    #[arg(long, default_value = "ws://127.0.0.1:3102/sub")]
    url: String,
    #[arg(long, env = "IMCLOUD_AUTH_SECRET", hide_env_values = true)]
    secret: String,
    /// Local source addresses to spread connections over
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    sources: Vec<std::net::IpAddr>,
    /// Connections opened at once
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    #[arg(long, default_value_t = 1000)]
    conns: usize,
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(clap::Subcommand)]
enum BenchWhat {
    /// Server memory per idle authenticated connection (reads the server's RSS from /proc)
    Idle {
        #[arg(long)]
        server_pid: u32,
    },
    /// Room push fan-out: throughput and latency to every connection
    Fanout {
        #[arg(long, default_value = "http://127.0.0.1:3111")]
        api: String,
        #[arg(long, env = "IMCLOUD_API_KEY", hide_env_values = true)]
        api_key: String,
        #[arg(long, default_value_t = 100)]
        messages: usize,
    },
    /// Open the connections and keep them alive with heartbeats until Ctrl-C
    Hold {
        #[arg(long, default_value_t = 30)]
        heartbeat_secs: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Client(c) => cli_client::run(c).await,
            Cmd::Bench(b) => {
                let target = imcloud::bench::Target {
                    ws_url: b.url,
                    secret: b.secret,
                    sources: b.sources,
                    concurrency: b.concurrency,
                };
                match b.what {
                    BenchWhat::Idle { server_pid } => {
                        imcloud::bench::idle(&target, b.conns, server_pid).await
                    }
                    BenchWhat::Fanout {
                        api,
                        api_key,
                        messages,
                    } => imcloud::bench::fanout(&target, &api, &api_key, b.conns, messages).await,
                    BenchWhat::Hold { heartbeat_secs } => {
                        let clients = imcloud::bench::open(&target, b.conns, 1, "").await?;
                        println!("{} connections open; Ctrl-C to close", clients.len());
                        imcloud::bench::hold(
                            clients,
                            std::time::Duration::from_secs(heartbeat_secs.max(1)),
                        )
                        .await
                    }
                }
            }
            Cmd::Standalone(args) => {
                let (cfg, metrics, stop) = server_start(&args)?;
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
    let metrics = telemetry::init_metrics();
    let stop = CancellationToken::new();
    shutdown::cancel_on_signal(stop.clone());
    Ok((cfg, metrics, stop))
}
