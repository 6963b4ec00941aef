//! Websocket op 4 commands: the JSON body `{"cmd": …, …}` decoded into a [`Command`], which (but for
//! `ping`) becomes the same [`ImRequest`] the JSON API would send, so both doors share one set of
//! rules. The op 5 reply is `{"code": 0, "message": "ok", "data": …}`, or a negative HTTP status as
//! code with an `error` object.

use serde::Deserialize;

use super::accounts::{BlockReq, DeleteMeReq};
use super::chat::{EditReq, ReadReq, SendReq, TypingReq};
use super::notifications::ReadNotificationsReq;
use super::operations::*;
use super::params::{
    CidPath, CursorQuery, HistoryQuery, IdPath, MessagePath, MessageSearchQuery, NoParams,
    PageQuery, ReactionPath, UserIdPath,
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
    /// Who read a message: `conversation_id`, `seq`, optionally `limit`, `cursor`.
    Readers {
        conversation_id: ConversationId,
        seq: Id,
        #[serde(flatten)]
        query: CursorQuery,
    },
    /// Every participant's read seq: `conversation_id`, optionally `limit`, `cursor`.
    Reads {
        conversation_id: ConversationId,
        #[serde(flatten)]
        query: CursorQuery,
    },
    /// My friends, paged: optionally `limit`, `cursor`.
    Friends {
        #[serde(flatten)]
        query: CursorQuery,
    },
    /// A group's members, paged: `group_id`, optionally `limit`, `cursor`.
    Members {
        group_id: Id,
        #[serde(flatten)]
        query: CursorQuery,
    },
    /// The users I blocked.
    Blocks,
    /// Block `user_id`.
    Block {
        #[serde(flatten)]
        body: BlockReq,
    },
    /// Unblock `user_id`.
    Unblock {
        user_id: Id,
    },
    /// Delete my account: `password` confirms it. Every connection of mine closes, this one too.
    DeleteAccount {
        #[serde(flatten)]
        body: DeleteMeReq,
    },
    /// The message box, newest first: optionally `page`, `page_size`.
    Notifications {
        #[serde(flatten)]
        query: PageQuery,
    },
    /// Mark message-box items read: `ids` (at most 500), or every item when left out.
    ReadNotifications {
        #[serde(default)]
        ids: Option<Vec<i64>>,
    },
}

/// The commands, for the error that names them (a unit test keeps it in step with [`Command`]).
pub const COMMANDS: &str = "ping, send, read, history, conversations, typing, edit, recall, react, \
     unreact, search, readers, reads, friends, members, blocks, block, unblock, delete_account, \
     notifications, read_notifications";

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
            Command::Readers {
                conversation_id,
                seq,
                query,
            } => MessageReaders::from_parts(msg(conversation_id, seq), query, NoBody {}).into(),
            Command::Reads {
                conversation_id,
                query,
            } => ConversationReads::from_parts(cid(conversation_id), query, NoBody {}).into(),
            Command::Friends { query } => {
                ListFriends::from_parts(NoParams {}, query, NoBody {}).into()
            }
            Command::Members { group_id, query } => {
                ListMembers::from_parts(IdPath { id: group_id }, query, NoBody {}).into()
            }
            Command::Blocks => ListBlocks::from_parts(NoParams {}, NoParams {}, NoBody {}).into(),
            Command::Block { body } => Block::from_parts(NoParams {}, NoParams {}, body).into(),
            Command::Unblock { user_id } => {
                Unblock::from_parts(UserIdPath { user_id }, NoParams {}, NoBody {}).into()
            }
            Command::DeleteAccount { body } => {
                DeleteMe::from_parts(NoParams {}, NoParams {}, body).into()
            }
            Command::Notifications { query } => {
                ListNotifications::from_parts(NoParams {}, query, NoBody {}).into()
            }
            Command::ReadNotifications { ids } => ReadNotifications::from_parts(
                NoParams {},
                NoParams {},
                ReadNotificationsReq { ids },
            )
            .into(),
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

    /// The request a command body decodes into (panics with the refusal when it does not decode).
    fn request(body: serde_json::Value) -> ImRequest {
        let bytes = serde_json::to_vec(&body).expect("json");
        match Command::from_frame(&bytes) {
            Ok(c) => c.into_request().expect("not ping"),
            Err(e) => panic!("{body}: {e}"),
        }
    }

    /// The refusal of a command body that must not decode.
    fn refusal(body: &str) -> String {
        match Command::from_frame(body.as_bytes()) {
            Ok(c) => panic!("{body} decoded into {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_command_list_is_the_variants() {
        // serde names every variant, in order, when the tag is unknown.
        let e = serde_json::from_str::<Command>(r#"{"cmd":"fly"}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let expected: Vec<String> = COMMANDS.split(", ").map(|c| format!("`{c}`")).collect();
        assert!(
            e.contains(&format!("expected one of {}", expected.join(", "))),
            "COMMANDS is not the variants: {e}"
        );
    }

    #[test]
    fn the_docs_list_every_command() {
        let doc = include_str!("../../../docs/im.md");
        let start = doc.find("**Op 4 commands**").expect("the op 4 table");
        let table: Vec<&str> = doc[start..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.split(" | ").next())
            .collect();
        for name in COMMANDS.split(", ") {
            let cell = format!("`{name}`");
            assert!(
                table.iter().any(|c| c.contains(&cell)),
                "docs/im.md's op 4 table lacks {name}: {table:?}"
            );
        }
        // protocol.md quotes the unknown-command error, which lists them all.
        let protocol = include_str!("../../../docs/protocol.md");
        assert!(
            protocol.contains(&format!("({COMMANDS})")),
            "docs/protocol.md's unknown-command error is not ({COMMANDS})"
        );
    }

    #[test]
    fn read_receipt_commands_decode_into_the_receipt_queries() {
        match request(
            serde_json::json!({"cmd": "readers", "conversation_id": "g-7", "seq": "3", "limit": 5, "cursor": "10"}),
        ) {
            ImRequest::MessageReaders(r) => {
                assert_eq!(r.path.cid, ConversationId::Group(7));
                assert_eq!(r.path.seq.get(), 3);
                assert_eq!(r.query.limit, Some(5));
                assert_eq!(r.query.cursor.as_deref(), Some("10"));
            }
            other => panic!("{other:?}"),
        }
        match request(serde_json::json!({"cmd": "reads", "conversation_id": "u-1-2"})) {
            ImRequest::ConversationReads(r) => {
                assert_eq!(r.path.cid, ConversationId::Private(1, 2));
                assert_eq!((r.query.limit, r.query.cursor), (None, None));
            }
            other => panic!("{other:?}"),
        }
        assert!(refusal(r#"{"cmd":"readers","conversation_id":"g-7"}"#).contains("seq"));
        assert!(
            refusal(r#"{"cmd":"readers","conversation_id":"g-7","seq":0}"#).contains("positive")
        );
        assert!(refusal(r#"{"cmd":"reads","conversation_id":"x-1"}"#).starts_with("reads: "));
        assert!(
            refusal(r#"{"cmd":"reads","conversation_id":"g-1","limit":"many"}"#)
                .starts_with("reads: ")
        );
    }

    #[test]
    fn list_commands_decode_into_the_paged_lists() {
        match request(serde_json::json!({"cmd": "friends", "limit": "20", "cursor": "40"})) {
            ImRequest::ListFriends(r) => {
                assert_eq!(r.query.limit, Some(20));
                assert_eq!(r.query.cursor.as_deref(), Some("40"));
            }
            other => panic!("{other:?}"),
        }
        match request(serde_json::json!({"cmd": "members", "group_id": 9, "limit": 2})) {
            ImRequest::ListMembers(r) => {
                assert_eq!(r.path.id.get(), 9);
                assert_eq!(r.query.limit, Some(2));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            request(serde_json::json!({"cmd": "blocks"})),
            ImRequest::ListBlocks(_)
        ));
        assert_eq!(
            refusal(r#"{"cmd":"members"}"#),
            "members: missing field `group_id`"
        );
        assert!(refusal(r#"{"cmd":"members","group_id":-1}"#).contains("positive integer"));
        assert!(refusal(r#"{"cmd":"members","group_id":"g-1"}"#).starts_with("members: "));
        assert!(refusal(r#"{"cmd":"friends","cursor":5}"#).starts_with("friends: "));
    }

    #[test]
    fn block_commands_decode_into_the_block_operations() {
        match request(serde_json::json!({"cmd": "block", "user_id": 4})) {
            ImRequest::Block(r) => assert_eq!(r.body.user_id.get(), 4),
            other => panic!("{other:?}"),
        }
        match request(serde_json::json!({"cmd": "unblock", "user_id": "4"})) {
            ImRequest::Unblock(r) => assert_eq!(r.path.user_id.get(), 4),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            refusal(r#"{"cmd":"block"}"#),
            "block: missing field `user_id`"
        );
        assert!(refusal(r#"{"cmd":"unblock","user_id":0}"#).contains("positive integer"));
        assert!(refusal(r#"{"cmd":"block","user_id":true}"#).starts_with("block: "));
    }

    #[test]
    fn delete_account_needs_a_password_and_never_echoes_it() {
        match request(serde_json::json!({"cmd": "delete_account", "password": "correct horse"})) {
            ImRequest::DeleteMe(r) => assert_eq!(r.body.password.as_str(), "correct horse"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            refusal(r#"{"cmd":"delete_account"}"#),
            "delete_account: missing field `password`"
        );
        assert!(refusal(r#"{"cmd":"delete_account","password":""}"#).contains("1 to 1024 bytes"));
        let long = format!(
            r#"{{"cmd":"delete_account","password":"{}"}}"#,
            "p".repeat(1025)
        );
        let e = refusal(&long);
        assert!(e.contains("1 to 1024 bytes") && !e.contains("ppp"), "{e}");
        // The HTTP route's name is not a command.
        assert!(refusal(r#"{"cmd":"delete_me","password":"x"}"#).contains("unknown command"));
    }

    #[test]
    fn message_box_commands_decode_into_the_message_box_operations() {
        match request(serde_json::json!({"cmd": "notifications", "page": "2", "page_size": 5})) {
            ImRequest::ListNotifications(r) => {
                assert_eq!((r.query.page, r.query.page_size), (Some(2), Some(5)));
            }
            other => panic!("{other:?}"),
        }
        match request(serde_json::json!({"cmd": "read_notifications", "ids": [3, 4]})) {
            ImRequest::ReadNotifications(r) => assert_eq!(r.body.ids, Some(vec![3, 4])),
            other => panic!("{other:?}"),
        }
        match request(serde_json::json!({"cmd": "read_notifications"})) {
            ImRequest::ReadNotifications(r) => assert_eq!(r.body.ids, None),
            other => panic!("{other:?}"),
        }
        assert!(
            refusal(r#"{"cmd":"read_notifications","ids":3}"#).starts_with("read_notifications: ")
        );
        assert!(
            refusal(r#"{"cmd":"read_notifications","ids":["x"]}"#)
                .starts_with("read_notifications: ")
        );
        assert!(refusal(r#"{"cmd":"notifications","page":"one"}"#).starts_with("notifications: "));
    }
}
