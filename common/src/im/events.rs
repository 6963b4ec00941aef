//! Live events: server → client pushes on application ops (≥ 1000), each a JSON body
//! `{"event": name, "data": {...}}`. They reach every live connection of their recipients; a recipient
//! that was offline catches up from the stores (messages by seq, the message box, the lists).
//!
//! Invariant: each event name has exactly one op ([`LiveEvent::op`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::chat::Message;
use super::groups::Group;
use super::notifications::Notification;
use super::values::GroupRole;

/// A new message in a conversation, or a change to one (edit, recall, react, unreact).
pub const OP_MESSAGE: i32 = 1000;
/// A user read a conversation up to a seq.
pub const OP_READ: i32 = 1001;
/// A new message-box item.
pub const OP_NOTIFICATION: i32 = 1002;
/// A friend came online or went offline.
pub const OP_PRESENCE: i32 = 1003;
/// A group changed.
pub const OP_GROUP: i32 = 1004;
/// A friendship was added or removed.
pub const OP_FRIEND: i32 = 1005;
/// Someone is typing in a conversation (never stored).
pub const OP_TYPING: i32 = 1006;
/// I blocked or unblocked someone (to my other devices).
pub const OP_BLOCK: i32 = 1007;
/// My message box's unread count changed (to my other devices).
pub const OP_NOTIFICATIONS_READ: i32 = 1008;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadEvent {
    pub conversation_id: String,
    pub user_id: i64,
    pub seq: i64,
    /// My unread count after the read (only on the reader's own devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PresenceEvent {
    pub user_id: i64,
    pub online: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupChange {
    Joined,
    Left,
    Kicked,
    Role,
    Muted,
    Updated,
    Owner,
    Dismissed,
}

impl GroupChange {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupChange::Joined => "joined",
            GroupChange::Left => "left",
            GroupChange::Kicked => "kicked",
            GroupChange::Role => "role",
            GroupChange::Muted => "muted",
            GroupChange::Updated => "updated",
            GroupChange::Owner => "owner",
            GroupChange::Dismissed => "dismissed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupEvent {
    pub group_id: i64,
    pub change: GroupChange,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    /// kicked: who removed them; joined by invitation: who invited them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<GroupRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted_until: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Group>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_owner: Option<i64>,
}

impl GroupEvent {
    pub fn new(group_id: i64, change: GroupChange) -> GroupEvent {
        GroupEvent {
            group_id,
            change,
            user_id: None,
            by: None,
            role: None,
            muted_until: None,
            group: None,
            previous_owner: None,
        }
    }
    pub fn user(mut self, user_id: i64) -> GroupEvent {
        self.user_id = Some(user_id);
        self
    }
    pub fn by(mut self, by: i64) -> GroupEvent {
        self.by = Some(by);
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FriendChange {
    Added,
    Removed,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FriendEvent {
    /// The other user.
    pub user_id: i64,
    pub change: FriendChange,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TypingEvent {
    pub conversation_id: String,
    pub user_id: i64,
    pub typing: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlockEvent {
    pub user_id: i64,
    pub blocked: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotificationsReadEvent {
    pub unread: i64,
}

/// Every live event, as its JSON body: `{"event": "<name>", "data": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum LiveEvent {
    Message(Message),
    Read(ReadEvent),
    Notification(Notification),
    Presence(PresenceEvent),
    Group(GroupEvent),
    Friend(FriendEvent),
    Typing(TypingEvent),
    Block(BlockEvent),
    NotificationsRead(NotificationsReadEvent),
}

impl LiveEvent {
    pub fn op(&self) -> i32 {
        match self {
            LiveEvent::Message(_) => OP_MESSAGE,
            LiveEvent::Read(_) => OP_READ,
            LiveEvent::Notification(_) => OP_NOTIFICATION,
            LiveEvent::Presence(_) => OP_PRESENCE,
            LiveEvent::Group(_) => OP_GROUP,
            LiveEvent::Friend(_) => OP_FRIEND,
            LiveEvent::Typing(_) => OP_TYPING,
            LiveEvent::Block(_) => OP_BLOCK,
            LiveEvent::NotificationsRead(_) => OP_NOTIFICATIONS_READ,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_keep_their_wire_form() {
        let e = LiveEvent::Presence(PresenceEvent {
            user_id: 3,
            online: true,
        });
        assert_eq!(
            serde_json::to_value(&e).ok(),
            Some(json!({"event": "presence", "data": {"user_id": 3, "online": true}}))
        );
        assert_eq!(e.op(), OP_PRESENCE);
        let g = LiveEvent::Group(GroupEvent::new(5, GroupChange::Kicked).user(2).by(1));
        assert_eq!(
            serde_json::to_value(&g).ok(),
            Some(
                json!({"event": "group", "data": {"group_id": 5, "change": "kicked", "user_id": 2, "by": 1}})
            )
        );
        let r = LiveEvent::NotificationsRead(NotificationsReadEvent { unread: 0 });
        assert_eq!(
            serde_json::to_value(&r).ok().map(|v| v["event"].clone()),
            Some(json!("notifications_read"))
        );
    }
}
