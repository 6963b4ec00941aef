//! Server-side message search over the conversations the caller can read (private chats they are in,
//! groups they are a member of, from their join on), ranked, paged, with highlights. PostgreSQL uses
//! full-text search (a generated `tsvector` column with a GIN index, the `simple` configuration);
//! SQLite uses an FTS5 table kept in step by triggers. Both index the current text of text messages
//! that were not recalled. Every word of the query must match (words are letters and digits; the
//! query language of either engine is never exposed). Neither tokenizer splits CJK text into words.

use imcloud_common::im::chat::{Highlight, Message, SearchHit, SearchMessages};
use imcloud_common::im::operations::SearchMessagesOp;
use imcloud_common::im::values::ConversationId;
use sqlx::FromRow;

use super::db::Engine;
use super::error::ImError;
use super::paging;
use super::rows::MessageRow;
use super::{Caller, Done, Im, ImResult};

const START: char = '\u{e000}';
const STOP: char = '\u{e001}';

/// The query's words (letters and digits), at most 16.
pub fn words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(str::to_lowercase)
        .collect()
}

/// Splits a marked snippet into plain text and the marked ranges (in characters).
pub fn highlights(marked: &str) -> (String, Vec<Highlight>) {
    let mut text = String::with_capacity(marked.len());
    let mut out = Vec::new();
    let (mut n, mut start) = (0usize, None);
    for c in marked.chars() {
        match c {
            START => start = Some(n),
            STOP => {
                if let Some(s) = start.take() {
                    out.push(Highlight { start: s, end: n });
                }
            }
            c => {
                text.push(c);
                n += 1;
            }
        }
    }
    (text, out)
}

#[derive(FromRow)]
struct Row {
    snippet: String,
    #[sqlx(flatten)]
    m: MessageRow,
}

impl Im {
    pub(crate) async fn search_messages(
        &self,
        c: &Caller<'_>,
        r: SearchMessagesOp,
    ) -> ImResult<SearchMessages> {
        let q = r.query;
        let ws = words(&q.q);
        if q.q.trim().is_empty() || q.q.chars().count() > 64 {
            return Err(ImError::invalid("q must be 1 to 64 characters"));
        }
        if ws.is_empty() {
            return Err(ImError::invalid("q has no words to search for"));
        }
        let only = match q.conversation_id.as_deref().map(str::trim) {
            None | Some("") => String::new(),
            Some(cid) => {
                let cid = ConversationId::parse(cid).map_err(ImError::invalid)?;
                self.readable(c.me, cid).await?;
                cid.to_string()
            }
        };
        let (limit, offset) = paging::page(q.page, q.page_size)?;
        let cols = "m.id, m.conversation_id, m.seq, m.sender_id, m.client_msg_id, m.kind, m.content, m.created_at, \
                    m.ref_seq, m.edited_at, m.recalled";
        let rows = match self.db.engine {
            Engine::Postgres => {
                let sql = format!(
                    "SELECT {cols}, ts_headline('simple', m.content, plainto_tsquery('simple', $2), $6) AS snippet \
                     FROM messages m JOIN user_conversations uc ON uc.conversation_id = m.conversation_id \
                     AND uc.user_id = $1 AND m.seq > uc.min_seq \
                     WHERE m.search @@ plainto_tsquery('simple', $2) AND ($3 = '' OR m.conversation_id = $3) \
                     ORDER BY ts_rank(m.search, plainto_tsquery('simple', $2)) DESC, m.id DESC LIMIT $4 OFFSET $5"
                );
                sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql))
                    .bind(c.me)
                    .bind(ws.join(" "))
                    .bind(&only)
                    .bind(limit)
                    .bind(offset)
                    .bind(format!(
                        "StartSel={START}, StopSel={STOP}, MaxFragments=1, MaxWords=24, MinWords=8"
                    ))
                    .fetch_all(&self.db.pool)
                    .await?
            }
            Engine::Sqlite => {
                let sql = format!(
                    "SELECT {cols}, snippet(messages_fts, 0, char(57344), char(57345), '…', 24) AS snippet \
                     FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid \
                     JOIN user_conversations uc ON uc.conversation_id = m.conversation_id \
                     AND uc.user_id = $1 AND m.seq > uc.min_seq \
                     WHERE messages_fts MATCH $2 AND ($3 = '' OR m.conversation_id = $3) \
                     ORDER BY bm25(messages_fts), m.id DESC LIMIT $4 OFFSET $5"
                );
                // Each word quoted: FTS5's query syntax never sees the user's text.
                let fts: Vec<String> = ws.iter().map(|w| format!("\"{w}\"")).collect();
                sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql))
                    .bind(c.me)
                    .bind(fts.join(" "))
                    .bind(&only)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&self.db.pool)
                    .await?
            }
        };
        let hits = rows
            .into_iter()
            .map(|r| {
                let (snippet, highlights) = highlights(&r.snippet);
                SearchHit {
                    message: Message::from(r.m),
                    snippet,
                    highlights,
                }
            })
            .collect();
        Ok(Done::ok(SearchMessages { hits }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_become_words_and_snippets_become_ranges() {
        assert_eq!(
            words("Hello, \"world\" OR-x*"),
            vec!["hello", "world", "or", "x"]
        );
        assert!(words("*** \"").is_empty());
        let (text, h) = highlights("say \u{e000}hello\u{e001} to \u{e000}Bob\u{e001}");
        assert_eq!(text, "say hello to Bob");
        assert_eq!((h[0].start, h[0].end, h[1].start, h[1].end), (4, 9, 13, 16));
    }
}
