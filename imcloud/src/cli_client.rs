//! `imcloud client …`: connect as a user and print what arrives, push through the HTTP API, mint tokens.
//!
//! `sub` follows a reconnect hint (op 22) to the comet it names. Usage: docs/api.md ("CLI tools").

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use imcloud::client::{ClientTls, GoimClient, auth_body, reconnect_delay, sign_token};
use imcloud_proto::op;

#[derive(Subcommand)]
pub enum ClientCmd {
    /// Connect as a user and print every message pushed to it
    Sub(SubArgs),
    /// Push a message through the HTTP API
    Push(PushArgs),
    /// Print a connection token signed with the auth secret
    Token {
        #[arg(long, env = "IMCLOUD_AUTH_SECRET", hide_env_values = true)]
        secret: String,
        #[arg(long)]
        mid: i64,
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
    },
}

#[derive(Args)]
pub struct SubArgs {
    /// Websocket URL of a comet (ws:// or wss://)
    #[arg(long, default_value = "ws://127.0.0.1:3102/sub")]
    url: String,
    /// Use goim TCP at this address instead of the websocket
    #[arg(long)]
    tcp: Option<String>,
    /// The goim TCP listener speaks TLS (IMCLOUD_COMET_TCP_TLS)
    #[arg(long)]
    tls: bool,
    /// PEM CA certificates to trust for wss:// and --tls (default: the system's)
    #[arg(long, value_name = "FILE")]
    ca_file: Option<String>,
    #[arg(long)]
    mid: i64,
    /// Connection key (default: one assigned by the server)
    #[arg(long, default_value = "")]
    key: String,
    /// Room to join at auth, e.g. live://1000
    #[arg(long, default_value = "")]
    room: String,
    /// Ops to accept, comma-separated (default: all)
    #[arg(long, value_delimiter = ',')]
    accepts: Vec<i32>,
    /// Connection token (default: signed here with --secret)
    #[arg(long)]
    token: Option<String>,
    /// Auth secret to sign a token with
    #[arg(long, env = "IMCLOUD_AUTH_SECRET", hide_env_values = true)]
    secret: Option<String>,
    #[arg(long, default_value_t = 30)]
    heartbeat_secs: u64,
    /// Exit after this many messages
    #[arg(long)]
    count: Option<u64>,
}

#[derive(Args)]
pub struct PushArgs {
    /// Base URL of the HTTP API (http:// or https://)
    #[arg(long, default_value = "http://127.0.0.1:3111")]
    api: String,
    /// PEM CA certificates to trust for https:// (default: the system's)
    #[arg(long, value_name = "FILE")]
    ca_file: Option<String>,
    #[arg(long, env = "IMCLOUD_API_KEY", hide_env_values = true)]
    api_key: String,
    /// Operation (the op the client receives), >= 1000
    #[arg(long, default_value_t = 1000)]
    operation: i32,
    #[command(subcommand)]
    target: PushTarget,
}

#[derive(Subcommand)]
enum PushTarget {
    /// To connection keys
    Keys {
        #[arg(long, value_delimiter = ',', required = true)]
        keys: Vec<String>,
        message: String,
    },
    /// To every connection of users
    Mids {
        #[arg(long, value_delimiter = ',', required = true)]
        mids: Vec<i64>,
        message: String,
    },
    /// To a room (type://room)
    Room {
        #[arg(long = "type", default_value = "live")]
        kind: String,
        #[arg(long)]
        room: String,
        message: String,
    },
    /// To every connection
    All {
        /// Connections per second per comet (0 = no limit)
        #[arg(long, default_value_t = 0)]
        speed: i32,
        message: String,
    },
}

pub async fn run(cmd: ClientCmd) -> Result<()> {
    match cmd {
        ClientCmd::Token {
            secret,
            mid,
            ttl_secs,
        } => {
            println!(
                "{}",
                sign_token(&secret, mid, ttl_secs).map_err(anyhow::Error::msg)?
            );
            Ok(())
        }
        ClientCmd::Sub(a) => sub(a).await,
        ClientCmd::Push(a) => push(a).await,
    }
}

async fn sub(a: SubArgs) -> Result<()> {
    let token = match (&a.token, &a.secret) {
        (Some(t), _) => t.clone(),
        (None, Some(s)) => sign_token(s, a.mid, 24 * 3600).map_err(anyhow::Error::msg)?,
        (None, None) => bail!("give --token, or --secret (IMCLOUD_AUTH_SECRET) to sign one"),
    };
    let mut url = a.url.clone();
    let mut received = 0u64;
    // A draining comet sends a reconnect hint (op 22) before it closes: follow it, without counting it as
    // a failure. Any other close ends the command.
    loop {
        let mut c = match &a.tcp {
            Some(addr) => {
                let tls = match a.tls {
                    true => Some(ClientTls::new(a.ca_file.as_deref(), &[])?),
                    false => None,
                };
                GoimClient::connect_tcp_tls(addr, tls.as_ref())
                    .await
                    .with_context(|| format!("connect to {addr}"))?
            }
            None => {
                let tls = ClientTls::new(a.ca_file.as_deref(), &[b"http/1.1"])?;
                GoimClient::connect_ws_tls(&url, Some(&tls))
                    .await
                    .with_context(|| format!("connect to {url}"))?
            }
        };
        c.auth(
            auth_body(a.mid, &a.key, &a.room, &a.accepts, &token),
            Duration::from_secs(10),
        )
        .await
        .context("auth")?;
        println!(
            "authenticated as mid {} (room {:?}) at {}; waiting for messages, Ctrl-C to stop",
            a.mid,
            a.room,
            a.tcp.as_deref().unwrap_or(&url)
        );
        let closed = match receive(&mut c, &a, &mut received).await {
            Ended::Count => return Ok(()),
            Ended::Closed(e) => e,
        };
        let Some(hint) = c.reconnect_hint().cloned() else {
            return Err(closed.into());
        };
        let wait = reconnect_delay(&hint);
        if let Some(next) = hint.url.as_ref().filter(|_| a.tcp.is_none()) {
            url = next.clone();
        }
        eprintln!(
            "server is {}: reconnecting in {} ms to {}",
            hint.reason,
            wait.as_millis(),
            a.tcp.as_deref().unwrap_or(&url)
        );
        tokio::time::sleep(wait).await;
    }
}

enum Ended {
    /// `--count` messages arrived.
    Count,
    Closed(imcloud::client::ClientError),
}

/// Prints what arrives until the connection ends or `--count` messages arrived.
async fn receive(c: &mut GoimClient, a: &SubArgs, received: &mut u64) -> Ended {
    let mut hb = tokio::time::interval(Duration::from_secs(a.heartbeat_secs.max(1)));
    loop {
        tokio::select! {
            _ = hb.tick() => {
                if let Err(e) = c.send(op::HEARTBEAT, Vec::new()).await {
                    return Ended::Closed(e);
                }
            }
            f = c.recv() => {
                let f = match f {
                    Ok(f) => f,
                    Err(e) => return Ended::Closed(e),
                };
                match f.op {
                    op::HEARTBEAT_REPLY => {
                        let online = f.body.get(..4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
                        eprintln!("heartbeat ok (room online: {online})");
                    }
                    _ => {
                        *received += 1;
                        println!("op={} seq={} body={}", f.op, f.seq, String::from_utf8_lossy(&f.body));
                        if a.count.is_some_and(|n| *received >= n) {
                            return Ended::Count;
                        }
                    }
                }
            }
        }
    }
}

async fn push(a: PushArgs) -> Result<()> {
    let base = a.api.trim_end_matches('/');
    let op = a.operation.to_string();
    let (path, query, message): (&str, Vec<(&str, String)>, String) = match a.target {
        PushTarget::Keys { keys, message } => ("keys", vec![("keys", keys.join(","))], message),
        PushTarget::Mids { mids, message } => {
            let mids = mids
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            ("mids", vec![("mids", mids)], message)
        }
        PushTarget::Room {
            kind,
            room,
            message,
        } => ("room", vec![("type", kind), ("room", room)], message),
        PushTarget::All { speed, message } => ("all", vec![("speed", speed.to_string())], message),
    };
    let mut query = query;
    query.push(("operation", op));
    let mut http = reqwest::Client::builder();
    if let Some(path) = &a.ca_file {
        let pem = std::fs::read(path).with_context(|| format!("read {path}"))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{path}: not PEM certificates"))?;
        http = http.tls_certs_only(certs);
    }
    let resp = http
        .build()
        .context("HTTP client")?
        .post(format!("{base}/goim/push/{path}"))
        .bearer_auth(&a.api_key)
        .query(&query)
        .body(message)
        .send()
        .await
        .with_context(|| format!("POST {base}/goim/push/{path}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.context("response is not JSON")?;
    println!("{body}");
    if !status.is_success() {
        bail!("push failed with HTTP {status}");
    }
    Ok(())
}
