//! The logic gRPC service: comet-facing (Connect, Heartbeat, …), client-facing (Nodes) and backend-facing
//! (the Push RPCs and IssueToken, which need the API key as `authorization: Bearer …` metadata).
//!
//! - `Connect`: parse the op 7 body, verify the token (a refusal is counted in
//!   `imcloud_logic_auth_failures_total`), let the hooks admit it (an IM login gets its key from them, and
//!   their closes are carried out first); otherwise keep the client's key (a UUID if none) after refusing
//!   one that a live session of another mid holds (`PERMISSION_DENIED`); then `SessionStore::add` and the
//!   hooks' `opened` (presence). The check and the add are two store calls, so two users racing for a free
//!   key can both be accepted (the later add owns it).
//! - `Heartbeat` renews the session; if the store lost it, it is written again only when the key has no
//!   live session (or exactly this one), so a stale comet cannot take back a key that moved.
//! - `Disconnect` removes the session only if it still names this comet, then the hooks' `closed`.
//! - `RenewOnline` stores a comet's report and answers the cached all-comet room totals; `Receive` hands
//!   op 4 to the hooks (code -501 with the IM tier off); `ImCall` runs one `/v1` operation.
//! - `carry_out` performs `Effects`: pushes through `Pusher::push_mids` (a failure is logged and counted in
//!   `imcloud_logic_im_event_failures_total`), then closes through `Pusher::kick_keys`.

use std::sync::Arc;

use imcloud_common::registry::Registry;
use imcloud_common::room_history::RoomHistory;
use imcloud_common::{Role, auth};
use imcloud_proto::logic::logic_server::Logic;
use imcloud_proto::logic::*;
use tonic::{Request, Response, Status};

use crate::auth_body::AuthBody;
use crate::effects::Effects;
use crate::hooks::{Admit, ConnectionHooks, HookError};
use crate::im::Im;
use crate::nodes;
use crate::online::{Online, OnlineError, top_rooms};
use crate::push::{PushError, Pusher, room_id};
use crate::sessions::{ServerOnline, Session, SessionError, SessionStore};
use crate::token::{TokenError, Tokens};

pub struct LogicService {
    pub(crate) tokens: Tokens,
    pub(crate) api_key: String,
    pub(crate) sessions: Arc<dyn SessionStore>,
    pub(crate) registry: Arc<dyn Registry>,
    pub(crate) pusher: Pusher,
    /// Room histories, read for clients that rejoin a room with op 23 (`None`: no history shared with the
    /// jobs, see [`crate::LogicDeps::history`]).
    pub(crate) history: Option<Arc<dyn RoomHistory>>,
    pub(crate) online: Arc<Online>,
    pub(crate) heartbeat_secs: u64,
    pub(crate) heartbeat_max_misses: u32,
    /// The IM tier (`None` with `IMCLOUD_IM=off`).
    pub(crate) im: Option<Arc<Im>>,
    /// What the tier above the push platform does around a connection (the IM tier, or nothing).
    pub(crate) hooks: Option<Arc<dyn ConnectionHooks>>,
}

impl From<PushError> for Status {
    fn from(e: PushError) -> Status {
        match e {
            PushError::Invalid(m) => Status::invalid_argument(m),
            PushError::Sessions(e) => Status::unavailable(e.to_string()),
            PushError::Queue(e) => Status::unavailable(e.to_string()),
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(e.to_string())
}

impl From<SessionError> for Status {
    fn from(e: SessionError) -> Status {
        unavailable(e)
    }
}

impl From<OnlineError> for Status {
    fn from(e: OnlineError) -> Status {
        unavailable(e)
    }
}

impl LogicService {
    fn check_api_key<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if auth::bearer_matches(given, &self.api_key) {
            Ok(())
        } else {
            Err(Status::unauthenticated("missing or wrong API key"))
        }
    }

    /// Carries out what an operation or a hook asked for: pushes to every connection of their
    /// recipients, then the closes. A failed push is logged: the recipients catch up from the stores
    /// (messages by seq, the message box) when they sync.
    async fn carry_out(&self, effects: Effects) {
        for e in effects.events {
            if let Err(err) = self.pusher.push_mids(e.op, &e.to, &e.body).await {
                metrics::counter!("imcloud_logic_im_event_failures_total").increment(1);
                tracing::warn!(
                    op = e.op,
                    recipients = e.to.len(),
                    "IM event not pushed: {err}"
                );
            }
        }
        if let Some((keys, reason)) = &effects.kick
            && let Err(e) = self.pusher.kick_keys(keys, reason).await
        {
            tracing::warn!("closing connections: {e}");
        }
    }

    /// Refuses a client-chosen `key` that a live session of another user holds.
    async fn check_key_owner(&self, key: &str, mid: i64, client_ip: &str) -> Result<(), Status> {
        let owner = self
            .sessions
            .sessions_by_keys(&[key.to_string()])
            .await?
            .pop()
            .flatten();
        match owner.filter(|o| o.mid != mid) {
            Some(owner) => {
                tracing::info!(mid, owner = owner.mid, client = %client_ip, "auth refused: key in use");
                Err(Status::permission_denied(
                    "key belongs to another user's connection",
                ))
            }
            None => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl Logic for LogicService {
    async fn connect(&self, req: Request<ConnectReq>) -> Result<Response<ConnectReply>, Status> {
        let req = req.into_inner();
        let auth = AuthBody::parse(&req.token).map_err(Status::invalid_argument)?;
        let claims = match self.tokens.verify(&auth.token, auth.mid) {
            Ok(c) => c,
            Err(e) => {
                metrics::counter!("imcloud_logic_auth_failures_total").increment(1);
                tracing::info!(mid = auth.mid, client = %req.client_ip, "auth refused: {e}");
                return Err(match e {
                    TokenError::BadTtl { .. } => Status::internal(e.to_string()),
                    _ => Status::unauthenticated(e.to_string()),
                });
            }
        };
        let admitted = match &self.hooks {
            Some(h) => h
                .admit(&Admit {
                    mid: auth.mid,
                    claims: &claims,
                    platform: &auth.platform,
                    client_ip: &req.client_ip,
                })
                .await
                .map_err(|e| {
                    if let HookError::Refused(_) = e {
                        metrics::counter!("imcloud_logic_auth_failures_total").increment(1);
                    }
                    match e {
                        HookError::Refused(m) => Status::unauthenticated(m),
                        HookError::Unavailable(m) => Status::unavailable(m),
                    }
                })?,
            None => None,
        };
        let key = match admitted {
            // The hooks own this connection (an IM login): their key, and their closes first.
            Some(a) => {
                self.carry_out(a.effects).await;
                a.key
            }
            None if auth.key.is_empty() => uuid::Uuid::new_v4().to_string(),
            None => {
                // A client-chosen key must not take over another user's connection (and its key
                // pushes). Keys made here are fresh UUIDs and need no lookup.
                self.check_key_owner(&auth.key, auth.mid, &req.client_ip)
                    .await?;
                auth.key
            }
        };
        let session = Session {
            mid: auth.mid,
            key: key.clone(),
            server: req.server,
        };
        self.sessions.add(&session).await?;
        if let Some(h) = &self.hooks {
            self.carry_out(h.opened(&session, &claims).await).await;
        }
        Ok(Response::new(ConnectReply {
            mid: auth.mid,
            key,
            room_id: auth.room_id,
            accepts: auth.accepts,
            heartbeat: self.heartbeat_secs as i64,
        }))
    }

    async fn disconnect(
        &self,
        req: Request<DisconnectReq>,
    ) -> Result<Response<DisconnectReply>, Status> {
        let r = req.into_inner();
        let session = Session {
            mid: r.mid,
            key: r.key,
            server: r.server,
        };
        let has = self.sessions.remove(&session).await?;
        if has && let Some(h) = &self.hooks {
            self.carry_out(h.closed(&session).await).await;
        }
        Ok(Response::new(DisconnectReply { has }))
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatReq>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        let r = req.into_inner();
        let s = Session {
            mid: r.mid,
            key: r.key,
            server: r.server,
        };
        if !self.sessions.renew(&s).await? {
            // The store lost it (expired, or the store restarted): the connection is live, so write it again,
            // unless the key has since moved to another connection (which a stale comet must not take back).
            let current = self
                .sessions
                .sessions_by_keys(std::slice::from_ref(&s.key))
                .await?
                .pop()
                .flatten();
            // Missing, or ours with a lost index entry (Redis mid hash): write it again in full.
            if current.is_none() || current.as_ref() == Some(&s) {
                self.sessions.add(&s).await?;
            }
        }
        Ok(Response::new(HeartbeatReply {}))
    }

    async fn renew_online(&self, req: Request<OnlineReq>) -> Result<Response<OnlineReply>, Status> {
        let r = req.into_inner();
        let report = ServerOnline {
            room_count: r.room_count,
            conn_count: r.conn_count,
            ip_count: r.ip_count,
        };
        let all = self.online.report(&r.server, &report).await?;
        Ok(Response::new(OnlineReply {
            all_room_count: (*all).clone(),
        }))
    }

    async fn receive(&self, req: Request<ReceiveReq>) -> Result<Response<ReceiveReply>, Status> {
        let r = req.into_inner();
        let body = r.proto.map(|p| p.body).unwrap_or_default();
        let Some(h) = &self.hooks else {
            let off = serde_json::json!({"code": -501, "message": "op 4 commands need the IM tier, which is off here"});
            return Ok(Response::new(ReceiveReply {
                body: serde_json::to_vec(&off).unwrap_or_default(),
            }));
        };
        let (body, effects) = h.receive(r.mid, &r.key, &body).await;
        self.carry_out(effects).await;
        Ok(Response::new(ReceiveReply { body }))
    }

    async fn nodes(&self, req: Request<NodesReq>) -> Result<Response<NodesReply>, Status> {
        let r = req.into_inner();
        let comets = nodes::weighted(self.registry.list(Role::Comet).await.map_err(unavailable)?);
        let web = r.platform.is_empty() || r.platform == "web";
        let addrs: Vec<String> = comets
            .iter()
            .map(|n| {
                if web {
                    n.ws_addr.clone()
                } else {
                    n.tcp_addr.clone()
                }
            })
            .filter(|a| !a.is_empty())
            .collect();
        let first = comets.first();
        Ok(Response::new(NodesReply {
            domain: String::new(),
            tcp_port: first.map(|n| nodes::port_of(&n.tcp_addr)).unwrap_or(0),
            ws_port: first.map(|n| nodes::port_of(&n.ws_addr)).unwrap_or(0),
            wss_port: first.map(|n| nodes::port_of(&n.wss_addr)).unwrap_or(0),
            heartbeat: self.heartbeat_secs as i32,
            heartbeat_max: self.heartbeat_max_misses as i32,
            nodes: addrs,
            backoff: Some(Backoff {
                max_delay: 300,
                base_delay: 3,
                factor: 1.8,
                jitter: 0.3,
            }),
        }))
    }

    async fn instances(
        &self,
        _req: Request<InstancesReq>,
    ) -> Result<Response<InstancesReply>, Status> {
        let mut instances = Vec::new();
        for role in Role::ALL {
            for n in self.registry.list(role).await.map_err(unavailable)? {
                instances.push(Instance {
                    role: n.role.to_string(),
                    id: n.id,
                    grpc_addr: n.grpc_addr,
                    ws_addr: n.ws_addr,
                    tcp_addr: n.tcp_addr,
                    weight: n.weight,
                    connections: n.connections,
                    version: n.version,
                });
            }
        }
        Ok(Response::new(InstancesReply { instances }))
    }

    async fn online_top(
        &self,
        req: Request<OnlineTopReq>,
    ) -> Result<Response<OnlineTopReply>, Status> {
        let r = req.into_inner();
        let totals = self.online.totals().await?;
        let rooms = top_rooms(&totals.rooms, &r.r#type, r.limit as usize)
            .into_iter()
            .map(|(room_id, count)| RoomCount { room_id, count })
            .collect();
        Ok(Response::new(OnlineTopReply { rooms }))
    }

    async fn online_room(
        &self,
        req: Request<OnlineRoomReq>,
    ) -> Result<Response<OnlineRoomReply>, Status> {
        let r = req.into_inner();
        let totals = self.online.totals().await?;
        let rooms = r
            .rooms
            .into_iter()
            .map(|room| {
                let n = totals
                    .rooms
                    .get(&room_id(&r.r#type, &room))
                    .copied()
                    .unwrap_or(0);
                (room, n)
            })
            .collect();
        Ok(Response::new(OnlineRoomReply { rooms }))
    }

    async fn online_total(
        &self,
        _req: Request<OnlineTotalReq>,
    ) -> Result<Response<OnlineTotalReply>, Status> {
        let t = self.online.totals().await?;
        Ok(Response::new(OnlineTotalReply {
            ip_count: t.ip_count,
            conn_count: t.conn_count,
        }))
    }

    /// A comet asks for a room's history on behalf of a client that joined it with op 23.
    async fn recover(&self, req: Request<RecoverReq>) -> Result<Response<RecoverReply>, Status> {
        let r = req.into_inner();
        let Some(history) = &self.history else {
            return Err(Status::failed_precondition(
                "no room history here: set IMCLOUD_REDIS_URL",
            ));
        };
        if r.room.is_empty() {
            return Err(Status::invalid_argument("room must not be empty"));
        }
        let max_bytes = usize::try_from(r.max_bytes).unwrap_or(usize::MAX);
        let read = history
            .read(&r.room, r.epoch, r.offset, max_bytes)
            .await
            .map_err(unavailable)?;
        let outcome = read.outcome(r.epoch, r.offset);
        let publications = match outcome {
            Ok(()) => read
                .entries
                .into_iter()
                .map(|e| imcloud_proto::protocol::Proto {
                    ver: 1,
                    op: e.op,
                    body: e.body,
                    history_offset: e.offset,
                    history_epoch: read.epoch,
                    ..Default::default()
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        Ok(Response::new(RecoverReply {
            epoch: read.epoch,
            offset: read.top,
            recovered: outcome.is_ok(),
            reason: outcome.err().map(|w| w.as_str()).unwrap_or_default().into(),
            publications,
        }))
    }

    async fn push_keys(&self, req: Request<PushKeysReq>) -> Result<Response<PushReply>, Status> {
        self.check_api_key(&req)?;
        let r = req.into_inner();
        let queued = self.pusher.push_keys(r.op, &r.keys, &r.msg).await?;
        Ok(Response::new(PushReply { queued }))
    }

    async fn push_mids(&self, req: Request<PushMidsReq>) -> Result<Response<PushReply>, Status> {
        self.check_api_key(&req)?;
        let r = req.into_inner();
        let queued = self.pusher.push_mids(r.op, &r.mids, &r.msg).await?;
        Ok(Response::new(PushReply { queued }))
    }

    async fn push_room(&self, req: Request<PushRoomReq>) -> Result<Response<PushReply>, Status> {
        self.check_api_key(&req)?;
        let r = req.into_inner();
        let queued = self
            .pusher
            .push_room(r.op, &r.r#type, &r.room, &r.msg, r.persistent)
            .await?;
        Ok(Response::new(PushReply { queued }))
    }

    async fn push_all(&self, req: Request<PushAllReq>) -> Result<Response<PushReply>, Status> {
        self.check_api_key(&req)?;
        let r = req.into_inner();
        let queued = self.pusher.push_all(r.op, r.speed, &r.msg).await?;
        Ok(Response::new(PushReply { queued }))
    }

    async fn issue_token(
        &self,
        req: Request<IssueTokenReq>,
    ) -> Result<Response<IssueTokenReply>, Status> {
        self.check_api_key(&req)?;
        let r = req.into_inner();
        let (token, exp) = self
            .tokens
            .issue(r.mid, r.ttl_secs)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(IssueTokenReply {
            token,
            expires_at: exp as i64,
        }))
    }

    async fn im_call(&self, req: Request<ImCallReq>) -> Result<Response<ImCallReply>, Status> {
        self.check_api_key(&req)?;
        let Some(im) = &self.im else {
            return Err(Status::unimplemented("the IM tier is off (IMCLOUD_IM=off)"));
        };
        let r = req.into_inner();
        let mut reply = im
            .call(
                &r.op,
                &r.token,
                &r.args,
                &r.raw,
                &r.content_type,
                &r.client_ip,
            )
            .await;
        self.carry_out(std::mem::take(&mut reply.effects)).await;
        Ok(Response::new(ImCallReply {
            status: u32::from(reply.status),
            body: reply.body,
            content_type: reply.content_type,
            retry_after_secs: reply.retry_after_secs,
        }))
    }
}
