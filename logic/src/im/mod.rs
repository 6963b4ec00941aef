//! The IM tier: accounts, friends, groups, chat, the message box and uploads, on the database in
//! [`db`]. The api decodes each `/v1` route into an `ImRequest` (the contract in
//! `imcloud_common::im`) and forwards it as an `ImCall`; websocket op 4 commands decode into the same
//! requests ([`Im::command`]). [`Im::dispatch`] matches every request exhaustively, each handler
//! taking its typed request and returning its operation's typed reply, plus the effects (live
//! events, connections to close) logic carries out after the commit. The IM tier also implements the
//! push core's connection hooks (`connections.rs`).

pub mod accounts;
pub mod blocks;
pub mod chat;
pub mod connections;
pub mod db;
pub mod device_policy;
pub mod error;
pub mod friends;
pub mod group_rules;
pub mod groups;
pub mod login_keys;
pub mod login_limiter;
pub mod message_search;
pub mod notifications;
pub mod paging;
pub mod presence;
pub mod rate_limits;
pub mod receipts;
pub mod reply;
pub mod rows;
pub mod search;
pub mod send_batches;
pub mod typing;
pub mod uploads;
pub mod users;
pub mod webhooks;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use imcloud_common::im::command::Command;
use imcloud_common::im::operations::{Access, Document, ImRequest, Operation, route_of};
use serde_json::{Value, json};

use crate::sessions::SessionStore;
use crate::token::Tokens;
use db::Db;
use device_policy::DevicePolicy;
use error::ImError;
use login_limiter::LoginLimiter;
use rate_limits::Buckets;
pub use reply::{Done, Effects, Event, Reply};
use typing::TypingThrottle;
use webhooks::{WebhookSettings, Webhooks};

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
    /// Failed logins per (email, client address) allowed in a minute.
    pub login_attempts_per_minute: u32,
    pub device_policy: DevicePolicy,
    /// How long after sending an author may edit a text message.
    pub edit_window_secs: u64,
    /// How long after sending an author may recall a message.
    pub recall_window_secs: u64,
    /// Shortest interval between two typing events of one user in one conversation.
    pub typing_interval_ms: u64,
    /// Messages (sends, edits, recalls, reactions) per user per second; 0 = no limit.
    pub sends_per_sec: u32,
    /// Friend requests per user per 24 h; 0 = no limit.
    pub friend_requests_per_day: i64,
    /// Groups created per user per 24 h; 0 = no limit.
    pub groups_per_day: i64,
    /// Uploads per user per hour; 0 = no limit.
    pub uploads_per_hour: i64,
    /// Upload bytes per user per 24 h; 0 = no limit.
    pub upload_bytes_per_day: i64,
    pub webhooks: Option<WebhookSettings>,
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
            device_policy: DevicePolicy::Multi,
            edit_window_secs: 900,
            recall_window_secs: 120,
            typing_interval_ms: 1000,
            sends_per_sec: 20,
            friend_requests_per_day: 100,
            groups_per_day: 20,
            uploads_per_hour: 100,
            upload_bytes_per_day: 512 * 1024 * 1024,
            webhooks: None,
        }
    }
}

pub type ImResult<T> = Result<Done<T>, ImError>;

/// Who is calling, and what came with the call besides the request.
pub struct Caller<'a> {
    /// The authenticated user (0 on public and trusted routes).
    pub me: i64,
    /// The login token (empty over op 4).
    pub token: &'a str,
    /// The client's address (login limits).
    pub client: &'a str,
    /// An upload's bytes and their content type.
    pub raw: &'a [u8],
    pub content_type: &'a str,
}

pub struct Im {
    pub(crate) db: Db,
    pub(crate) tokens: Tokens,
    pub(crate) settings: ImSettings,
    pub(crate) sessions: Arc<dyn SessionStore>,
    pub(crate) login_limiter: LoginLimiter,
    pub(crate) send_buckets: Buckets,
    pub(crate) send_batches: Arc<send_batches::SendBatches>,
    pub(crate) typing_throttle: TypingThrottle,
    pub(crate) webhooks: Option<Webhooks>,
}

/// Runs one handler: the request's type fixes the handler's input, and the operation fixes its reply.
async fn run<O, F>(req: O, handler: impl FnOnce(O) -> F) -> Reply
where
    O: Operation,
    F: Future<Output = Result<Done<O::Reply>, ImError>>,
{
    match handler(req).await {
        Ok(done) => Reply::done(done),
        Err(e) => Reply::error(&e),
    }
}

impl Im {
    pub fn new(
        db: Db,
        keys: Arc<crate::token::TokenKeys>,
        settings: ImSettings,
        sessions: Arc<dyn SessionStore>,
    ) -> Im {
        Im {
            send_batches: send_batches::SendBatches::new(db.pool.clone()),
            db,
            tokens: Tokens::with_keys(keys, settings.login_ttl_secs),
            login_limiter: LoginLimiter::new(settings.login_attempts_per_minute),
            send_buckets: Buckets::new(settings.sends_per_sec),
            typing_throttle: TypingThrottle::new(settings.typing_interval_ms),
            webhooks: settings.webhooks.clone().map(Webhooks::start),
            settings,
            sessions,
        }
    }

    /// Runs one JSON API call: `args` is the `ImRequest` the api decoded, `op` its name.
    pub async fn call(
        &self,
        op: &str,
        token: &str,
        args: &[u8],
        raw: &[u8],
        content_type: &str,
        client: &str,
    ) -> Reply {
        let Some(route) = route_of(op) else {
            return Reply::error(&ImError::not_found(format!("unknown operation {op:?}")));
        };
        // The login first: an invalid request from someone without a login is a 401, not a 400.
        let me = if route.access == Access::Login {
            match self.authenticate(token).await {
                Ok(me) => me,
                Err(e) => return Reply::error(&e),
            }
        } else {
            0
        };
        let req: ImRequest = match serde_json::from_slice(args) {
            Ok(r) => r,
            Err(e) => {
                // The api sends `{"invalid": why}` for a request it could not decode.
                let why = serde_json::from_slice::<Value>(args)
                    .ok()
                    .and_then(|v| v["invalid"].as_str().map(str::to_string))
                    .unwrap_or_else(|| format!("request: {e}"));
                return Reply::error(&ImError::invalid(why));
            }
        };
        if req.route().op != op {
            return Reply::error(&ImError::invalid(format!(
                "the call names {op:?} but carries {:?}",
                req.route().op
            )));
        }
        let caller = Caller {
            me,
            token,
            client,
            raw,
            content_type,
        };
        self.dispatch(&caller, req).await
    }

    /// Every operation and its handler.
    pub async fn dispatch(&self, c: &Caller<'_>, req: ImRequest) -> Reply {
        use ImRequest as R;
        match req {
            R::RegisterUser(r) => run(r, |r| self.register(r)).await,
            R::Login(r) => run(r, |r| self.login(c, r)).await,
            R::Logout(r) => run(r, |r| self.logout(c, r)).await,
            R::GetMe(r) => run(r, |r| self.me(c, r)).await,
            R::UpdateMe(r) => run(r, |r| self.update_me(c, r)).await,
            R::DeleteMe(r) => run(r, |r| self.delete_me(c, r)).await,
            R::GetUser(r) => run(r, |r| self.user(c, r)).await,
            R::ListBlocks(r) => run(r, |r| self.blocks(c, r)).await,
            R::Block(r) => run(r, |r| self.block(c, r)).await,
            R::Unblock(r) => run(r, |r| self.unblock(c, r)).await,
            R::CreateUpload(r) => run(r, |r| self.upload(c, r)).await,
            R::GetUpload(r) => run(r, |r| self.download(r)).await,
            R::ListFriendGroups(r) => run(r, |r| self.friend_groups(c, r)).await,
            R::CreateFriendGroup(r) => run(r, |r| self.create_friend_group(c, r)).await,
            R::RenameFriendGroup(r) => run(r, |r| self.rename_friend_group(c, r)).await,
            R::DeleteFriendGroup(r) => run(r, |r| self.delete_friend_group(c, r)).await,
            R::CreateFriendRequest(r) => run(r, |r| self.request_friend(c, r)).await,
            R::ListFriendRequests(r) => run(r, |r| self.friend_requests(c, r)).await,
            R::AcceptFriendRequest(r) => run(r, |r| self.accept_friend(c, r)).await,
            R::RefuseFriendRequest(r) => run(r, |r| self.refuse_friend(c, r)).await,
            R::ListFriends(r) => run(r, |r| self.friends(c, r)).await,
            R::UpdateFriend(r) => run(r, |r| self.update_friend(c, r)).await,
            R::DeleteFriend(r) => run(r, |r| self.delete_friend(c, r)).await,
            R::SearchUsers(r) => run(r, |r| self.search_users(c, r)).await,
            R::SearchGroups(r) => run(r, |r| self.search_groups(r)).await,
            R::SearchMessagesOp(r) => run(r, |r| self.search_messages(c, r)).await,
            R::RecommendUsers(r) => run(r, |r| self.recommend_users(c, r)).await,
            R::CreateGroup(r) => run(r, |r| self.create_group(c, r)).await,
            R::MyGroups(r) => run(r, |r| self.my_groups(c, r)).await,
            R::GetGroup(r) => run(r, |r| self.group(c, r)).await,
            R::UpdateGroup(r) => run(r, |r| self.update_group(c, r)).await,
            R::DismissGroup(r) => run(r, |r| self.dismiss_group(c, r)).await,
            R::TransferGroup(r) => run(r, |r| self.transfer_group(c, r)).await,
            R::ListMembers(r) => run(r, |r| self.group_members(c, r)).await,
            R::InviteMember(r) => run(r, |r| self.invite_member(c, r)).await,
            R::JoinGroup(r) => run(r, |r| self.join_group(c, r)).await,
            R::ListJoinRequests(r) => run(r, |r| self.join_requests(c, r)).await,
            R::AcceptJoin(r) => run(r, |r| self.handle_join(c, r.path, true)).await,
            R::RefuseJoin(r) => run(r, |r| self.handle_join(c, r.path, false)).await,
            R::UpdateMember(r) => run(r, |r| self.update_member(c, r)).await,
            R::RemoveMember(r) => run(r, |r| self.remove_member(c, r)).await,
            R::ListConversations(r) => run(r, |r| self.conversations(c, r)).await,
            R::ListMessages(r) => run(r, |r| self.messages(c, r)).await,
            R::SendMessage(r) => run(r, |r| self.send(c, r)).await,
            R::EditMessage(r) => run(r, |r| self.edit(c, r)).await,
            R::RecallMessage(r) => run(r, |r| self.recall(c, r)).await,
            R::AddReaction(r) => run(r, |r| self.react(c, r.path, true)).await,
            R::RemoveReaction(r) => run(r, |r| self.react(c, r.path, false)).await,
            R::MessageReaders(r) => run(r, |r| self.readers(c, r)).await,
            R::ConversationReads(r) => run(r, |r| self.reads(c, r)).await,
            R::ReadConversation(r) => run(r, |r| self.read(c, r)).await,
            R::Typing(r) => run(r, |r| self.typing(c, r)).await,
            R::ListNotifications(r) => run(r, |r| self.notifications(c, r)).await,
            R::CreateNotice(r) => run(r, |r| self.send_notice(r)).await,
            R::ReadNotifications(r) => run(r, |r| self.read_notifications(c, r)).await,
            R::OpenApi(r) => {
                run(r, |_| async {
                    Ok(Done::ok(Document(imcloud_common::im::openapi::document())))
                })
                .await
            }
        }
    }

    /// Websocket op 4: a JSON command `{"cmd": …}` from connected user `mid`. The reply body is
    /// `{"code": 0, "message": "ok", "data": …}`, or a negative HTTP status as code with an `error`.
    pub async fn command(&self, mid: i64, key: &str, body: &[u8]) -> (Vec<u8>, Effects) {
        let reply = match self.command_reply(mid, key, body).await {
            Ok(r) => r,
            Err(e) => Reply::error(&e),
        };
        let data: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        let out = if reply.status < 300 {
            json!({"code": 0, "message": "ok", "data": data})
        } else {
            let mut error = data["error"].clone();
            let msg = error["message"].clone();
            if !error.is_object() {
                error = json!({"code": "internal", "message": ""});
            }
            json!({"code": -(reply.status as i64), "message": msg, "error": error})
        };
        (serde_json::to_vec(&out).unwrap_or_default(), reply.effects)
    }

    async fn command_reply(&self, mid: i64, key: &str, body: &[u8]) -> Result<Reply, ImError> {
        // A login connection acts only while its login lasts (a logout's close may not have landed yet).
        if let Some(jti) = login_keys::login_of(key)
            && !self.login_session_live(jti, mid).await?
        {
            return Err(ImError::unauthenticated(
                "this login has ended; log in again",
            ));
        }
        let command = Command::from_frame(body).map_err(ImError::invalid)?;
        let Some(req) = command.into_request() else {
            return Ok(Reply::json(
                200,
                &json!({"pong": true, "mid": mid, "key": key}),
            ));
        };
        let caller = Caller {
            me: mid,
            token: "",
            client: "",
            raw: &[],
            content_type: "",
        };
        Ok(self.dispatch(&caller, req).await)
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
