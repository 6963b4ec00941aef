//! The path and query parameters of the IM routes, each a typed struct decoded from the request
//! (the api uses axum's `Path` and `Query` extractors with these types), and described for the
//! OpenAPI document by [`Params::params`].

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::values::{ConversationId, Emoji, Id, opt_int};

/// One documented parameter.
pub struct ParamDoc {
    pub name: &'static str,
    pub required: bool,
    pub description: &'static str,
    pub schema: Value,
}

/// Parameters a route takes from its path or its query string.
pub trait Params {
    fn params() -> Vec<ParamDoc>;
}

fn id_schema() -> Value {
    json!({"type": "integer", "format": "int64", "minimum": 1})
}

fn cid_schema() -> Value {
    json!({"type": "string", "pattern": "^(u-[1-9][0-9]*-[1-9][0-9]*|g-[1-9][0-9]*)$", "maxLength": 41})
}

fn p(name: &'static str, required: bool, description: &'static str, schema: Value) -> ParamDoc {
    ParamDoc {
        name,
        required,
        description,
        schema,
    }
}

/// No parameters. Unknown query parameters are ignored, as they always were.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NoParams {}

impl Params for NoParams {
    fn params() -> Vec<ParamDoc> {
        Vec::new()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdPath {
    pub id: Id,
}

impl Params for IdPath {
    fn params() -> Vec<ParamDoc> {
        vec![p("id", true, "", id_schema())]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserIdPath {
    pub user_id: Id,
}

impl Params for UserIdPath {
    fn params() -> Vec<ParamDoc> {
        vec![p("user_id", true, "", id_schema())]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadPath {
    pub id: String,
}

impl Params for UploadPath {
    fn params() -> Vec<ParamDoc> {
        vec![p(
            "id",
            true,
            "32 hex digits",
            json!({"type": "string", "pattern": "^[0-9a-fA-F]{32}$"}),
        )]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CidPath {
    pub cid: ConversationId,
}

impl Params for CidPath {
    fn params() -> Vec<ParamDoc> {
        vec![p("cid", true, "conversation id", cid_schema())]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessagePath {
    pub cid: ConversationId,
    pub seq: Id,
}

impl Params for MessagePath {
    fn params() -> Vec<ParamDoc> {
        vec![
            p("cid", true, "conversation id", cid_schema()),
            p("seq", true, "the message's seq", id_schema()),
        ]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReactionPath {
    pub cid: ConversationId,
    pub seq: Id,
    pub emoji: Emoji,
}

impl Params for ReactionPath {
    fn params() -> Vec<ParamDoc> {
        vec![
            p("cid", true, "conversation id", cid_schema()),
            p("seq", true, "the message's seq", id_schema()),
            p(
                "emoji",
                true,
                "one emoji, percent-encoded",
                json!({"type": "string", "minLength": 1, "maxLength": 8}),
            ),
        ]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberPath {
    pub id: Id,
    pub user_id: Id,
}

impl Params for MemberPath {
    fn params() -> Vec<ParamDoc> {
        vec![
            p("id", true, "", id_schema()),
            p("user_id", true, "", id_schema()),
        ]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequestPath {
    pub id: Id,
    pub request_id: Id,
}

impl Params for JoinRequestPath {
    fn params() -> Vec<ParamDoc> {
        vec![
            p("id", true, "", id_schema()),
            p("request_id", true, "", id_schema()),
        ]
    }
}

fn page_params() -> Vec<ParamDoc> {
    vec![
        p(
            "page",
            false,
            "from 1",
            json!({"type": "integer", "minimum": 1, "maximum": 10000}),
        ),
        p(
            "page_size",
            false,
            "1 to 100, default 20",
            json!({"type": "integer", "minimum": 1, "maximum": 100}),
        ),
    ]
}

/// `page` (from 1) and `page_size` (1 to 100, default 20).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PageQuery {
    #[serde(default, deserialize_with = "opt_int")]
    pub page: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    pub page_size: Option<i64>,
}

impl Params for PageQuery {
    fn params() -> Vec<ParamDoc> {
        page_params()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default, deserialize_with = "opt_int")]
    pub page: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    pub page_size: Option<i64>,
}

impl Params for SearchQuery {
    fn params() -> Vec<ParamDoc> {
        let mut v = vec![p(
            "q",
            true,
            "1 to 64 characters",
            json!({"type": "string", "minLength": 1, "maxLength": 64}),
        )];
        v.extend(page_params());
        v
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageSearchQuery {
    #[serde(default)]
    pub q: String,
    /// Only this conversation.
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    pub page: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    pub page_size: Option<i64>,
}

impl Params for MessageSearchQuery {
    fn params() -> Vec<ParamDoc> {
        let mut v = vec![
            p(
                "q",
                true,
                "words to find (1 to 64 characters)",
                json!({"type": "string", "minLength": 1, "maxLength": 64}),
            ),
            p(
                "conversation_id",
                false,
                "only this conversation",
                cid_schema(),
            ),
        ];
        v.extend(page_params());
        v
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistoryQuery {
    #[serde(default, deserialize_with = "opt_int")]
    pub before_seq: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    pub after_seq: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    pub limit: Option<i64>,
}

impl Params for HistoryQuery {
    fn params() -> Vec<ParamDoc> {
        vec![
            p(
                "before_seq",
                false,
                "messages with a smaller seq (newest first page when omitted)",
                json!({"type": "integer", "minimum": 0}),
            ),
            p(
                "after_seq",
                false,
                "messages with a larger seq (for syncing after a reconnect)",
                json!({"type": "integer", "minimum": 0}),
            ),
            p(
                "limit",
                false,
                "1 to 200, default 50",
                json!({"type": "integer", "minimum": 1, "maximum": 200}),
            ),
        ]
    }
}

/// Keyset paging: `limit` items after `cursor` (the previous page's `next_cursor`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CursorQuery {
    #[serde(default, deserialize_with = "opt_int")]
    pub limit: Option<i64>,
    #[serde(default)]
    pub cursor: Option<String>,
}

impl Params for CursorQuery {
    fn params() -> Vec<ParamDoc> {
        vec![
            p(
                "limit",
                false,
                "1 to 500, default 100",
                json!({"type": "integer", "minimum": 1, "maximum": 500}),
            ),
            p(
                "cursor",
                false,
                "the previous page's next_cursor",
                json!({"type": "string", "maxLength": 200}),
            ),
        ]
    }
}
