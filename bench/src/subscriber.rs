//! One receiving connection to any target, with the same calls for all of them: connect and authenticate,
//! wait for the next application message, send a heartbeat.
//!
//! `Kind` (imcloud, centrifugo, nats, bare), `Endpoint` (URLs, secret or NATS token; tokens are signed
//! before the clock starts), `Subscriber`; an imcloud subscriber follows a reconnect hint.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use imcloud::client::{ClientTls, GoimClient, auth_body, reconnect_delay, sign_token};
use imcloud_proto::op;
use tokio_tungstenite::tungstenite::Message;

use crate::centrifugo_ws::CentrifugoWs;
use crate::nats_ws::{NatsEvent, NatsWs};
use crate::ws::{self, WsStream};

/// Which server the generator talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// imcloud's comet (goim protocol over websocket, token auth).
    Imcloud,
    /// nats-server's websocket listener (NATS text protocol, token auth).
    Nats,
    /// Centrifugo's websocket transport (its JSON client protocol, connection JWT).
    Centrifugo,
    /// `imcloud-bench bare-server`: tokio-tungstenite broadcasting to every connection, no protocol.
    Bare,
}

/// Where the subscribers connect, and how they authenticate.
#[derive(Clone)]
pub struct Endpoint {
    pub kind: Kind,
    /// `ws://IP:PORT/path` and its address; subscribers spread over them by id (e.g. one per comet).
    pub urls: Vec<(String, SocketAddr)>,
    /// imcloud's IMCLOUD_AUTH_SECRET, to mint connection tokens as a backend would.
    pub secret: String,
    /// nats-server's authorization token.
    pub nats_token: Option<String>,
    /// CA certificates trusted for wss:// URLs and an https:// push API (none: the system's roots).
    pub ca_file: Option<String>,
    tls: Option<ClientTls>,
}

/// What a subscriber listens to.
#[derive(Clone, Copy)]
pub enum Topic<'a> {
    /// The fan-out room (imcloud room `bench://<name>`, NATS subject and Centrifugo channel `bench.<name>`,
    /// bare: everything).
    Room(&'a str),
    /// Messages for this subscriber's own user id (imcloud mid, NATS subject and Centrifugo channel
    /// `user.<id>`).
    User,
}

/// Everything a connection needs that can be computed before the clock starts (tokens are signed here,
/// so that the connect rate measures the server, not the generator's HMAC).
pub struct Prepared {
    id: i64,
    url: usize,
    auth: Vec<u8>,
    subject: String,
}

impl Endpoint {
    pub fn parse(
        kind: Kind,
        ws_urls: &[String],
        secret: &str,
        nats_token: Option<String>,
    ) -> Result<Self> {
        let mut urls = Vec::new();
        for url in ws_urls {
            let hostport = url
                .strip_prefix("ws://")
                .or_else(|| url.strip_prefix("wss://"))
                .and_then(|rest| rest.split('/').next())
                .unwrap_or_default();
            let server = hostport
                .parse()
                .with_context(|| format!("a websocket URL must be ws://IP:PORT/..., got {url}"))?;
            urls.push((url.clone(), server));
        }
        if urls.is_empty() {
            bail!("no websocket URL given (--url)");
        }
        if matches!(kind, Kind::Imcloud | Kind::Centrifugo) && secret.is_empty() {
            bail!(
                "imcloud and Centrifugo need --secret (IMCLOUD_AUTH_SECRET, Centrifugo's HMAC key) to mint \
                 connection tokens"
            );
        }
        Ok(Endpoint {
            kind,
            urls,
            secret: secret.to_string(),
            nats_token,
            ca_file: None,
            tls: None,
        })
    }

    /// TLS for wss:// URLs, trusting `ca_file` (else the system's roots).
    pub fn with_ca_file(mut self, ca_file: Option<&str>) -> Result<Self> {
        if self.urls.iter().any(|(u, _)| u.starts_with("wss://")) {
            if self.kind != Kind::Imcloud {
                bail!("wss:// is supported for imcloud targets only");
            }
            self.tls = Some(ClientTls::new(ca_file, &[b"http/1.1"])?);
        }
        self.ca_file = ca_file.map(str::to_string);
        Ok(self)
    }

    pub fn prepare(&self, id: i64, topic: Topic) -> Result<Prepared> {
        let (auth, subject) = match self.kind {
            Kind::Imcloud => {
                let token = sign_token(&self.secret, id, 24 * 3600).map_err(anyhow::Error::msg)?;
                let room = match topic {
                    Topic::Room(name) => format!("bench://{name}"),
                    Topic::User => String::new(),
                };
                (auth_body(id, "", &room, &[], &token), String::new())
            }
            Kind::Nats => (Vec::new(), channel_name(topic, id)),
            Kind::Centrifugo => {
                // Centrifugo's connection JWT has the same claims (sub = user id, exp, HS256).
                let token = sign_token(&self.secret, id, 24 * 3600).map_err(anyhow::Error::msg)?;
                (token.into_bytes(), channel_name(topic, id))
            }
            Kind::Bare => (Vec::new(), String::new()),
        };
        let url = id.unsigned_abs() as usize % self.urls.len();
        Ok(Prepared {
            id,
            url,
            auth,
            subject,
        })
    }

    /// Connects from `source` and authenticates / subscribes; returns once the server has confirmed.
    pub async fn connect(&self, p: Prepared, source: IpAddr) -> Result<Subscriber> {
        let (url, server) = &self.urls[p.url];
        let (url, server) = (url.as_str(), *server);
        Ok(match self.kind {
            Kind::Imcloud => {
                let mut c =
                    GoimClient::connect_ws_from_tls(url, server, source, self.tls.as_ref()).await?;
                c.auth(p.auth.clone(), Duration::from_secs(30)).await?;
                Subscriber::Goim(Box::new(GoimSub {
                    client: c,
                    auth: p.auth,
                    source,
                    url: url.to_string(),
                    server,
                    tls: self.tls.clone(),
                    reconnects: 0,
                }))
            }
            Kind::Nats => {
                let ws = ws::connect(url, server, source).await?;
                let mut c = NatsWs::handshake(ws, self.nats_token.as_deref()).await?;
                c.subscribe(&p.subject, p.id as u64).await?;
                Subscriber::Nats(c)
            }
            Kind::Centrifugo => {
                let ws = ws::connect(url, server, source).await?;
                let token = String::from_utf8(p.auth).context("a token is text")?;
                let mut c = CentrifugoWs::connect(ws, &token).await?;
                c.subscribe(&p.subject).await?;
                Subscriber::Centrifugo(c)
            }
            Kind::Bare => Subscriber::Bare(ws::connect(url, server, source).await?),
        })
    }
}

/// The NATS subject, or Centrifugo channel, of a topic.
pub fn channel_name(topic: Topic, id: i64) -> String {
    match topic {
        Topic::Room(name) => format!("bench.{name}"),
        Topic::User => format!("user.{id}"),
    }
}

/// An imcloud subscriber, with what it needs to follow a draining comet's reconnect hint (op 22).
pub struct GoimSub {
    client: GoimClient,
    auth: Vec<u8>,
    source: IpAddr,
    /// Where it is connected (where a hint without a URL sends it back).
    url: String,
    server: SocketAddr,
    tls: Option<ClientTls>,
    /// Reconnects made on a hint.
    pub reconnects: u64,
}

impl GoimSub {
    /// After the connection ended: follows the reconnect hint if the server sent one (its delay plus
    /// jitter, its URL or the same server); otherwise returns `closed`.
    async fn follow_hint(&mut self, closed: anyhow::Error) -> Result<()> {
        let Some(hint) = self.client.reconnect_hint().cloned() else {
            return Err(closed);
        };
        tokio::time::sleep(reconnect_delay(&hint)).await;
        let (url, server) = match hint.url {
            Some(url) => {
                let server = url
                    .strip_prefix("ws://")
                    .and_then(|rest| rest.split('/').next())
                    .and_then(|hp| hp.parse::<SocketAddr>().ok())
                    .with_context(|| format!("reconnect hint URL {url} is not ws://IP:PORT/..."))?;
                (url, server)
            }
            None => (self.url.clone(), self.server),
        };
        let mut c =
            GoimClient::connect_ws_from_tls(&url, server, self.source, self.tls.as_ref()).await?;
        c.auth(self.auth.clone(), Duration::from_secs(30)).await?;
        self.client = c;
        (self.url, self.server) = (url, server);
        self.reconnects += 1;
        Ok(())
    }
}

pub enum Subscriber {
    Goim(Box<GoimSub>),
    Nats(NatsWs),
    Centrifugo(CentrifugoWs),
    Bare(WsStream),
}

impl Subscriber {
    /// The body of the next application message (imcloud ops ≥ 1000, NATS MSG, Centrifugo publication in
    /// the binary form, bare binary message).
    pub async fn next_payload(&mut self) -> Result<Bytes> {
        match self {
            Subscriber::Goim(c) => loop {
                match c.client.recv().await {
                    Ok(f) if f.op >= op::APP_MIN => return Ok(f.body),
                    Ok(_) => {}
                    Err(e) => c.follow_hint(e.into()).await?,
                }
            },
            Subscriber::Nats(c) => loop {
                if let NatsEvent::Msg(payload) = c.next_event().await? {
                    return Ok(payload);
                }
            },
            Subscriber::Centrifugo(c) => Ok(c.next_publication().await?),
            Subscriber::Bare(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => return Ok(b),
                    Some(Ok(Message::Close(_))) | None => bail!("closed by server"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                }
            },
        }
    }

    pub async fn heartbeat(&mut self) -> Result<()> {
        match self {
            Subscriber::Goim(c) => {
                c.client.send(op::HEARTBEAT, Vec::new()).await?;
            }
            Subscriber::Nats(c) => c.ping().await?,
            // Centrifugo's server pings and the client only answers (in `next_payload`).
            Subscriber::Centrifugo(_) => {}
            Subscriber::Bare(ws) => ws.send(Message::Ping(Bytes::new())).await?,
        }
        Ok(())
    }
}
