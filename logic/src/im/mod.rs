//! The IM tier: accounts, friends, groups, chat, the message box and uploads, on the database in
//! [`db`]. The api forwards each `/v1` JSON route as an `ImCall` (see `imcloud_common::im_routes`);
//! websocket op 4 commands reach [`Im::command`]. Every operation returns a [`Reply`] and the live
//! [`Event`]s logic then pushes.

pub mod accounts;
pub mod args;
pub mod chat;
pub mod db;
pub mod error;
pub mod events;
pub mod friends;
pub mod groups;
pub mod login_keys;
pub mod login_limiter;
pub mod notifications;
pub mod openapi;
pub mod presence;
pub mod search;
pub mod uploads;
pub mod users;

use std::collections::HashSet;
use std::sync::Arc;

use imcloud_common::im_routes::route_of;
use serde::Serialize;
use serde_json::json;

use crate::sessions::SessionStore;
use crate::token::Tokens;
use args::Args;
use db::Db;
use error::ImError;
use events::Event;
use login_limiter::LoginLimiter;

/// The IM tier's limits and policies.
#[derive(Debug, Clone)]
pub struct ImSettings {
    /// Lifetime of a login token.
    pub login_ttl_secs: u64,
    /// Groups one user may own.
    pub max_groups_owned: i64,
    /// Largest allowed group size.
    pub max_group_size: i64,
    /// Private chat only between friends.
    pub private_chat_friends_only: bool,
    /// Largest upload in bytes.
    pub upload_max_bytes: usize,
    /// Failed logins per email (and per client) allowed in a minute.
    pub login_attempts_per_minute: u32,
    /// A new login connection closes the user's older ones on the same platform ("belogin").
    pub one_device_per_platform: bool,
}

impl Default for ImSettings {
    fn default() -> ImSettings {
        ImSettings {
            login_ttl_secs: 7 * 24 * 3600,
            max_groups_owned: 50,
            max_group_size: 2000,
            private_chat_friends_only: true,
            upload_max_bytes: 4 * 1024 * 1024,
            login_attempts_per_minute: 10,
            one_device_per_platform: false,
        }
    }
}

/// One answer: HTTP status, body and its content type, and the events to push.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: String,
    pub events: Vec<Event>,
    /// Connections to close (keys) and the reason they are told.
    pub kick: Option<(Vec<String>, String)>,
}

impl Reply {
    pub fn json(status: u16, data: impl Serialize) -> Reply {
        Reply {
            status,
            body: serde_json::to_vec(&data).unwrap_or_default(),
            content_type: "application/json".into(),
            events: Vec::new(),
            kick: None,
        }
    }

    pub fn ok(data: impl Serialize) -> Reply {
        Reply::json(200, data)
    }

    pub fn created(data: impl Serialize) -> Reply {
        Reply::json(201, data)
    }

    pub fn event(mut self, e: Event) -> Reply {
        if !e.to.is_empty() {
            self.events.push(e);
        }
        self
    }

    pub fn error(e: &ImError) -> Reply {
        Reply::json(e.status, e.body())
    }
}

pub type ImResult = Result<Reply, ImError>;

pub struct Im {
    pub(crate) db: Db,
    pub(crate) tokens: Tokens,
    pub(crate) settings: ImSettings,
    pub(crate) sessions: Arc<dyn SessionStore>,
    pub(crate) login_limiter: LoginLimiter,
}

impl Im {
    pub fn new(
        db: Db,
        keys: Arc<crate::token::TokenKeys>,
        settings: ImSettings,
        sessions: Arc<dyn SessionStore>,
    ) -> Im {
        Im {
            db,
            tokens: Tokens::with_keys(keys, settings.login_ttl_secs),
            login_limiter: LoginLimiter::new(settings.login_attempts_per_minute),
            settings,
            sessions,
        }
    }

    /// Runs one JSON API operation for the holder of `token` (checked when the route needs a login).
    pub async fn call(
        &self,
        op: &str,
        token: &str,
        args: &[u8],
        raw: &[u8],
        content_type: &str,
        client: &str,
    ) -> Reply {
        let result = async {
            let route = route_of(op)
                .ok_or_else(|| ImError::not_found(format!("unknown operation {op:?}")))?;
            let me = if route.auth {
                self.authenticate(token).await?
            } else {
                0
            };
            let args: Args = if args.is_empty() {
                Args::default()
            } else {
                serde_json::from_slice(args)
                    .map_err(|e| ImError::invalid(format!("call arguments: {e}")))?
            };
            self.dispatch(op, me, &args, raw, content_type, token, client)
                .await
        }
        .await;
        result.unwrap_or_else(|e| Reply::error(&e))
    }

    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        &self,
        op: &str,
        me: i64,
        a: &Args,
        raw: &[u8],
        content_type: &str,
        token: &str,
        client: &str,
    ) -> ImResult {
        match op {
            "users.register" => self.register(a).await,
            "sessions.login" => self.login(a, client).await,
            "sessions.logout" => self.logout(token).await,
            "me.get" => self.me(me).await,
            "me.update" => self.update_me(me, a, token).await,
            "users.get" => self.user(me, a).await,
            "uploads.create" => self.upload(me, raw, content_type).await,
            "uploads.get" => self.download(a).await,
            "friend_groups.list" => self.friend_groups(me).await,
            "friend_groups.create" => self.create_friend_group(me, a).await,
            "friend_groups.rename" => self.rename_friend_group(me, a).await,
            "friend_groups.delete" => self.delete_friend_group(me, a).await,
            "friend_requests.create" => self.request_friend(me, a).await,
            "friend_requests.list" => self.friend_requests(me).await,
            "friend_requests.accept" => self.accept_friend(me, a).await,
            "friend_requests.refuse" => self.refuse_friend(me, a).await,
            "friends.list" => self.friends(me).await,
            "friends.update" => self.update_friend(me, a).await,
            "friends.delete" => self.delete_friend(me, a).await,
            "search.users" => self.search_users(me, a).await,
            "search.groups" => self.search_groups(a).await,
            "recommendations.users" => self.recommend_users(me, a).await,
            "groups.create" => self.create_group(me, a).await,
            "groups.mine" => self.my_groups(me).await,
            "groups.get" => self.group(me, a).await,
            "groups.update" => self.update_group(me, a).await,
            "groups.dismiss" => self.dismiss_group(me, a).await,
            "groups.transfer" => self.transfer_group(me, a).await,
            "groups.members" => self.group_members(me, a).await,
            "groups.join" => self.join_group(me, a).await,
            "groups.join_requests" => self.join_requests(me, a).await,
            "groups.join_accept" => self.handle_join(me, a, true).await,
            "groups.join_refuse" => self.handle_join(me, a, false).await,
            "groups.member_update" => self.update_member(me, a).await,
            "groups.member_remove" => self.remove_member(me, a).await,
            "conversations.list" => self.conversations(me).await,
            "messages.list" => self.messages(me, a).await,
            "messages.send" => self.send(me, a).await,
            "conversations.read" => self.read(me, a).await,
            "notifications.list" => self.notifications(me, a).await,
            "notifications.read" => self.read_notifications(me, a).await,
            "notices.create" => self.send_notice(a).await,
            "openapi" => Ok(Reply::ok(openapi::document())),
            other => Err(ImError::not_found(format!("unknown operation {other:?}"))),
        }
    }

    /// Websocket op 4: a JSON command `{"cmd": …}` from connected user `mid`. The reply body is
    /// `{"code": 0, "message": "ok", "data": …}`, or a negative HTTP status as code with an `error`.
    pub async fn command(&self, mid: i64, key: &str, body: &[u8]) -> (Vec<u8>, Vec<Event>) {
        let (reply, events) = match self.command_inner(mid, key, body).await {
            Ok(r) => {
                let data: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                if r.status < 300 {
                    (json!({"code": 0, "message": "ok", "data": data}), r.events)
                } else {
                    let msg = data["error"]["message"].clone();
                    let code = data["error"]["code"].clone();
                    (
                        json!({"code": -(r.status as i64), "message": msg, "error": {"code": code, "message": msg}}),
                        r.events,
                    )
                }
            }
            Err(e) => (
                json!({"code": -(e.status as i64), "message": e.message, "error": {"code": e.code, "message": e.message}}),
                Vec::new(),
            ),
        };
        (serde_json::to_vec(&reply).unwrap_or_default(), events)
    }

    async fn command_inner(&self, mid: i64, key: &str, body: &[u8]) -> ImResult {
        // A login connection acts only while its login lasts (a logout's close may not have landed yet).
        if let Some(jti) = login_keys::login_of(key)
            && !self.login_session_live(jti, mid).await?
        {
            return Err(ImError::unauthenticated(
                "this login has ended; log in again",
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            ImError::invalid(format!("body must be a JSON command {{\"cmd\": ...}}: {e}"))
        })?;
        let cmd = v["cmd"]
            .as_str()
            .ok_or_else(|| ImError::invalid("body must be a JSON command {\"cmd\": ...}"))?;
        let cid = v["conversation_id"].as_str().unwrap_or("").to_string();
        let args = |query: &[&str]| Args {
            path: [("cid".to_string(), cid.clone())].into(),
            query: query
                .iter()
                .filter_map(|q| {
                    let val = &v[*q];
                    val.as_i64()
                        .map(|n| n.to_string())
                        .or_else(|| val.as_str().map(str::to_string))
                        .map(|s| (q.to_string(), s))
                })
                .collect(),
            body: v.clone(),
        };
        match cmd {
            "ping" => Ok(Reply::ok(json!({"pong": true, "mid": mid, "key": key}))),
            "send" => self.send(mid, &args(&[])).await,
            "read" => self.read(mid, &args(&[])).await,
            "history" => {
                self.messages(mid, &args(&["before_seq", "after_seq", "limit"]))
                    .await
            }
            "conversations" => self.conversations(mid).await,
            other => Err(ImError::invalid(format!(
                "unknown command {other:?} (ping, send, read, history, conversations)"
            ))),
        }
    }

    /// The users among `mids` with at least one live connection.
    pub(crate) async fn online(&self, mids: &[i64]) -> HashSet<i64> {
        if mids.is_empty() {
            return HashSet::new();
        }
        match self.sessions.sessions_by_mids(mids).await {
            Ok(s) => s.into_iter().map(|s| s.mid).collect(),
            Err(e) => {
                tracing::warn!("online status: {e}");
                HashSet::new()
            }
        }
    }
}
