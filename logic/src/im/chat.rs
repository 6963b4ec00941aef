//! Conversations and messages. A conversation is `u-<smaller id>-<larger id>` (private) or `g-<group id>`.
//! Every message takes the conversation's next seq inside one transaction (the counter row is locked,
//! so seqs are gapless and increasing); `(conversation, sender, client_msg_id)` is unique, so a resend
//! returns the stored message instead of a second copy. Each user's `read_seq` gives the unread count;
//! `min_seq` hides a group's history from before the user joined.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::FromRow;
use utoipa::ToSchema;

use super::accounts::check_image_ref;
use super::args::{Args, text};
use super::db::now_ms;
use super::error::{ImError, is_unique_violation};
use super::events::{Event, OP_MESSAGE, OP_READ_RECEIPT};
use super::groups::Group;
use super::users::PublicUser;
use super::{Im, ImResult, Reply};

macro_rules! message_columns {
    () => {
        "id, conversation_id, seq, sender_id, client_msg_id, kind, content, created_at"
    };
}
const MAX_TEXT: usize = 5000;
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 200;

#[derive(Debug, Clone, FromRow, Serialize, ToSchema)]
pub struct Message {
    pub id: i64,
    pub conversation_id: String,
    pub seq: i64,
    pub sender_id: i64,
    pub client_msg_id: String,
    /// text, image or file
    #[serde(rename = "type")]
    #[sqlx(rename = "kind")]
    pub kind: String,
    pub content: String,
    pub created_at: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SendReq {
    /// The client's id for this message (1 to 64 characters): a resend with the same id returns the
    /// stored message.
    pub client_msg_id: String,
    /// text (default), image or file
    #[serde(rename = "type", default = "text_kind")]
    pub kind: String,
    /// The text, or for image and file an upload path (/v1/uploads/…) or URL.
    pub content: String,
}

fn text_kind() -> String {
    "text".into()
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReadReq {
    pub seq: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Conversation {
    pub id: String,
    /// private or group
    #[serde(rename = "type")]
    pub kind: String,
    pub peer: Option<PublicUser>,
    pub group: Option<Group>,
    pub last_seq: i64,
    pub read_seq: i64,
    pub unread: i64,
    pub last_message: Option<Message>,
    pub updated_at: i64,
}

/// A parsed conversation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cid {
    Private(i64, i64),
    Group(i64),
}

impl Cid {
    pub fn parse(s: &str) -> Result<Cid, ImError> {
        let bad = || {
            ImError::invalid(format!(
                "conversation id must be u-<id>-<id> or g-<id>, got {s:?}"
            ))
        };
        let id = |p: &str| {
            p.parse::<i64>()
                .ok()
                .filter(|n| *n > 0 && p == n.to_string())
        };
        if let Some(rest) = s.strip_prefix("g-") {
            return id(rest).map(Cid::Group).ok_or_else(bad);
        }
        let rest = s.strip_prefix("u-").ok_or_else(bad)?;
        let (a, b) = rest.split_once('-').ok_or_else(bad)?;
        match (id(a), id(b)) {
            (Some(a), Some(b)) if a < b => Ok(Cid::Private(a, b)),
            _ => Err(bad()),
        }
    }

    pub fn private(a: i64, b: i64) -> String {
        format!("u-{}-{}", a.min(b), a.max(b))
    }
}

impl Im {
    /// Checks that `me` may read conversation `cid`; returns the first seq they may see past.
    async fn readable(&self, me: i64, cid: Cid) -> Result<i64, ImError> {
        match cid {
            Cid::Private(a, b) => {
                if me != a && me != b {
                    return Err(ImError::not_found("no such conversation"));
                }
                Ok(0)
            }
            Cid::Group(g) => {
                self.group_row(g).await?;
                if self.membership(g, me).await?.is_none() {
                    return Err(ImError::forbidden("you are not a member of this group"));
                }
                Ok(sqlx::query_scalar::<_, i64>(
                    "SELECT min_seq FROM user_conversations WHERE user_id = $1 AND conversation_id = $2",
                )
                .bind(me)
                .bind(format!("g-{g}"))
                .fetch_optional(&self.db.pool)
                .await?
                .unwrap_or(0))
            }
        }
    }

    /// Checks that `me` may post to `cid`; returns the recipients of the message event.
    async fn postable(&self, me: i64, cid: Cid) -> Result<Vec<i64>, ImError> {
        match cid {
            Cid::Private(a, b) => {
                if me != a && me != b {
                    return Err(ImError::not_found("no such conversation"));
                }
                let peer = if me == a { b } else { a };
                // A friend exists (the friendship references them): one query on the usual path.
                if !self.are_friends(me, peer).await? {
                    self.user_or_404(peer).await?;
                    if self.settings.private_chat_friends_only {
                        return Err(ImError::forbidden("you can only message your friends"));
                    }
                }
                Ok(vec![a, b])
            }
            Cid::Group(g) => {
                let group = self.group_row(g).await?;
                let (role, muted_until) = self
                    .membership(g, me)
                    .await?
                    .ok_or_else(|| ImError::forbidden("you are not a member of this group"))?;
                let manager = role == "owner" || role == "admin";
                if muted_until > now_ms() {
                    return Err(ImError::forbidden(format!(
                        "you are muted in this group until {muted_until}"
                    )));
                }
                if group.all_muted != 0 && !manager {
                    return Err(ImError::forbidden(
                        "the group is muted: only the owner and admins may speak",
                    ));
                }
                self.member_ids(g).await
            }
        }
    }

    pub(crate) async fn send(&self, me: i64, a: &Args) -> ImResult {
        let cid_str = a.path_str("cid")?.to_string();
        let cid = Cid::parse(&cid_str)?;
        let req: SendReq = a.body()?;
        let client_msg_id = text("client_msg_id", &req.client_msg_id, 1, 64)?;
        let content = match req.kind.as_str() {
            "text" => {
                if req.content.trim().is_empty() || req.content.chars().count() > MAX_TEXT {
                    return Err(ImError::invalid(format!(
                        "text content must be 1 to {MAX_TEXT} characters"
                    )));
                }
                if req
                    .content
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t')
                {
                    return Err(ImError::invalid(
                        "text content must not contain control characters",
                    ));
                }
                req.content
            }
            "image" | "file" => {
                let c = check_image_ref("content", &req.content)?;
                if c.is_empty() {
                    return Err(ImError::invalid("content must be an upload path or URL"));
                }
                c
            }
            other => {
                return Err(ImError::invalid(format!(
                    "type must be text, image or file, got {other:?}"
                )));
            }
        };
        let recipients = self.postable(me, cid).await?;
        let (message, created) = self
            .store_message(me, &cid_str, cid, &client_msg_id, &req.kind, &content)
            .await?;
        let reply = Reply::json(if created { 201 } else { 200 }, &message);
        Ok(if created {
            reply.event(Event::new(recipients, OP_MESSAGE, "message", &message))
        } else {
            reply
        })
    }

    /// Stores a message with the conversation's next seq; `(message, false)` when this client_msg_id was
    /// already stored.
    async fn store_message(
        &self,
        me: i64,
        cid_str: &str,
        cid: Cid,
        client_msg_id: &str,
        kind: &str,
        content: &str,
    ) -> Result<(Message, bool), ImError> {
        let now = now_ms();
        let mut tx = self.db.pool.begin().await?;
        // Takes the next seq and locks the counter row until commit: concurrent senders to this
        // conversation queue here, so seqs are gapless and increasing.
        let seq = sqlx::query_scalar::<_, i64>(
            "INSERT INTO conversations (id, last_seq, updated_at) VALUES ($1, 1, $2) \
             ON CONFLICT (id) DO UPDATE SET last_seq = conversations.last_seq + 1, updated_at = $2 \
             RETURNING last_seq",
        )
        .bind(cid_str)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let inserted = sqlx::query_as::<_, Message>(concat!(
            "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, kind, content, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
            message_columns!()
        ))
        .bind(cid_str)
        .bind(seq)
        .bind(me)
        .bind(client_msg_id)
        .bind(kind)
        .bind(content)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let message = match inserted {
            Ok(m) => m,
            // A resend: this client_msg_id is stored. Rolling back returns the seq, so no gap.
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await?;
                let m = sqlx::query_as::<_, Message>(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages WHERE conversation_id = $1 AND sender_id = $2 AND client_msg_id = $3"
                ))
                .bind(cid_str)
                .bind(me)
                .bind(client_msg_id)
                .fetch_one(&self.db.pool)
                .await?;
                return Ok((m, false));
            }
            Err(e) => return Err(e.into()),
        };
        // Sending reads everything before it; a private chat's two views exist from its first message.
        match cid {
            Cid::Private(a, b) => {
                let peer = if me == a { b } else { a };
                sqlx::query(
                    "INSERT INTO user_conversations (user_id, conversation_id, read_seq) VALUES ($1, $3, $4), ($2, $3, 0) \
                     ON CONFLICT (user_id, conversation_id) DO UPDATE SET read_seq = \
                     CASE WHEN excluded.read_seq > user_conversations.read_seq THEN excluded.read_seq \
                     ELSE user_conversations.read_seq END",
                )
                .bind(me)
                .bind(peer)
                .bind(cid_str)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            }
            Cid::Group(_) => {
                sqlx::query(
                    "UPDATE user_conversations SET read_seq = $3 \
                     WHERE user_id = $1 AND conversation_id = $2 AND read_seq < $3",
                )
                .bind(me)
                .bind(cid_str)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok((message, true))
    }

    pub(crate) async fn messages(&self, me: i64, a: &Args) -> ImResult {
        let cid_str = a.path_str("cid")?.to_string();
        let cid = Cid::parse(&cid_str)?;
        let min_seq = self.readable(me, cid).await?;
        let limit = a.query_i64("limit")?.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ImError::invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        let after = a.query_i64("after_seq")?;
        let before = a.query_i64("before_seq")?;
        if after.is_some() && before.is_some() {
            return Err(ImError::invalid("give after_seq or before_seq, not both"));
        }
        let mut rows = if let Some(after) = after {
            sqlx::query_as::<_, Message>(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation_id = $1 AND seq > $2 AND seq > $3 \
                 ORDER BY seq ASC LIMIT $4"
            ))
            .bind(&cid_str)
            .bind(after)
            .bind(min_seq)
            .bind(limit + 1)
            .fetch_all(&self.db.pool)
            .await?
        } else {
            sqlx::query_as::<_, Message>(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation_id = $1 AND seq < $2 AND seq > $3 \
                 ORDER BY seq DESC LIMIT $4"
            ))
            .bind(&cid_str)
            .bind(before.unwrap_or(i64::MAX))
            .bind(min_seq)
            .bind(limit + 1)
            .fetch_all(&self.db.pool)
            .await?
        };
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        if after.is_none() {
            rows.reverse();
        }
        let last_seq = self.last_seq(&cid_str).await?;
        Ok(Reply::ok(
            json!({"conversation_id": cid_str, "messages": rows, "has_more": has_more, "last_seq": last_seq}),
        ))
    }

    async fn last_seq(&self, cid: &str) -> Result<i64, ImError> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT last_seq FROM conversations WHERE id = $1")
                .bind(cid)
                .fetch_optional(&self.db.pool)
                .await?
                .unwrap_or(0),
        )
    }

    pub(crate) async fn read(&self, me: i64, a: &Args) -> ImResult {
        let cid_str = a.path_str("cid")?.to_string();
        let cid = Cid::parse(&cid_str)?;
        self.readable(me, cid).await?;
        let req: ReadReq = a.body()?;
        let last = self.last_seq(&cid_str).await?;
        if req.seq < 0 || req.seq > last {
            return Err(ImError::invalid(format!(
                "seq must be between 0 and the last seq {last}"
            )));
        }
        if last == 0 {
            return Ok(Reply::ok(
                json!({"conversation_id": cid_str, "read_seq": 0, "unread": 0}),
            ));
        }
        // A group member's row exists from their join; only private chats get theirs on first read.
        if let Cid::Private(..) = cid {
            sqlx::query(
            "INSERT INTO user_conversations (user_id, conversation_id) VALUES ($1, $2) ON CONFLICT (user_id, conversation_id) DO NOTHING",
        )
            .bind(me)
            .bind(&cid_str)
            .execute(&self.db.pool)
            .await?;
        }
        sqlx::query(
            "UPDATE user_conversations SET read_seq = $3 WHERE user_id = $1 AND conversation_id = $2 AND read_seq < $3",
        )
        .bind(me)
        .bind(&cid_str)
        .bind(req.seq)
        .execute(&self.db.pool)
        .await?;
        let read_seq = sqlx::query_scalar::<_, i64>(
            "SELECT read_seq FROM user_conversations WHERE user_id = $1 AND conversation_id = $2",
        )
        .bind(me)
        .bind(&cid_str)
        .fetch_optional(&self.db.pool)
        .await?
        .unwrap_or(0);
        let receipt = json!({"conversation_id": cid_str, "user_id": me, "seq": read_seq});
        let to = match cid {
            // Private chats tell the other party (a read receipt) and my other devices.
            Cid::Private(x, y) => vec![x, y],
            // Group reads sync my other devices only.
            Cid::Group(_) => vec![me],
        };
        Ok(Reply::ok(json!({"conversation_id": cid_str, "read_seq": read_seq, "unread": (last - read_seq).max(0)}))
            .event(Event::new(to, OP_READ_RECEIPT, "read", receipt)))
    }

    pub(crate) async fn conversations(&self, me: i64) -> ImResult {
        #[derive(FromRow)]
        struct Row {
            id: String,
            last_seq: i64,
            read_seq: i64,
            updated_at: i64,
            m_id: Option<i64>,
            m_sender: Option<i64>,
            m_client_id: Option<String>,
            m_kind: Option<String>,
            m_content: Option<String>,
            m_created: Option<i64>,
        }
        // Each conversation with its last message in one query (a group member does not see messages
        // from before they joined).
        let rows = sqlx::query_as::<_, Row>(
            "SELECT c.id, c.last_seq, uc.read_seq, c.updated_at, m.id AS m_id, m.sender_id AS m_sender, \
             m.client_msg_id AS m_client_id, m.kind AS m_kind, m.content AS m_content, m.created_at AS m_created \
             FROM user_conversations uc JOIN conversations c ON c.id = uc.conversation_id \
             LEFT JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq AND c.last_seq > uc.min_seq \
             WHERE uc.user_id = $1 ORDER BY c.updated_at DESC, c.id",
        )
        .bind(me)
        .fetch_all(&self.db.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut peers = Vec::new();
        for r in rows {
            let Ok(cid) = Cid::parse(&r.id) else { continue };
            let last_message = match (
                r.m_id,
                r.m_sender,
                r.m_client_id,
                r.m_kind,
                r.m_content,
                r.m_created,
            ) {
                (
                    Some(id),
                    Some(sender_id),
                    Some(client_msg_id),
                    Some(kind),
                    Some(content),
                    Some(created_at),
                ) => Some(Message {
                    id,
                    conversation_id: r.id.clone(),
                    seq: r.last_seq,
                    sender_id,
                    client_msg_id,
                    kind,
                    content,
                    created_at,
                }),
                _ => None,
            };
            let (id, last_seq, read_seq, updated_at) = (r.id, r.last_seq, r.read_seq, r.updated_at);
            let (kind, peer, group) = match cid {
                Cid::Private(a, b) => {
                    let other = if a == me { b } else { a };
                    peers.push(other);
                    (
                        "private",
                        self.public_users(me, &[other]).await?.pop(),
                        None,
                    )
                }
                Cid::Group(g) => match self.group_row(g).await {
                    Ok(row) => {
                        let view = self.group_view(row, me).await?;
                        if view.my_role.is_none() {
                            continue;
                        }
                        ("group", None, Some(view))
                    }
                    Err(_) => continue,
                },
            };
            out.push(Conversation {
                id,
                kind: kind.into(),
                peer,
                group,
                last_seq,
                read_seq,
                unread: (last_seq - read_seq).max(0),
                last_message,
                updated_at,
            });
        }
        let online = self.online(&peers).await;
        for c in &mut out {
            if let Some(p) = &mut c.peer {
                p.online = Some(online.contains(&p.id));
            }
        }
        Ok(Reply::ok(json!({"conversations": out})))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_ids_parse_strictly() {
        assert_eq!(Cid::parse("u-1-2"), Ok(Cid::Private(1, 2)));
        assert_eq!(Cid::parse("g-7"), Ok(Cid::Group(7)));
        assert_eq!(Cid::private(9, 3), "u-3-9");
        for bad in [
            "u-2-1", "u-1-1", "u-1", "g-0", "g--1", "g-01", "x-1", "u-1-2-3", "", "g-a",
        ] {
            assert!(Cid::parse(bad).is_err(), "{bad}");
        }
    }
}
