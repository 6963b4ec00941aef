//! `imcloud-bench`: the load generator. It drives imcloud (and any goim-protocol server), Centrifugo's and
//! NATS's websocket listeners or the bare tokio-tungstenite server with the same scenarios, and prints a
//! result table (or a JSON line with --json). `scripts/bench` runs the whole comparison; docs/benchmarks.md
//! has the results.
//!
//! Subcommands: `idle`, `fanout`, `cost`, `push`, `scale` (and its hidden `scale-worker`), `im`, `soak`,
//! `bare-server`, and `table` (JSON result lines side by side as markdown).

mod bare_server;
mod centrifugo_ws;
mod delivery;
mod fleet;
mod im;
mod latency;
mod nats_ws;
mod payload;
mod proc_stats;
mod publisher;
mod report;
mod scale;
mod scenarios;
mod soak;
mod subscriber;
mod ws;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::fleet::Dialing;
use crate::publisher::{PushApi, Via};
use crate::report::Report;
use crate::scenarios::{Delivery, Idle, Labels};
use crate::subscriber::{Endpoint, Kind};

#[derive(Parser)]
#[command(
    version,
    about = "imcloud's load generator: idle, fanout, cost, push and scale against imcloud, Centrifugo, NATS \
             websocket or a bare server; im against imcloud's IM tier"
)]
struct Cli {
    /// Print the result as one JSON line instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Open N authenticated connections and hold them idle: connect rate and server memory per connection.
    Idle {
        #[command(flatten)]
        target: TargetArgs,
        /// Connections to open.
        #[arg(short = 'n', long, default_value_t = 1000)]
        connections: usize,
        /// The target's process id, for its resident memory before and after (Linux /proc).
        #[arg(long)]
        server_pid: Option<u32>,
        #[arg(long, default_value_t = 30)]
        heartbeat_secs: u64,
        /// Seconds between the last connection and the second memory reading.
        #[arg(long, default_value_t = 3)]
        settle_secs: u64,
    },
    /// N subscribers in one room (one NATS subject); M messages published as fast as the target takes them.
    Fanout {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        delivery: DeliveryArgs,
    },
    /// The fanout scenario that also reads the target's processes (--server-pid): memory per subscriber and
    /// CPU time per 1,000 deliveries, one point of the cost curve.
    Cost {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        delivery: DeliveryArgs,
    },
    /// Single-user pushes through imcloud's push API (HTTP or gRPC), NATS PUBs to per-user subjects or
    /// Centrifugo publications to per-user channels, at a fixed rate or flat out; end-to-end latency from
    /// the call to the client's receipt.
    Push {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        delivery: DeliveryArgs,
    },
    /// imcloud only: N connections over several comets (one --url each), held by several generator
    /// processes; broadcasts and room pushes alternate, and every connection must get every one.
    Scale {
        #[command(flatten)]
        target: TargetArgs,
        /// Connections in all.
        #[arg(short = 'n', long, default_value_t = 1000)]
        connections: usize,
        /// Generator processes (0 = as few as hold N, 19,900 connections each).
        #[arg(long, default_value_t = 0)]
        workers: usize,
        /// Broadcasts, and as many room pushes.
        #[arg(short = 'm', long, default_value_t = 1)]
        messages: usize,
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// imcloud api service, http://HOST:PORT.
        #[arg(long)]
        api: String,
        #[arg(
            long,
            env = "IMCLOUD_API_KEY",
            default_value = "",
            hide_env_values = true
        )]
        api_key: String,
        /// One per comet, in the order of the --url values: each comet's memory per connection.
        #[arg(long = "server-pid")]
        comet_pids: Vec<u32>,
        #[arg(long, default_value_t = 20)]
        patience_secs: u64,
        /// Seconds between the last connection and the memory reading.
        #[arg(long, default_value_t = 3)]
        settle_secs: u64,
        /// Seconds between heartbeats (the comets' IMCLOUD_HEARTBEAT_SECS).
        #[arg(long, default_value_t = 30)]
        heartbeat_secs: u64,
    },
    /// One generator process of the scale run (started by `scale`; talks JSON lines on stdin/stdout).
    #[command(hide = true)]
    ScaleWorker {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long)]
        first_id: i64,
        #[arg(short = 'n', long)]
        connections: usize,
        /// Messages every connection expects.
        #[arg(long)]
        messages: usize,
        #[arg(long)]
        room: String,
        #[arg(long, default_value_t = 20)]
        patience_secs: u64,
        #[arg(long, default_value_t = 30)]
        heartbeat_secs: u64,
    },
    /// imcloud's IM tier through its `/v1` JSON API and websocket (one report per scenario): sends at a
    /// fixed rate spread over many conversations (spread) or into one (hot), and one group message fanned
    /// out to every connected member (fanout). See bench/src/im.rs.
    Im(ImArgs),
    /// imcloud cluster, for a long run: pushes to keys, mids, rooms and persistent rooms at a fixed rate,
    /// and IM chat between pairs of friends whose clients reconnect now and then and sync; counts lost
    /// and duplicate pushes and IM messages missing after a last sync (bench/src/soak.rs, scripts/soak).
    Soak(SoakArgs),
    /// Run the bare tokio-tungstenite broadcast server (subscribe on /sub, publish on /pub).
    BareServer {
        #[arg(long, default_value = "127.0.0.1:3300")]
        addr: SocketAddr,
    },
    /// Lay JSON results (files of --json lines) side by side as markdown tables.
    Table { files: Vec<PathBuf> },
}

#[derive(Args)]
struct ImArgs {
    /// The api, http://HOST:PORT.
    #[arg(long)]
    api: String,
    /// The comet's websocket, ws://IP:PORT/sub (fanout).
    #[arg(long = "url", default_value = "ws://127.0.0.1:3102/sub")]
    ws_url: String,
    /// Which scenarios, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "spread,hot,fanout"
    )]
    scenarios: Vec<im::Scenario>,
    /// Conversations of the spread scenario.
    #[arg(long, default_value_t = 1000)]
    conversations: usize,
    /// Members of each spread and hot conversation: 2 = a private chat of two friends, more = a group.
    #[arg(long, default_value_t = 2)]
    members: usize,
    /// Sends per second over all conversations in spread (0 = flat out with --inflight calls at a time).
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Sends per second into the hot conversation (0 = flat out).
    #[arg(long, default_value_t = 2000)]
    hot_rate: u64,
    /// Seconds per run.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Seconds of unrecorded sends before the runs (opens the HTTP connections).
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// Send calls in flight at most.
    #[arg(long, default_value_t = 256)]
    inflight: usize,
    /// Runs of each scenario (the report gives each and the medians).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Members of the fanout group, the sending owner included, each connected over the websocket.
    #[arg(long, default_value_t = 1000)]
    group_size: usize,
    /// Messages per fanout run, sent one at a time.
    #[arg(long, default_value_t = 5)]
    fanout_messages: usize,
    /// Registrations, logins, friendships and joins at a time while setting up.
    #[arg(long, default_value_t = 16)]
    setup_concurrency: usize,
    /// Local addresses for the websocket connections.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    sources: Vec<IpAddr>,
    /// Seconds the fanout waits for its last member.
    #[arg(long, default_value_t = 10)]
    patience_secs: u64,
    /// Makes this run's users' emails unique (default: the process id and the time).
    #[arg(long)]
    tag: Option<String>,
    /// The target's name in the report.
    #[arg(long, default_value = "imcloud")]
    label: String,
    /// Version and configuration of the target, copied into the report.
    #[arg(long, default_value = "")]
    about: String,
}

#[derive(Args)]
struct SoakArgs {
    /// The api, http://HOST:PORT.
    #[arg(long)]
    api: String,
    #[arg(long, env = "IMCLOUD_API_KEY", hide_env_values = true)]
    api_key: String,
    /// IMCLOUD_AUTH_SECRET, to mint the push subscribers' tokens.
    #[arg(long, env = "IMCLOUD_AUTH_SECRET", hide_env_values = true)]
    secret: String,
    /// The comets' websockets, ws://IP:PORT/sub (connections spread over them).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Seconds of load.
    #[arg(long, default_value_t = 1800.0)]
    secs: f64,
    /// Pushes per second, all kinds together.
    #[arg(long, default_value_t = 200)]
    push_rate: u64,
    /// Push subscribers (connections that stay connected).
    #[arg(long, default_value_t = 200)]
    subscribers: usize,
    /// Rooms the push subscribers are spread over.
    #[arg(long, default_value_t = 8)]
    rooms: usize,
    /// Push calls in flight at most.
    #[arg(long, default_value_t = 32)]
    inflight: usize,
    /// The push subscribers' first mid.
    #[arg(long, default_value_t = 900_000_000)]
    first_mid: i64,
    /// Pairs of IM friends chatting.
    #[arg(long, default_value_t = 50)]
    im_pairs: usize,
    /// IM sends per second over all pairs.
    #[arg(long, default_value_t = 20)]
    im_rate: u64,
    /// Mean seconds between an IM client's reconnects.
    #[arg(long, default_value_t = 60.0)]
    reconnect_secs: f64,
    /// Seconds the end waits for the last deliveries.
    #[arg(long, default_value_t = 30)]
    patience_secs: u64,
    /// Seconds between progress lines on stderr.
    #[arg(long, default_value_t = 60)]
    progress_secs: u64,
    /// Makes keys, rooms and emails unique to this run (default: the process id and the time).
    #[arg(long)]
    tag: Option<String>,
    #[arg(long, default_value = "imcloud cluster")]
    label: String,
    #[arg(long, default_value = "")]
    about: String,
}

/// A tag unique to this run: the process id and the time.
fn run_tag() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{}-{secs}", std::process::id())
}

#[derive(Args)]
struct TargetArgs {
    #[arg(long, value_enum)]
    target: Kind,
    /// Websocket URL(s): imcloud ws://HOST:PORT/sub, NATS ws://HOST:PORT, Centrifugo
    /// ws://HOST:PORT/connection/websocket, bare ws://HOST:PORT/sub. Several spread the subscribers (one per
    /// comet).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// imcloud's IMCLOUD_AUTH_SECRET, or Centrifugo's HMAC token key (tokens are minted as a backend would).
    #[arg(
        long,
        env = "IMCLOUD_AUTH_SECRET",
        default_value = "",
        hide_env_values = true
    )]
    secret: String,
    /// nats-server's authorization token.
    #[arg(long)]
    nats_token: Option<String>,
    /// Local addresses to connect from (e.g. 127.0.0.1,127.0.0.2), each good for ~28,000 connections.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    sources: Vec<IpAddr>,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The target's name in the report (default: the --target value).
    #[arg(long)]
    label: Option<String>,
    /// Version and configuration of the target, copied into the report.
    #[arg(long, default_value = "")]
    about: String,
    /// PEM CA certificates to trust for wss:// URLs and an https:// --api (default: the system's roots)
    #[arg(long, value_name = "FILE")]
    ca_file: Option<String>,
}

#[derive(Args)]
struct DeliveryArgs {
    /// Subscribers (fanout: all in one room; push: one user each, messages round robin).
    #[arg(short = 'n', long, default_value_t = 1000)]
    subscribers: usize,
    /// Messages to publish.
    #[arg(short = 'm', long, default_value_t = 100)]
    messages: usize,
    /// Message size in bytes (at least 16: timestamp and sequence number).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Messages per second; 0 = as fast as the target accepts them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// imcloud push calls in flight at once.
    #[arg(long, default_value_t = 8)]
    inflight: usize,
    /// imcloud push API to use.
    #[arg(long, value_enum, default_value_t = Via::Http)]
    via: Via,
    /// imcloud api service, or Centrifugo's HTTP server, http://HOST:PORT.
    #[arg(long, default_value = "")]
    api: String,
    /// imcloud's IMCLOUD_API_KEY, or Centrifugo's http_api key.
    #[arg(
        long,
        env = "IMCLOUD_API_KEY",
        default_value = "",
        hide_env_values = true
    )]
    api_key: String,
    /// A logic node's gRPC address, http://HOST:PORT (with --via grpc).
    #[arg(long, default_value = "")]
    grpc: String,
    /// Seconds a subscriber waits for its next message before the rest count as lost.
    #[arg(long, default_value_t = 10)]
    patience_secs: u64,
    /// Also report the latency p99 of every this many messages, in publish order (0 = not), so that a
    /// latency that grows with the run's length shows.
    #[arg(long, default_value_t = 0)]
    window: usize,
    /// The target's process(es): memory per subscriber and CPU time per 1,000 deliveries (summed).
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
}

impl TargetArgs {
    fn endpoint(&self) -> Result<(Endpoint, Dialing, Labels)> {
        let endpoint = Endpoint::parse(
            self.target,
            &self.urls,
            &self.secret,
            self.nats_token.clone(),
        )?
        .with_ca_file(self.ca_file.as_deref())?;
        let dialing = Dialing {
            sources: self.sources.clone(),
            concurrency: self.concurrency.max(1),
        };
        let labels = Labels {
            target: self
                .label
                .clone()
                .unwrap_or_else(|| format!("{:?}", self.target).to_lowercase()),
            about: self.about.clone(),
        };
        Ok((endpoint, dialing, labels))
    }
}

impl DeliveryArgs {
    fn split(&self) -> (PushApi, Delivery) {
        let api = PushApi {
            http: self.api.clone(),
            api_key: self.api_key.clone(),
            grpc: self.grpc.clone(),
        };
        let delivery = Delivery {
            subscribers: self.subscribers,
            messages: self.messages,
            payload: self.payload,
            rate: self.rate,
            inflight: self.inflight,
            via: self.via,
            patience: Duration::from_secs(self.patience_secs.max(1)),
            window: self.window,
            server_pids: self.server_pids.clone(),
        };
        (api, delivery)
    }
}

fn main() -> Result<()> {
    imcloud_common::tls::install_default_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async move {
        let report = match cli.cmd {
            Cmd::BareServer { addr } => return bare_server::serve(addr).await,
            Cmd::Table { files } => {
                let mut reports = Vec::new();
                for f in files {
                    let text = std::fs::read_to_string(&f)
                        .with_context(|| format!("cannot read {}", f.display()))?;
                    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
                        reports.push(serde_json::from_str::<Report>(line).with_context(|| {
                            format!("{} line {}: not a result line", f.display(), i + 1)
                        })?);
                    }
                }
                print!("{}", report::side_by_side(&reports));
                return Ok(());
            }
            Cmd::Idle {
                target,
                connections,
                server_pid,
                heartbeat_secs,
                settle_secs,
            } => {
                let (endpoint, dialing, labels) = target.endpoint()?;
                let args = Idle {
                    connections,
                    server_pid,
                    heartbeat: Duration::from_secs(heartbeat_secs.max(1)),
                    settle: Duration::from_secs(settle_secs),
                };
                scenarios::idle(&endpoint, &dialing, &labels, args).await?
            }
            Cmd::Fanout { target, delivery } => {
                let (endpoint, dialing, labels) = target.endpoint()?;
                let (api, args) = delivery.split();
                let room = Some("fanout");
                scenarios::delivery(&endpoint, &dialing, &api, &labels, args, "fanout", room)
                    .await?
            }
            Cmd::Cost { target, delivery } => {
                let (endpoint, dialing, labels) = target.endpoint()?;
                let (api, args) = delivery.split();
                if args.server_pids.is_empty() {
                    anyhow::bail!("cost needs the target's --server-pid");
                }
                let room = Some("fanout");
                scenarios::delivery(&endpoint, &dialing, &api, &labels, args, "cost", room).await?
            }
            Cmd::Push { target, delivery } => {
                let (endpoint, dialing, labels) = target.endpoint()?;
                let (api, args) = delivery.split();
                scenarios::delivery(&endpoint, &dialing, &api, &labels, args, "push", None).await?
            }
            Cmd::Soak(a) => {
                soak::run(soak::Soak {
                    api: a.api,
                    api_key: a.api_key,
                    secret: a.secret,
                    urls: a.urls,
                    secs: a.secs,
                    push_rate: a.push_rate,
                    subscribers: a.subscribers,
                    rooms: a.rooms,
                    inflight: a.inflight,
                    first_mid: a.first_mid,
                    im_pairs: a.im_pairs,
                    im_rate: a.im_rate,
                    reconnect_secs: a.reconnect_secs,
                    patience: Duration::from_secs(a.patience_secs.max(1)),
                    progress_secs: a.progress_secs,
                    tag: a.tag.unwrap_or_else(run_tag),
                    label: a.label,
                    about: a.about,
                })
                .await?
            }
            Cmd::Im(a) => {
                let tag = a.tag.unwrap_or_else(run_tag);
                let reports = im::run(im::ImLoad {
                    api: a.api,
                    ws_url: a.ws_url,
                    scenarios: a.scenarios,
                    conversations: a.conversations,
                    members: a.members,
                    rate: a.rate,
                    hot_rate: a.hot_rate,
                    secs: a.secs,
                    warmup_secs: a.warmup_secs,
                    inflight: a.inflight,
                    runs: a.runs,
                    group_size: a.group_size,
                    fanout_messages: a.fanout_messages,
                    setup_concurrency: a.setup_concurrency,
                    sources: a.sources,
                    patience: Duration::from_secs(a.patience_secs.max(1)),
                    tag,
                    label: a.label,
                    about: a.about,
                })
                .await?;
                for r in reports {
                    if cli.json {
                        println!("{}", serde_json::to_string(&r)?);
                    } else {
                        print!("{}", r.text());
                    }
                }
                return Ok(());
            }
            Cmd::Scale {
                target,
                connections,
                workers,
                messages,
                payload,
                api,
                api_key,
                comet_pids,
                patience_secs,
                settle_secs,
                heartbeat_secs,
            } => {
                let (endpoint, dialing, labels) = target.endpoint()?;
                if endpoint.kind != subscriber::Kind::Imcloud {
                    anyhow::bail!("the scale run is for imcloud (goim protocol, push API)");
                }
                let args = scale::Scale {
                    connections,
                    workers,
                    messages: messages.max(1),
                    payload,
                    room: "scale".into(),
                    api,
                    api_key,
                    comet_pids,
                    patience: Duration::from_secs(patience_secs.max(1)),
                    settle: Duration::from_secs(settle_secs),
                    heartbeat: Duration::from_secs(heartbeat_secs.max(1)),
                };
                scale::run(&endpoint, &dialing, &labels, &target.secret, args).await?
            }
            Cmd::ScaleWorker {
                target,
                first_id,
                connections,
                messages,
                room,
                patience_secs,
                heartbeat_secs,
            } => {
                let (endpoint, dialing, _) = target.endpoint()?;
                let patience = Duration::from_secs(patience_secs.max(1));
                let heartbeat = Duration::from_secs(heartbeat_secs.max(1));
                scale::worker(
                    &endpoint,
                    &dialing,
                    scale::WorkerTask {
                        first_id,
                        n: connections,
                        messages,
                        room: &room,
                        patience,
                        heartbeat,
                    },
                )
                .await?;
                return Ok(());
            }
        };
        if cli.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", report.text());
        }
        Ok(())
    })
}
