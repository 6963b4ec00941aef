//! Live events: server → client pushes with a JSON body `{"event": name, "data": {...}}` on application
//! ops (≥ 1000). They go through the push pipeline to every connection of the recipients; a recipient
//! that is offline catches up from the stores (messages by seq, the message box, presence on listing).

use serde::Serialize;
use serde_json::json;

/// A new message in a conversation (data: the message).
pub const OP_MESSAGE: i32 = 1000;
/// A user read a private conversation up to a seq (data: conversation_id, user_id, seq).
pub const OP_READ_RECEIPT: i32 = 1001;
/// A new message-box item: friend request or result, group join request or result, notice.
pub const OP_NOTIFICATION: i32 = 1002;
/// A friend came online or went offline (data: user_id, online).
pub const OP_PRESENCE: i32 = 1003;
/// A group changed: member joined, left, kicked, role or mute changed, updated, dismissed.
pub const OP_GROUP: i32 = 1004;
/// A friendship was added or removed (data: user_id, change).
pub const OP_FRIEND: i32 = 1005;

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub to: Vec<i64>,
    pub op: i32,
    pub body: Vec<u8>,
}

impl Event {
    pub fn new(to: Vec<i64>, op: i32, name: &str, data: impl Serialize) -> Event {
        let body = serde_json::to_vec(&json!({"event": name, "data": data})).unwrap_or_default();
        Event { to, op, body }
    }
}
