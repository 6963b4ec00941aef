//! Websocket op 4 commands: the JSON body `{"cmd": …, …}` decoded into a [`Command`], which (but for
//! `ping`) becomes the same [`ImRequest`] the JSON API would send, so both doors share one set of
//! rules. The op 5 reply is `{"code": 0, "message": "ok", "data": …}`, or a negative HTTP status as
//! code with an `error` object.

use serde::Deserialize;

use super::chat::{EditReq, ReadReq, SendReq, TypingReq};
use super::operations::*;
use super::params::{
    CidPath, CursorQuery, HistoryQuery, MessagePath, MessageSearchQuery, NoParams, ReactionPath,
};
use super::values::{ConversationId, Emoji, Id};

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    Ping,
    Send {
        conversation_id: ConversationId,
        #[serde(flatten)]
        body: SendReq,
    },
    Read {
        conversation_id: ConversationId,
        #[serde(flatten)]
        body: ReadReq,
    },
    History {
        conversation_id: ConversationId,
        #[serde(flatten)]
        query: HistoryQuery,
    },
    Conversations {
        #[serde(flatten)]
        query: CursorQuery,
    },
    Typing {
        conversation_id: ConversationId,
        #[serde(flatten)]
        body: TypingReq,
    },
    Edit {
        conversation_id: ConversationId,
        seq: Id,
        content: String,
    },
    Recall {
        conversation_id: ConversationId,
        seq: Id,
    },
    React {
        conversation_id: ConversationId,
        seq: Id,
        emoji: Emoji,
    },
    Unreact {
        conversation_id: ConversationId,
        seq: Id,
        emoji: Emoji,
    },
    /// Message search: `q`, optionally `conversation_id`, `page`, `page_size`.
    Search {
        #[serde(flatten)]
        query: MessageSearchQuery,
    },
}

/// The commands, for the error that names them.
pub const COMMANDS: &str =
    "ping, send, read, history, conversations, typing, edit, recall, react, unreact, search";

impl Command {
    /// Decodes an op 4 body.
    pub fn from_frame(body: &[u8]) -> Result<Command, String> {
        let v: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| format!("body must be a JSON command {{\"cmd\": ...}}: {e}"))?;
        let Some(cmd) = v.get("cmd").and_then(|c| c.as_str()).map(str::to_string) else {
            return Err("body must be a JSON command {\"cmd\": ...}".into());
        };
        if !COMMANDS.split(", ").any(|c| c == cmd) {
            return Err(format!("unknown command {cmd:?} ({COMMANDS})"));
        }
        serde_json::from_value(v).map_err(|e| format!("{cmd}: {e}"))
    }

    /// The JSON API request this command is; `None` for `ping`.
    pub fn into_request(self) -> Option<ImRequest> {
        let cid = |conversation_id| CidPath {
            cid: conversation_id,
        };
        let msg = |cid, seq| MessagePath { cid, seq };
        Some(match self {
            Command::Ping => return None,
            Command::Send {
                conversation_id,
                body,
            } => SendMessage::from_parts(cid(conversation_id), NoParams {}, body).into(),
            Command::Read {
                conversation_id,
                body,
            } => ReadConversation::from_parts(cid(conversation_id), NoParams {}, body).into(),
            Command::History {
                conversation_id,
                query,
            } => ListMessages::from_parts(cid(conversation_id), query, NoBody {}).into(),
            Command::Conversations { query } => {
                ListConversations::from_parts(NoParams {}, query, NoBody {}).into()
            }
            Command::Typing {
                conversation_id,
                body,
            } => Typing::from_parts(cid(conversation_id), NoParams {}, body).into(),
            Command::Edit {
                conversation_id,
                seq,
                content,
            } => {
                EditMessage::from_parts(msg(conversation_id, seq), NoParams {}, EditReq { content })
                    .into()
            }
            Command::Recall {
                conversation_id,
                seq,
            } => {
                RecallMessage::from_parts(msg(conversation_id, seq), NoParams {}, NoBody {}).into()
            }
            Command::React {
                conversation_id,
                seq,
                emoji,
            } => AddReaction::from_parts(
                ReactionPath {
                    cid: conversation_id,
                    seq,
                    emoji,
                },
                NoParams {},
                NoBody {},
            )
            .into(),
            Command::Unreact {
                conversation_id,
                seq,
                emoji,
            } => RemoveReaction::from_parts(
                ReactionPath {
                    cid: conversation_id,
                    seq,
                    emoji,
                },
                NoParams {},
                NoBody {},
            )
            .into(),
            Command::Search { query } => {
                SearchMessagesOp::from_parts(NoParams {}, query, NoBody {}).into()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_decode_into_the_api_requests() {
        let c = Command::from_frame(
            br#"{"cmd":"send","conversation_id":"u-1-2","client_msg_id":"m1","content":"hi"}"#,
        )
        .expect("send");
        match c.into_request() {
            Some(ImRequest::SendMessage(r)) => {
                assert_eq!(r.path.cid, ConversationId::Private(1, 2));
                assert_eq!(r.body.client_msg_id.as_str(), "m1");
            }
            other => panic!("{other:?}"),
        }
        // history takes numbers or strings
        let c = Command::from_frame(
            br#"{"cmd":"history","conversation_id":"g-3","after_seq":"4","limit":10}"#,
        )
        .expect("history");
        match c.into_request() {
            Some(ImRequest::ListMessages(r)) => {
                assert_eq!(r.query.after_seq, Some(4));
                assert_eq!(r.query.limit, Some(10));
            }
            other => panic!("{other:?}"),
        }
        // search takes the query's fields, the page as a number or a string
        let c = Command::from_frame(
            br#"{"cmd":"search","q":"lunch","conversation_id":"u-1-2","page":"2"}"#,
        )
        .expect("search");
        match c.into_request() {
            Some(ImRequest::SearchMessagesOp(r)) => {
                assert_eq!(r.query.q, "lunch");
                assert_eq!(r.query.conversation_id.as_deref(), Some("u-1-2"));
                assert_eq!(r.query.page, Some(2));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Command::from_frame(br#"{"cmd":"ping"}"#).is_ok_and(|c| c.into_request().is_none())
        );
        assert!(
            Command::from_frame(br#"{"cmd":"fly"}"#).is_err_and(|e| e.contains("unknown command"))
        );
        assert!(Command::from_frame(b"nope").is_err());
        assert!(
            Command::from_frame(
                br#"{"cmd":"send","conversation_id":"u-2-1","client_msg_id":"m","content":"x"}"#
            )
            .is_err()
        );
        assert!(
            Command::from_frame(
                br#"{"cmd":"react","conversation_id":"u-1-2","seq":1,"emoji":"x"}"#
            )
            .is_err()
        );
    }
}
