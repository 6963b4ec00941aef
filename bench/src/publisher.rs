//! How messages enter each target: imcloud's push API (HTTP or gRPC), a NATS PUB, Centrifugo's server HTTP
//! API (`POST /api/publish`), or a message to the bare server's publish socket.
//!
//! The HTTP and gRPC push APIs and Centrifugo's keep several calls in flight.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::SinkExt;
use imcloud_proto::logic::logic_client::LogicClient;
use imcloud_proto::logic::{PushMidsReq, PushRoomReq};
use tokio_tungstenite::tungstenite::Message;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::nats_ws::NatsWs;
use crate::subscriber::{Endpoint, Kind, Topic, channel_name};
use crate::ws::{self, WsStream};

/// The op imcloud pushes carry (the first application op).
const PUSH_OP: i32 = 1000;

/// Which imcloud push API to call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The goim-compatible HTTP API (`POST /goim/push/...`).
    Http,
    /// Logic's gRPC service (`PushRoom`, `PushMids`).
    Grpc,
}

/// Where imcloud's push APIs are.
#[derive(Clone, Default)]
pub struct PushApi {
    /// `http://host:port` of the api service.
    pub http: String,
    pub api_key: String,
    /// `http://host:port` of a logic node's gRPC listener.
    pub grpc: String,
}

/// How long a publish call may take before the run fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub enum Publisher {
    Http {
        client: reqwest::Client,
        base: String,
        api_key: String,
    },
    Grpc {
        client: LogicClient<Channel>,
        /// `Bearer <api key>`, sent as `authorization` metadata.
        bearer: MetadataValue<Ascii>,
    },
    Nats(NatsWs),
    /// Centrifugo's server API: `POST {base}/api/publish` with `X-API-Key`.
    Centrifugo {
        client: reqwest::Client,
        base: String,
        api_key: String,
    },
    Bare(WsStream),
}

impl Publisher {
    pub async fn connect(endpoint: &Endpoint, via: Via, api: &PushApi) -> Result<Publisher> {
        Ok(match (endpoint.kind, via) {
            (Kind::Imcloud, Via::Http) => {
                if api.http.is_empty() || api.api_key.is_empty() {
                    bail!("imcloud over HTTP needs --api and --api-key");
                }
                let mut client = reqwest::Client::builder().timeout(CALL_TIMEOUT);
                if let Some(path) = &endpoint.ca_file {
                    let pem = std::fs::read(path).with_context(|| format!("read {path}"))?;
                    client = client.tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem)?);
                }
                Publisher::Http {
                    client: client.build()?,
                    base: api.http.trim_end_matches('/').to_string(),
                    api_key: api.api_key.clone(),
                }
            }
            (Kind::Imcloud, Via::Grpc) => {
                if api.grpc.is_empty() || api.api_key.is_empty() {
                    bail!(
                        "imcloud over gRPC needs --grpc (a logic node's gRPC address) and --api-key"
                    );
                }
                let bearer = format!("Bearer {}", api.api_key)
                    .parse()
                    .context("the API key is not valid in a gRPC header")?;
                let channel = Channel::from_shared(api.grpc.clone())
                    .with_context(|| format!("bad --grpc {}", api.grpc))?
                    .connect()
                    .await
                    .with_context(|| format!("cannot reach logic at {}", api.grpc))?;
                Publisher::Grpc {
                    client: LogicClient::new(channel),
                    bearer,
                }
            }
            (Kind::Nats, _) => {
                let (url, server) = &endpoint.urls[0];
                let ws = ws::connect(url, *server, IpAddr::from([127, 0, 0, 1])).await?;
                Publisher::Nats(NatsWs::handshake(ws, endpoint.nats_token.as_deref()).await?)
            }
            (Kind::Centrifugo, _) => {
                if api.http.is_empty() || api.api_key.is_empty() {
                    bail!(
                        "Centrifugo needs --api (its HTTP server) and --api-key (its http_api key)"
                    );
                }
                Publisher::Centrifugo {
                    client: reqwest::Client::builder().timeout(CALL_TIMEOUT).build()?,
                    base: api.http.trim_end_matches('/').to_string(),
                    api_key: api.api_key.clone(),
                }
            }
            (Kind::Bare, _) => {
                let (url, server) = &endpoint.urls[0];
                let url = url.replace("/sub", "/pub");
                Publisher::Bare(ws::connect(&url, *server, IpAddr::from([127, 0, 0, 1])).await?)
            }
        })
    }

    /// Whether several copies may publish at once (request/response APIs), or one socket carries every
    /// message (NATS, bare), where writes are pipelined anyway.
    pub fn can_clone(&self) -> bool {
        matches!(
            self,
            Publisher::Http { .. } | Publisher::Grpc { .. } | Publisher::Centrifugo { .. }
        )
    }

    pub fn try_clone(&self) -> Option<Publisher> {
        match self {
            Publisher::Http {
                client,
                base,
                api_key,
            } => Some(Publisher::Http {
                client: client.clone(),
                base: base.clone(),
                api_key: api_key.clone(),
            }),
            Publisher::Grpc { client, bearer } => Some(Publisher::Grpc {
                client: client.clone(),
                bearer: bearer.clone(),
            }),
            Publisher::Centrifugo {
                client,
                base,
                api_key,
            } => Some(Publisher::Centrifugo {
                client: client.clone(),
                base: base.clone(),
                api_key: api_key.clone(),
            }),
            Publisher::Nats(_) | Publisher::Bare(_) => None,
        }
    }

    /// Publishes one message to a room, or to user `id`; returns once the target accepted it (for imcloud,
    /// when the push API answered; for NATS and bare, when the socket took it).
    pub async fn publish(&mut self, topic: Topic<'_>, id: i64, payload: Bytes) -> Result<()> {
        match self {
            Publisher::Http {
                client,
                base,
                api_key,
            } => {
                let req =
                    match topic {
                        Topic::Room(name) => client
                            .post(format!("{base}/goim/push/room"))
                            .query(&[("operation", "1000"), ("type", "bench"), ("room", name)]),
                        Topic::User => client
                            .post(format!("{base}/goim/push/mids"))
                            .query(&[("operation", "1000".to_string()), ("mids", id.to_string())]),
                    };
                let resp = req.bearer_auth(&*api_key).body(payload).send().await?;
                if !resp.status().is_success() {
                    bail!(
                        "push refused: {} {}",
                        resp.status(),
                        resp.text().await.unwrap_or_default()
                    );
                }
            }
            Publisher::Grpc { client, bearer } => {
                let result = match topic {
                    Topic::Room(name) => {
                        let mut req = tonic::Request::new(PushRoomReq {
                            op: PUSH_OP,
                            r#type: "bench".into(),
                            room: name.into(),
                            msg: payload.to_vec(),
                            persistent: false,
                        });
                        req.metadata_mut().insert("authorization", bearer.clone());
                        client.push_room(req).await
                    }
                    Topic::User => {
                        let mut req = tonic::Request::new(PushMidsReq {
                            op: PUSH_OP,
                            mids: vec![id],
                            msg: payload.to_vec(),
                        });
                        req.metadata_mut().insert("authorization", bearer.clone());
                        client.push_mids(req).await
                    }
                };
                result
                    .map_err(|s| anyhow::anyhow!("push refused: {} {}", s.code(), s.message()))?;
            }
            Publisher::Nats(c) => c.publish(&channel_name(topic, id), &payload).await?,
            Publisher::Centrifugo {
                client,
                base,
                api_key,
            } => {
                let body = serde_json::json!({
                    "channel": channel_name(topic, id),
                    "data": crate::payload::to_text(&payload),
                });
                let resp = client
                    .post(format!("{base}/api/publish"))
                    .header("X-API-Key", &*api_key)
                    .json(&body)
                    .send()
                    .await?;
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                // The API answers 200 with {"error": {...}} when it refuses a publication.
                if !status.is_success() || text.contains("\"error\"") {
                    bail!("publication refused: {status} {text}");
                }
            }
            Publisher::Bare(ws) => {
                if let Topic::User = topic {
                    bail!("the bare server only broadcasts: it has no per-user push");
                }
                ws.send(Message::Binary(payload)).await?;
            }
        }
        Ok(())
    }
}
