//! Database rows and how they become the contract's reply types. Columns hold plain text and integers
//! (one set of queries serves PostgreSQL and SQLite); the conversions turn them into the domain enums.
//!
//! Invariant: a stored role, status or kind that is not one of the enum's values (which no code path
//! writes) reads as the least privileged value (`member`, `pending`, `text`) rather than failing.

use imcloud_common::im::accounts::{PublicUser, User};
use imcloud_common::im::chat::Message;
use imcloud_common::im::friends::FriendGroup;
use imcloud_common::im::groups::JoinRequest;
use imcloud_common::im::values::{GroupRole, MessageKind, RequestStatus};
use sqlx::FromRow;

/// The columns of [`UserRow`], for `concat!` into static SQL.
macro_rules! user_columns {
    () => {
        "id, account_no, email, nickname, avatar, signature, sex, birthday, location, created_at, deleted_at"
    };
}
pub(crate) use user_columns;

/// The nickname a deleted account shows.
pub const DELETED_NICKNAME: &str = "deleted user";

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: i64,
    pub account_no: String,
    pub email: String,
    pub nickname: String,
    pub avatar: String,
    pub signature: String,
    pub sex: String,
    pub birthday: String,
    pub location: String,
    pub created_at: i64,
    pub deleted_at: Option<i64>,
}

impl UserRow {
    pub fn user(self) -> User {
        User {
            id: self.id,
            account_no: self.account_no,
            email: self.email,
            nickname: self.nickname,
            avatar: self.avatar,
            signature: self.signature,
            sex: self.sex,
            birthday: self.birthday,
            location: self.location,
            created_at: self.created_at,
        }
    }

    /// As others see the user: the email only when `show_email` (friends, or oneself).
    pub fn public(self, show_email: bool) -> PublicUser {
        let deleted = self.deleted_at.is_some();
        PublicUser {
            id: self.id,
            account_no: self.account_no,
            nickname: self.nickname,
            avatar: self.avatar,
            signature: self.signature,
            sex: self.sex,
            birthday: self.birthday,
            location: self.location,
            email: (show_email && !deleted).then_some(self.email),
            online: None,
            deleted,
        }
    }
}

macro_rules! message_columns {
    () => {
        "id, conversation_id, seq, sender_id, client_msg_id, kind, content, created_at, ref_seq, edited_at, recalled"
    };
}
pub(crate) use message_columns;

#[derive(Debug, Clone, FromRow)]
pub struct MessageRow {
    pub id: i64,
    pub conversation_id: String,
    pub seq: i64,
    pub sender_id: i64,
    pub client_msg_id: String,
    pub kind: String,
    pub content: String,
    pub created_at: i64,
    pub ref_seq: Option<i64>,
    pub edited_at: Option<i64>,
    pub recalled: i64,
}

impl From<MessageRow> for Message {
    fn from(r: MessageRow) -> Message {
        Message {
            id: r.id,
            conversation_id: r.conversation_id,
            seq: r.seq,
            sender_id: r.sender_id,
            client_msg_id: r.client_msg_id,
            kind: MessageKind::parse(&r.kind).unwrap_or(MessageKind::Text),
            content: r.content,
            created_at: r.created_at,
            ref_seq: r.ref_seq,
            edited_at: r.edited_at,
            recalled: r.recalled != 0,
            reactions: Vec::new(),
            read_by: None,
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct FriendGroupRow {
    pub id: i64,
    pub name: String,
    pub is_default: i64,
}

impl From<FriendGroupRow> for FriendGroup {
    fn from(r: FriendGroupRow) -> FriendGroup {
        FriendGroup {
            id: r.id,
            name: r.name,
            is_default: r.is_default,
        }
    }
}

macro_rules! join_columns {
    () => {
        "id, group_id, user_id, note, status, handled_by, created_at, handled_at"
    };
}
pub(crate) use join_columns;

#[derive(Debug, Clone, FromRow)]
pub struct JoinRequestRow {
    pub id: i64,
    pub group_id: i64,
    pub user_id: i64,
    pub note: String,
    pub status: String,
    pub handled_by: Option<i64>,
    pub created_at: i64,
    pub handled_at: Option<i64>,
}

impl From<JoinRequestRow> for JoinRequest {
    fn from(r: JoinRequestRow) -> JoinRequest {
        JoinRequest {
            id: r.id,
            group_id: r.group_id,
            user_id: r.user_id,
            note: r.note,
            status: status(&r.status),
            handled_by: r.handled_by,
            created_at: r.created_at,
            handled_at: r.handled_at,
        }
    }
}

pub fn status(s: &str) -> RequestStatus {
    RequestStatus::parse(s).unwrap_or(RequestStatus::Pending)
}

pub fn role(s: &str) -> GroupRole {
    GroupRole::parse(s).unwrap_or(GroupRole::Member)
}
