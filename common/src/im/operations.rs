//! The IM JSON API's operations: one table binding each route (method, path, op name, access) to its
//! typed path parameters, query, body and success reply. The table generates, for every operation, a
//! request struct, its [`Operation`] impl, a variant of [`ImRequest`] (what the api sends logic), the
//! route list [`ROUTES`] and [`visit`], which the api uses to mount the routes and the OpenAPI document
//! to describe them.
//!
//! Invariants: a route exists only here; logic's dispatch matches [`ImRequest`] exhaustively with
//! each handler's reply typed as the operation's `Reply`, so a route cannot lose its handler or
//! change its reply shape without a compile error.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::PartialSchema;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use super::accounts::*;
use super::chat::*;
use super::friends::*;
use super::groups::*;
use super::notifications::*;
use super::params::*;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// A login token (`Authorization: Bearer <token>` from `POST /v1/sessions`).
    Login,
    /// Trusted backends: `Authorization: Bearer <IMCLOUD_API_KEY>`.
    Trusted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    /// axum's and OpenAPI's `{param}` syntax.
    pub path: &'static str,
    /// The operation's name (`ImCall.op`, the OpenAPI operationId).
    pub op: &'static str,
    pub access: Access,
    /// The request body is a file's raw bytes (uploads), not JSON.
    pub raw_body: bool,
    /// The success status.
    pub status: u16,
    pub tag: &'static str,
    pub summary: &'static str,
}

/// A request body that carries nothing: empty, or any JSON object (ignored).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct NoBody {}

impl<'de> Deserialize<'de> for NoBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NoBody, D::Error> {
        match Value::deserialize(d)? {
            Value::Null | Value::Object(_) => Ok(NoBody {}),
            _ => Err(serde::de::Error::custom(
                "request body must be a JSON object",
            )),
        }
    }
}

impl PartialSchema for NoBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Object).into()
    }
}
impl ToSchema for NoBody {}

/// An upload's body: the raw bytes travel beside the request (`ImCall.raw`), not in it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct RawBody {}

impl PartialSchema for RawBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .into()
    }
}
impl ToSchema for RawBody {}

/// A reply that is a file's bytes with their content type (downloads).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Binary {
    pub content_type: String,
    pub data: Vec<u8>,
}

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        RawBody::schema()
    }
}
impl ToSchema for Binary {}

/// The OpenAPI document itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Document(pub Value);

impl PartialSchema for Document {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Object).into()
    }
}
impl ToSchema for Document {}

/// One IM operation: its route, its typed parts and its success reply.
pub trait Operation: Into<ImRequest> + Serialize + DeserializeOwned + Send + 'static {
    type Path: Params + Serialize + DeserializeOwned + Send + 'static;
    type Query: Params + Serialize + DeserializeOwned + Send + 'static;
    type Body: ToSchema + Serialize + DeserializeOwned + Send + 'static;
    type Reply: ToSchema + Serialize + DeserializeOwned;
    const ROUTE: Route;
    fn from_parts(path: Self::Path, query: Self::Query, body: Self::Body) -> Self;
}

/// Called once per operation by [`visit`].
pub trait Visitor {
    fn visit<O: Operation>(&mut self);
}

macro_rules! operations {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $method:literal $path:literal, $op:literal, $access:ident, $tag:literal, $status:literal,
            $p:ty, $q:ty, $b:ty => $reply:ty;
    )*) => {
        $(
            $(#[doc = $doc])*
            #[derive(Debug, Clone, Serialize, Deserialize)]
            pub struct $name {
                pub path: $p,
                pub query: $q,
                pub body: $b,
            }

            impl Operation for $name {
                type Path = $p;
                type Query = $q;
                type Body = $b;
                type Reply = $reply;
                const ROUTE: Route = Route {
                    method: $method,
                    path: $path,
                    op: $op,
                    access: access!($access),
                    raw_body: raw!($access),
                    status: $status,
                    tag: $tag,
                    summary: concat!($($doc),*),
                };
                fn from_parts(path: $p, query: $q, body: $b) -> Self {
                    $name { path, query, body }
                }
            }

            impl From<$name> for ImRequest {
                fn from(r: $name) -> ImRequest {
                    ImRequest::$name(r)
                }
            }
        )*

        /// Any IM operation with its decoded input, as the api hands it to logic.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(tag = "op", content = "args")]
        pub enum ImRequest {
            $( #[serde(rename = $op)] $name($name), )*
        }

        impl ImRequest {
            pub fn route(&self) -> &'static Route {
                match self {
                    $( ImRequest::$name(_) => &<$name as Operation>::ROUTE, )*
                }
            }
        }

        /// Every route, in the table's order.
        pub const ROUTES: &[Route] = &[ $( <$name as Operation>::ROUTE, )* ];

        /// Calls `v.visit::<O>()` for every operation.
        pub fn visit(v: &mut impl Visitor) {
            $( v.visit::<$name>(); )*
        }
    };
}

macro_rules! access {
    (public) => {
        Access::Public
    };
    (login) => {
        Access::Login
    };
    (upload) => {
        Access::Login
    };
    (trusted) => {
        Access::Trusted
    };
}

macro_rules! raw {
    (upload) => {
        true
    };
    ($other:ident) => {
        false
    };
}

operations! {
    /// Register an account
    RegisterUser: "POST" "/v1/users", "users.register", public, "accounts", 201,
        NoParams, NoParams, RegisterReq => User;
    /// Log in: a token for /v1 and for the websocket
    Login: "POST" "/v1/sessions", "sessions.login", public, "accounts", 200,
        NoParams, NoParams, LoginReq => LoginReply;
    /// Log out: the token stops working and this login's connections close
    Logout: "DELETE" "/v1/sessions/current", "sessions.logout", login, "accounts", 200,
        NoParams, NoParams, NoBody => LoggedOut;
    /// My profile
    GetMe: "GET" "/v1/me", "me.get", login, "accounts", 200,
        NoParams, NoParams, NoBody => User;
    /// Update my profile
    UpdateMe: "PATCH" "/v1/me", "me.update", login, "accounts", 200,
        NoParams, NoParams, UpdateMeReq => User;
    /// Delete my account: my data is removed or anonymised, my logins end and my connections close
    DeleteMe: "DELETE" "/v1/me", "me.delete", login, "accounts", 200,
        NoParams, NoParams, DeleteMeReq => AccountDeleted;
    /// Another user's public profile
    GetUser: "GET" "/v1/users/{id}", "users.get", login, "accounts", 200,
        IdPath, NoParams, NoBody => PublicUser;
    /// The users I blocked
    ListBlocks: "GET" "/v1/blocks", "blocks.list", login, "accounts", 200,
        NoParams, NoParams, NoBody => Blocks;
    /// Block a user: they cannot message me, befriend me or invite me to groups
    Block: "POST" "/v1/blocks", "blocks.create", login, "accounts", 200,
        NoParams, NoParams, BlockReq => BlockChanged;
    /// Unblock a user
    Unblock: "DELETE" "/v1/blocks/{user_id}", "blocks.delete", login, "accounts", 200,
        UserIdPath, NoParams, NoBody => BlockChanged;
    /// Upload an avatar, image or file (raw body, Content-Type set)
    CreateUpload: "POST" "/v1/uploads", "uploads.create", upload, "uploads", 201,
        NoParams, NoParams, RawBody => Upload;
    /// Download an upload
    GetUpload: "GET" "/v1/uploads/{id}", "uploads.get", public, "uploads", 200,
        UploadPath, NoParams, NoBody => Binary;
    /// My friend groups
    ListFriendGroups: "GET" "/v1/friend-groups", "friend_groups.list", login, "friends", 200,
        NoParams, NoParams, NoBody => FriendGroups;
    /// Create a friend group
    CreateFriendGroup: "POST" "/v1/friend-groups", "friend_groups.create", login, "friends", 201,
        NoParams, NoParams, FriendGroupReq => FriendGroup;
    /// Rename a friend group
    RenameFriendGroup: "PATCH" "/v1/friend-groups/{id}", "friend_groups.rename", login, "friends", 200,
        IdPath, NoParams, FriendGroupReq => FriendGroup;
    /// Delete a friend group (its friends move to the default group)
    DeleteFriendGroup: "DELETE" "/v1/friend-groups/{id}", "friend_groups.delete", login, "friends", 200,
        IdPath, NoParams, NoBody => FriendGroupDeleted;
    /// Send a friend request
    CreateFriendRequest: "POST" "/v1/friend-requests", "friend_requests.create", login, "friends", 201,
        NoParams, NoParams, FriendRequestReq => FriendRequest;
    /// Incoming and outgoing friend requests
    ListFriendRequests: "GET" "/v1/friend-requests", "friend_requests.list", login, "friends", 200,
        NoParams, NoParams, NoBody => FriendRequests;
    /// Accept a friend request
    AcceptFriendRequest: "POST" "/v1/friend-requests/{id}/accept", "friend_requests.accept", login, "friends", 200,
        IdPath, NoParams, AcceptFriendReq => FriendRequest;
    /// Refuse a friend request
    RefuseFriendRequest: "POST" "/v1/friend-requests/{id}/refuse", "friend_requests.refuse", login, "friends", 200,
        IdPath, NoParams, NoBody => FriendRequest;
    /// My friends by friend group, with online status (paged by nickname)
    ListFriends: "GET" "/v1/friends", "friends.list", login, "friends", 200,
        NoParams, CursorQuery, NoBody => FriendsPage;
    /// Set a friend's remark or friend group
    UpdateFriend: "PATCH" "/v1/friends/{user_id}", "friends.update", login, "friends", 200,
        UserIdPath, NoParams, UpdateFriendReq => FriendUpdated;
    /// Delete a friend (both sides)
    DeleteFriend: "DELETE" "/v1/friends/{user_id}", "friends.delete", login, "friends", 200,
        UserIdPath, NoParams, NoBody => FriendDeleted;
    /// Search users by account number, nickname or exact email
    SearchUsers: "GET" "/v1/search/users", "search.users", login, "discovery", 200,
        NoParams, SearchQuery, NoBody => UserList;
    /// Search groups by number or name
    SearchGroups: "GET" "/v1/search/groups", "search.groups", login, "discovery", 200,
        NoParams, SearchQuery, NoBody => Groups;
    /// Search the messages of the conversations I can read (full text, with highlights)
    SearchMessagesOp: "GET" "/v1/search/messages", "search.messages", login, "discovery", 200,
        NoParams, MessageSearchQuery, NoBody => SearchMessages;
    /// Users I might know (never me or my friends)
    RecommendUsers: "GET" "/v1/recommendations/users", "recommendations.users", login, "discovery", 200,
        NoParams, PageQuery, NoBody => UserList;
    /// Create a group
    CreateGroup: "POST" "/v1/groups", "groups.create", login, "groups", 201,
        NoParams, NoParams, CreateGroupReq => Group;
    /// The groups I am in
    MyGroups: "GET" "/v1/groups", "groups.mine", login, "groups", 200,
        NoParams, NoParams, NoBody => Groups;
    /// A group
    GetGroup: "GET" "/v1/groups/{id}", "groups.get", login, "groups", 200,
        IdPath, NoParams, NoBody => Group;
    /// Update a group (owner or admin)
    UpdateGroup: "PATCH" "/v1/groups/{id}", "groups.update", login, "groups", 200,
        IdPath, NoParams, UpdateGroupReq => Group;
    /// Dismiss a group (owner)
    DismissGroup: "DELETE" "/v1/groups/{id}", "groups.dismiss", login, "groups", 200,
        IdPath, NoParams, NoBody => GroupDismissed;
    /// Transfer ownership to a member (owner)
    TransferGroup: "POST" "/v1/groups/{id}/transfer", "groups.transfer", login, "groups", 200,
        IdPath, NoParams, TransferReq => Group;
    /// Members with roles and online status (paged)
    ListMembers: "GET" "/v1/groups/{id}/members", "groups.members", login, "groups", 200,
        IdPath, CursorQuery, NoBody => MembersPage;
    /// Invite a friend into the group (owner or admin; any member when the group needs no approval)
    InviteMember: "POST" "/v1/groups/{id}/members", "groups.invite", login, "groups", 200,
        IdPath, NoParams, InviteReq => Invited;
    /// Join, or ask to join when approval is on
    JoinGroup: "POST" "/v1/groups/{id}/join", "groups.join", login, "groups", 200,
        IdPath, NoParams, JoinReq => JoinOutcome;
    /// Join requests (owner or admin)
    ListJoinRequests: "GET" "/v1/groups/{id}/join-requests", "groups.join_requests", login, "groups", 200,
        IdPath, NoParams, NoBody => JoinRequests;
    /// Accept a join request (owner or admin)
    AcceptJoin: "POST" "/v1/groups/{id}/join-requests/{request_id}/accept", "groups.join_accept", login, "groups", 200,
        JoinRequestPath, NoParams, NoBody => JoinHandled;
    /// Refuse a join request (owner or admin)
    RefuseJoin: "POST" "/v1/groups/{id}/join-requests/{request_id}/refuse", "groups.join_refuse", login, "groups", 200,
        JoinRequestPath, NoParams, NoBody => JoinHandled;
    /// Change a member's role (owner) or mute them (owner or admin)
    UpdateMember: "PATCH" "/v1/groups/{id}/members/{user_id}", "groups.member_update", login, "groups", 200,
        MemberPath, NoParams, UpdateMemberReq => MemberUpdated;
    /// Kick a member, or leave when it is me
    RemoveMember: "DELETE" "/v1/groups/{id}/members/{user_id}", "groups.member_remove", login, "groups", 200,
        MemberPath, NoParams, NoBody => MemberRemoved;
    /// My conversations with last message and unread count (paged, most recent first)
    ListConversations: "GET" "/v1/conversations", "conversations.list", login, "chat", 200,
        NoParams, CursorQuery, NoBody => ConversationsPage;
    /// History, paged by seq
    ListMessages: "GET" "/v1/conversations/{cid}/messages", "messages.list", login, "chat", 200,
        CidPath, HistoryQuery, NoBody => MessagePage;
    /// Send a message (idempotent by client_msg_id)
    SendMessage: "POST" "/v1/conversations/{cid}/messages", "messages.send", login, "chat", 201,
        CidPath, NoParams, SendReq => Message;
    /// Edit my text message within the edit window (a new `edit` event in the seq stream)
    EditMessage: "PATCH" "/v1/conversations/{cid}/messages/{seq}", "messages.edit", login, "chat", 200,
        MessagePath, NoParams, EditReq => Message;
    /// Recall a message: mine within the recall window, or any member's as a group owner or admin
    RecallMessage: "DELETE" "/v1/conversations/{cid}/messages/{seq}", "messages.recall", login, "chat", 200,
        MessagePath, NoParams, NoBody => Message;
    /// Add my reaction to a message (a new `react` event)
    AddReaction: "PUT" "/v1/conversations/{cid}/messages/{seq}/reactions/{emoji}", "reactions.add", login, "chat", 200,
        ReactionPath, NoParams, NoBody => Message;
    /// Take my reaction off a message (a new `unreact` event)
    RemoveReaction: "DELETE" "/v1/conversations/{cid}/messages/{seq}/reactions/{emoji}", "reactions.remove", login, "chat", 200,
        ReactionPath, NoParams, NoBody => Message;
    /// Who has read a message (read receipts)
    MessageReaders: "GET" "/v1/conversations/{cid}/messages/{seq}/readers", "messages.readers", login, "chat", 200,
        MessagePath, CursorQuery, NoBody => Readers;
    /// Every participant's read seq (paged by user id)
    ConversationReads: "GET" "/v1/conversations/{cid}/reads", "conversations.reads", login, "chat", 200,
        CidPath, CursorQuery, NoBody => ReadsPage;
    /// Mark read up to a seq
    ReadConversation: "POST" "/v1/conversations/{cid}/read", "conversations.read", login, "chat", 200,
        CidPath, NoParams, ReadReq => ReadState;
    /// Tell the others I am typing (never stored; at most one per typing interval)
    Typing: "POST" "/v1/conversations/{cid}/typing", "conversations.typing", login, "chat", 200,
        CidPath, NoParams, TypingReq => TypingSent;
    /// The message box
    ListNotifications: "GET" "/v1/notifications", "notifications.list", login, "notifications", 200,
        NoParams, PageQuery, NoBody => NotificationPage;
    /// Send a system notice to users' message boxes (trusted backends, API key)
    CreateNotice: "POST" "/v1/notices", "notices.create", trusted, "notifications", 200,
        NoParams, NoParams, NoticeReq => NoticeSent;
    /// Mark message-box items read
    ReadNotifications: "POST" "/v1/notifications/read", "notifications.read", login, "notifications", 200,
        NoParams, NoParams, ReadNotificationsReq => Unread;
    /// This document
    OpenApi: "GET" "/v1/openapi.json", "openapi", public, "meta", 200,
        NoParams, NoParams, NoBody => Document;
}

/// The route of an operation name.
pub fn route_of(op: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.op == op)
}

/// The other successes some operations have, besides their `status`.
pub fn other_successes(op: &str) -> &'static [(u16, &'static str)] {
    match op {
        "groups.join" => &[(202, "a join request was filed (the group needs approval)")],
        "messages.send" => &[(
            200,
            "a resend: the message stored earlier with this client_msg_id",
        )],
        _ => &[],
    }
}

/// The largest upload a deployment may allow (IMCLOUD_IM_UPLOAD_MAX_BYTES is checked against it).
pub const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;

/// The content types an upload may have (logic checks each against the file's first bytes); a download
/// answers with the type the file was uploaded with.
pub const UPLOAD_CONTENT_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "application/zip",
    "text/plain",
    "application/octet-stream",
];
/// The largest ImCall request or reply on gRPC: an upload plus room for the rest.
pub const MAX_IM_CALL_BYTES: usize = MAX_UPLOAD_BYTES + 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ops_and_routes_are_unique() {
        let ops: HashSet<_> = ROUTES.iter().map(|r| r.op).collect();
        assert_eq!(ops.len(), ROUTES.len());
        let routes: HashSet<_> = ROUTES.iter().map(|r| (r.method, r.path)).collect();
        assert_eq!(routes.len(), ROUTES.len());
        assert!(ROUTES.iter().all(|r| r.path.starts_with("/v1/")));
        assert!(ROUTES.iter().all(|r| !r.summary.is_empty()));
    }

    #[test]
    fn requests_travel_as_op_and_args() {
        let req: ImRequest = serde_json::from_value(serde_json::json!({
            "op": "messages.send",
            "args": {"path": {"cid": "u-1-2"}, "query": {}, "body": {"client_msg_id": "a", "content": "hi"}}
        }))
        .expect("decodes");
        assert_eq!(req.route().op, "messages.send");
        let back = serde_json::to_value(&req).expect("encodes");
        assert_eq!(back["args"]["path"]["cid"], "u-1-2");
        assert_eq!(back["args"]["body"]["type"], "text");
        let bad = serde_json::from_value::<ImRequest>(serde_json::json!({
            "op": "messages.send",
            "args": {"path": {"cid": "u-2-1"}, "query": {}, "body": {"client_msg_id": "a", "content": "hi"}}
        }));
        assert!(
            bad.is_err(),
            "an invalid conversation id never becomes a request"
        );
    }
}
