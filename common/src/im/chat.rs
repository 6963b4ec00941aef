//! Conversations and messages: history by seq, sending, editing, recalling, reactions, read state and
//! receipts, typing, message search.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::accounts::PublicUser;
use super::groups::Group;
use super::values::{MessageKind, SendKind, Text};

/// A message, or (for the kinds `edit`, `recall`, `react`, `unreact`) a change to the message at
/// `ref_seq`, kept in the conversation's seq stream so that a syncing device learns of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub id: i64,
    pub conversation_id: String,
    pub seq: i64,
    pub sender_id: i64,
    pub client_msg_id: String,
    #[serde(rename = "type")]
    pub kind: MessageKind,
    /// The text; for image and file an upload path or URL; for react/unreact the emoji; empty when
    /// recalled.
    pub content: String,
    pub created_at: i64,
    /// The message this change applies to (edit, recall, react, unreact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_seq: Option<i64>,
    /// When the content was last edited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// The message was withdrawn (its content is gone).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recalled: bool,
    /// Reactions on this message, by emoji (history only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionCount>,
    /// How many other participants have read it (history only; user messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_by: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: i64,
    /// Whether I am among them.
    pub me: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SendReq {
    /// The client's id for this message: a resend with the same id returns the stored message.
    pub client_msg_id: Text<1, 64>,
    /// text (default), image or file
    #[serde(rename = "type", default)]
    pub kind: SendKind,
    /// The text (1 to 5000 characters), or for image and file an upload path or URL.
    #[schema(min_length = 1, max_length = 5000)]
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditReq {
    /// The new text (1 to 5000 characters).
    #[schema(min_length = 1, max_length = 5000)]
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadReq {
    #[schema(minimum = 0)]
    pub seq: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadState {
    pub conversation_id: String,
    pub read_seq: i64,
    pub unread: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    pub conversation_id: String,
    /// Ascending seq.
    pub messages: Vec<Message>,
    pub has_more: bool,
    pub last_seq: i64,
    /// Group conversations: the number of members (for "read by N of M").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_count: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Conversation {
    pub id: String,
    /// private or group
    #[serde(rename = "type")]
    pub kind: String,
    pub peer: Option<PublicUser>,
    pub group: Option<Group>,
    pub last_seq: i64,
    pub read_seq: i64,
    /// Messages from others after read_seq (changes such as edits and reactions do not count).
    pub unread: i64,
    pub last_message: Option<Message>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConversationsPage {
    /// Most recently updated first.
    pub conversations: Vec<Conversation>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypingReq {
    /// true (default) while typing, false when stopped.
    #[serde(default = "yes")]
    pub typing: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TypingSent {
    /// false when this was within the typing interval of the previous one (nothing was sent).
    pub sent: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemberRead {
    pub user_id: i64,
    pub read_seq: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadsPage {
    pub conversation_id: String,
    /// Each participant's read seq, by user id.
    pub reads: Vec<MemberRead>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readers {
    pub conversation_id: String,
    pub seq: i64,
    /// Participants other than the sender who have read it.
    pub read_by: i64,
    /// Participants other than the sender.
    pub of: i64,
    /// The readers on this page, by user id.
    pub readers: Vec<i64>,
    pub next_cursor: Option<String>,
}

/// A part of a search hit's snippet: `[start, end)` in characters of `snippet` that matched.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Highlight {
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    pub message: Message,
    /// The matching part of the text (plain text, not HTML).
    pub snippet: String,
    pub highlights: Vec<Highlight>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchMessages {
    /// Best match first, then newest.
    pub hits: Vec<SearchHit>,
}
