//! Conversations and messages. A conversation is `u-<smaller id>-<larger id>` (private) or
//! `g-<group id>`. Every message takes the conversation's next seq inside one transaction (the counter
//! row is locked, so seqs are gapless and increasing); `(conversation, sender, client_msg_id)` is
//! unique, so a resend returns the stored message instead of a second copy. Edits, recalls and
//! reactions are messages of their own kinds in the same seq stream (`ref_seq` names the message they
//! change), so a device that syncs by seq learns of them; the changed message is updated in the same
//! transaction (its `edited_at`, `recalled`, and the current content), never silently.
//! On PostgreSQL a message that changes no other is stored by [`super::send_batches`]: concurrent
//! sends to one conversation share one statement and one commit.
//! Each user's `read_seq` gives the unread count (messages from others; changes do not count);
//! `min_seq` hides a group's history from before the user joined.

use std::collections::{BTreeMap, HashMap};

use imcloud_common::im::chat::*;
use imcloud_common::im::events::{LiveEvent, ReadEvent};
use imcloud_common::im::operations::*;
use imcloud_common::im::params::ReactionPath;
use imcloud_common::im::values::{ConversationId, MessageKind, SendKind};
use sqlx::FromRow;

use super::db::{Engine, now_ms};
use super::error::{ImError, is_unique_violation};
use super::group_rules;
use super::groups::group_conversation;
use super::paging;
use super::rate_limits::refuse;
use super::rows::{MessageRow, message_columns};
use super::send_batches::{NewMessage, stored_message};
use super::webhooks::Verdict;
use super::{Caller, Done, Event, Im, ImResult};

const MAX_TEXT: usize = 5000;
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 200;
/// Distinct emoji one user may put on one message.
const MAX_REACTIONS_PER_USER: i64 = 20;

/// What a stored change does to the message it names, in the same transaction.
enum Apply<'a> {
    Nothing,
    Edit(&'a str),
    Recall,
}

/// Checks a message's content for its kind.
fn check_content(kind: SendKind, content: &str) -> Result<String, ImError> {
    match kind {
        SendKind::Text => check_text(content),
        SendKind::Image | SendKind::File => {
            let c = imcloud_common::im::values::ImageRef::parse(content)
                .map_err(|e| ImError::invalid(format!("content {e}")))?;
            if c.is_empty() {
                return Err(ImError::invalid("content must be an upload path or URL"));
            }
            Ok(c.as_str().to_string())
        }
    }
}

fn check_text(content: &str) -> Result<String, ImError> {
    if content.trim().is_empty() || content.chars().count() > MAX_TEXT {
        return Err(ImError::invalid(format!(
            "text content must be 1 to {MAX_TEXT} characters"
        )));
    }
    if content
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ImError::invalid(
            "text content must not contain control characters",
        ));
    }
    Ok(content.to_string())
}

impl Im {
    /// Checks that `me` may read conversation `cid`; returns the first seq they may see past.
    pub(crate) async fn readable(&self, me: i64, cid: ConversationId) -> Result<i64, ImError> {
        match cid {
            ConversationId::Private(a, b) => {
                if me != a && me != b {
                    return Err(ImError::not_found("no such conversation"));
                }
                Ok(0)
            }
            ConversationId::Group(g) => {
                self.group_row(g).await?;
                if self.membership(g, me).await?.is_none() {
                    return Err(ImError::forbidden("you are not a member of this group"));
                }
                Ok(sqlx::query_scalar::<_, i64>(
                    "SELECT min_seq FROM user_conversations WHERE user_id = $1 AND conversation_id = $2",
                )
                .bind(me)
                .bind(group_conversation(g))
                .fetch_optional(&self.db.pool)
                .await?
                .unwrap_or(0))
            }
        }
    }

    /// Checks that `me` may post to `cid`; returns the recipients of the message event.
    pub(crate) async fn postable(&self, me: i64, cid: ConversationId) -> Result<Vec<i64>, ImError> {
        match cid {
            ConversationId::Private(a, b) => {
                let Some(peer) = cid.peer_of(me) else {
                    return Err(ImError::not_found("no such conversation"));
                };
                // A friend exists (the friendship references them): one query on the usual path.
                let (friends, blocked) = self.friends_and_blocked(me, peer).await?;
                if !friends {
                    self.live_user_or_404(peer).await?;
                    if self.settings.private_chat_friends_only {
                        return Err(ImError::forbidden("you can only message your friends"));
                    }
                }
                if blocked {
                    return Err(ImError::forbidden("you cannot message this user (blocked)"));
                }
                Ok(vec![a, b])
            }
            ConversationId::Group(g) => {
                let post = self.group_post(g, me).await?;
                let (role, muted_until) = post
                    .me
                    .ok_or_else(|| ImError::forbidden("you are not a member of this group"))?;
                if !group_rules::may_speak(role, muted_until, false, now_ms()) {
                    return Err(ImError::forbidden(format!(
                        "you are muted in this group until {muted_until}"
                    )));
                }
                if !group_rules::may_speak(role, 0, post.all_muted, now_ms()) {
                    return Err(ImError::forbidden(
                        "the group is muted: only the owner and admins may speak",
                    ));
                }
                Ok(post.members)
            }
        }
    }

    /// One message (or change) per user per tick of `IMCLOUD_IM_SENDS_PER_SEC`.
    fn check_send_rate(&self, me: i64) -> Result<(), ImError> {
        self.send_buckets.take(me).map_err(|wait| {
            refuse(
                "sends",
                format!(
                    "at most {} messages a second; slow down",
                    self.settings.sends_per_sec
                ),
                wait,
            )
        })
    }

    pub(crate) async fn send(&self, c: &Caller<'_>, r: SendMessage) -> ImResult<Message> {
        let me = c.me;
        let cid = r.path.cid;
        let req = r.body;
        let mut content = check_content(req.kind, &req.content)?;
        self.check_send_rate(me)?;
        let recipients = self.postable(me, cid).await?;
        if let Some(w) = &self.webhooks {
            match w.before_send(me, cid, req.kind, &content).await {
                Verdict::Allow => {}
                Verdict::Rewrite(new) => content = check_content(req.kind, &new)?,
                Verdict::Reject(reason) => {
                    return Err(ImError::forbidden(format!("refused: {reason}")));
                }
                Verdict::Unavailable => {
                    return Err(ImError::unavailable(
                        "the message could not be checked; retry",
                    ));
                }
            }
        }
        let (message, created) = self
            .store_message(
                me,
                cid,
                req.client_msg_id.as_str(),
                req.kind.into(),
                &content,
                None,
                Apply::Nothing,
            )
            .await?;
        if !created {
            return Ok(Done::ok(message));
        }
        self.after_send(&message, &recipients).await;
        Ok(Done::created(message.clone()).event(recipients, LiveEvent::Message(message)))
    }

    /// The after-send and offline webhooks of a stored message.
    async fn after_send(&self, message: &Message, recipients: &[i64]) {
        let Some(w) = &self.webhooks else { return };
        w.after_send(message, recipients);
        if w.wants_offline() {
            let others: Vec<i64> = recipients
                .iter()
                .copied()
                .filter(|r| *r != message.sender_id)
                .collect();
            let online = self.online(&others).await;
            let offline: Vec<i64> = others.into_iter().filter(|r| !online.contains(r)).collect();
            if !offline.is_empty() {
                w.offline(message, &offline);
            }
        }
    }

    /// Stores a message with the conversation's next seq; `(message, false)` when this client_msg_id was
    /// already stored. `apply` changes the message at `ref_seq` in the same transaction.
    #[allow(clippy::too_many_arguments)]
    async fn store_message(
        &self,
        me: i64,
        cid: ConversationId,
        client_msg_id: &str,
        kind: MessageKind,
        content: &str,
        ref_seq: Option<i64>,
        apply: Apply<'_>,
    ) -> Result<(Message, bool), ImError> {
        if self.db.engine == Engine::Postgres && matches!(apply, Apply::Nothing) {
            let message = NewMessage {
                sender_id: me,
                client_msg_id: client_msg_id.to_string(),
                kind,
                content: content.to_string(),
                ref_seq,
            };
            return self.send_batches.store(cid, message).await;
        }
        let now = now_ms();
        let cid_str = cid.to_string();
        let mut tx = self.db.pool.begin().await?;
        // Takes the next seq and locks the counter row until commit: concurrent senders to this
        // conversation queue here, so seqs are gapless and increasing.
        let seq = sqlx::query_scalar::<_, i64>(
            "INSERT INTO conversations (id, last_seq, updated_at) VALUES ($1, 1, $2) \
             ON CONFLICT (id) DO UPDATE SET last_seq = conversations.last_seq + 1, updated_at = $2 \
             RETURNING last_seq",
        )
        .bind(&cid_str)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let inserted = sqlx::query_as::<_, MessageRow>(concat!(
            "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, kind, content, created_at, ref_seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
            message_columns!()
        ))
        .bind(&cid_str)
        .bind(seq)
        .bind(me)
        .bind(client_msg_id)
        .bind(kind.as_str())
        .bind(content)
        .bind(now)
        .bind(ref_seq)
        .fetch_one(&mut *tx)
        .await;
        let message = match inserted {
            Ok(m) => Message::from(m),
            // A resend: this client_msg_id is stored. Rolling back returns the seq, so no gap.
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await?;
                return Ok((
                    stored_message(&self.db.pool, &cid_str, me, client_msg_id).await?,
                    false,
                ));
            }
            Err(e) => return Err(e.into()),
        };
        match (apply, ref_seq) {
            (Apply::Edit(text), Some(target)) => {
                sqlx::query("UPDATE messages SET content = $3, edited_at = $4 WHERE conversation_id = $1 AND seq = $2")
                    .bind(&cid_str)
                    .bind(target)
                    .bind(text)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            (Apply::Recall, Some(target)) => {
                sqlx::query("UPDATE messages SET content = '', recalled = 1 WHERE conversation_id = $1 AND seq = $2")
                    .bind(&cid_str)
                    .bind(target)
                    .execute(&mut *tx)
                    .await?;
            }
            _ => {}
        }
        // Sending reads everything before it; a private chat's two views exist from its first message.
        match cid {
            ConversationId::Private(a, b) => {
                let peer = if me == a { b } else { a };
                sqlx::query(
                    "INSERT INTO user_conversations (user_id, conversation_id, read_seq) VALUES ($1, $3, $4), ($2, $3, 0) \
                     ON CONFLICT (user_id, conversation_id) DO UPDATE SET read_seq = \
                     CASE WHEN excluded.read_seq > user_conversations.read_seq THEN excluded.read_seq \
                     ELSE user_conversations.read_seq END",
                )
                .bind(me)
                .bind(peer)
                .bind(&cid_str)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            }
            ConversationId::Group(_) => {
                sqlx::query(
                    "UPDATE user_conversations SET read_seq = $3 \
                     WHERE user_id = $1 AND conversation_id = $2 AND read_seq < $3",
                )
                .bind(me)
                .bind(&cid_str)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok((message, true))
    }

    /// The message at `seq` of `cid`, as visible to a reader whose history starts after `min_seq`.
    async fn message_at(
        &self,
        cid: ConversationId,
        seq: i64,
        min_seq: i64,
    ) -> Result<Message, ImError> {
        sqlx::query_as::<_, MessageRow>(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE conversation_id = $1 AND seq = $2 AND seq > $3"
        ))
        .bind(cid.to_string())
        .bind(seq)
        .bind(min_seq)
        .fetch_optional(&self.db.pool)
        .await?
        .map(Message::from)
        .ok_or_else(|| ImError::not_found(format!("no message {seq} in {cid}")))
    }

    /// Stores a change to the message at `target` (applied to it in the same transaction) and pushes
    /// it like a message.
    async fn change(
        &self,
        me: i64,
        cid: ConversationId,
        recipients: Vec<i64>,
        kind: MessageKind,
        content: &str,
        target: i64,
    ) -> ImResult<Message> {
        let apply = match kind {
            MessageKind::Edit => Apply::Edit(content),
            MessageKind::Recall => Apply::Recall,
            _ => Apply::Nothing,
        };
        let id = format!("{}:{}", kind.as_str(), uuid::Uuid::new_v4().simple());
        let (message, _) = self
            .store_message(me, cid, &id, kind, content, Some(target), apply)
            .await?;
        Ok(Done::ok(message.clone()).event(recipients, LiveEvent::Message(message)))
    }

    pub(crate) async fn edit(&self, c: &Caller<'_>, r: EditMessage) -> ImResult<Message> {
        let me = c.me;
        let cid = r.path.cid;
        let seq = r.path.seq.get();
        let content = check_text(&r.body.content)?;
        self.check_send_rate(me)?;
        let recipients = self.postable(me, cid).await?;
        let min_seq = self.readable(me, cid).await?;
        let target = self.message_at(cid, seq, min_seq).await?;
        if target.sender_id != me {
            return Err(ImError::forbidden("you can only edit your own messages"));
        }
        if target.kind != MessageKind::Text || target.recalled {
            return Err(ImError::conflict(
                "only a text message that was not recalled can be edited",
            ));
        }
        let window_ms = self.settings.edit_window_secs as i64 * 1000;
        if now_ms() - target.created_at > window_ms {
            return Err(ImError::forbidden(format!(
                "messages can be edited for {} s after sending",
                self.settings.edit_window_secs
            )));
        }
        self.change(me, cid, recipients, MessageKind::Edit, &content, seq)
            .await
    }

    pub(crate) async fn recall(&self, c: &Caller<'_>, r: RecallMessage) -> ImResult<Message> {
        let me = c.me;
        let cid = r.path.cid;
        let seq = r.path.seq.get();
        self.check_send_rate(me)?;
        let min_seq = self.readable(me, cid).await?;
        let target = self.message_at(cid, seq, min_seq).await?;
        if !target.kind.is_content() {
            return Err(ImError::conflict(
                "only a message can be recalled, not a change",
            ));
        }
        if target.recalled {
            return Err(ImError::conflict("the message was already recalled"));
        }
        let age = now_ms() - target.created_at;
        let window_ms = self.settings.recall_window_secs as i64 * 1000;
        let recipients = match cid {
            ConversationId::Private(a, b) => {
                if target.sender_id != me || age > window_ms {
                    return Err(ImError::forbidden(format!(
                        "you can recall your own messages for {} s after sending",
                        self.settings.recall_window_secs
                    )));
                }
                vec![a, b]
            }
            ConversationId::Group(g) => {
                let my_role = self.role_or_403(g, me).await?;
                let author_role = self.membership(g, target.sender_id).await?.map(|(r, _)| r);
                if !group_rules::may_recall(
                    my_role,
                    author_role,
                    target.sender_id == me,
                    age,
                    window_ms,
                ) {
                    return Err(ImError::forbidden(format!(
                        "you can recall your own messages for {} s; owners and admins can recall those of members they outrank",
                        self.settings.recall_window_secs
                    )));
                }
                self.member_ids(g).await?
            }
        };
        self.change(me, cid, recipients, MessageKind::Recall, "", seq)
            .await
    }

    pub(crate) async fn react(
        &self,
        c: &Caller<'_>,
        p: ReactionPath,
        add: bool,
    ) -> ImResult<Message> {
        let me = c.me;
        let cid = p.cid;
        let seq = p.seq.get();
        let emoji = p.emoji.as_str().to_string();
        self.check_send_rate(me)?;
        let recipients = self.postable(me, cid).await?;
        let min_seq = self.readable(me, cid).await?;
        let target = self.message_at(cid, seq, min_seq).await?;
        if !target.kind.is_content() || target.recalled {
            return Err(ImError::conflict(
                "only a message that was not recalled takes reactions",
            ));
        }
        let cid_str = cid.to_string();
        if add {
            let mine = sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM reactions WHERE conversation_id = $1 AND seq = $2 AND user_id = $3",
            )
            .bind(&cid_str)
            .bind(seq)
            .bind(me)
            .fetch_one(&self.db.pool)
            .await?;
            if mine >= MAX_REACTIONS_PER_USER {
                return Err(ImError::conflict(format!(
                    "at most {MAX_REACTIONS_PER_USER} reactions per message"
                )));
            }
            let n = sqlx::query(
                "INSERT INTO reactions (conversation_id, seq, user_id, emoji, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (conversation_id, seq, user_id, emoji) DO NOTHING",
            )
            .bind(&cid_str)
            .bind(seq)
            .bind(me)
            .bind(&emoji)
            .bind(now_ms())
            .execute(&self.db.pool)
            .await?
            .rows_affected();
            if n == 0 {
                return Err(ImError::conflict("you already reacted with this emoji"));
            }
        } else {
            let n = sqlx::query(
                "DELETE FROM reactions WHERE conversation_id = $1 AND seq = $2 AND user_id = $3 AND emoji = $4",
            )
            .bind(&cid_str)
            .bind(seq)
            .bind(me)
            .bind(&emoji)
            .execute(&self.db.pool)
            .await?
            .rows_affected();
            if n == 0 {
                return Err(ImError::not_found(
                    "you have no such reaction on this message",
                ));
            }
        }
        let kind = if add {
            MessageKind::React
        } else {
            MessageKind::Unreact
        };
        self.change(me, cid, recipients, kind, &emoji, seq).await
    }

    pub(crate) async fn messages(&self, c: &Caller<'_>, r: ListMessages) -> ImResult<MessagePage> {
        let me = c.me;
        let cid = r.path.cid;
        let cid_str = cid.to_string();
        let min_seq = self.readable(me, cid).await?;
        let q = r.query;
        let limit = q.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ImError::invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        if q.after_seq.is_some() && q.before_seq.is_some() {
            return Err(ImError::invalid("give after_seq or before_seq, not both"));
        }
        let mut rows = if let Some(after) = q.after_seq {
            sqlx::query_as::<_, MessageRow>(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation_id = $1 AND seq > $2 AND seq > $3 ORDER BY seq ASC LIMIT $4"
            ))
            .bind(&cid_str)
            .bind(after)
            .bind(min_seq)
            .bind(limit + 1)
            .fetch_all(&self.db.pool)
            .await?
        } else {
            sqlx::query_as::<_, MessageRow>(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation_id = $1 AND seq < $2 AND seq > $3 ORDER BY seq DESC LIMIT $4"
            ))
            .bind(&cid_str)
            .bind(q.before_seq.unwrap_or(i64::MAX))
            .bind(min_seq)
            .bind(limit + 1)
            .fetch_all(&self.db.pool)
            .await?
        };
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        if q.after_seq.is_none() {
            rows.reverse();
        }
        let mut messages: Vec<Message> = rows.into_iter().map(Message::from).collect();
        self.decorate(me, &cid_str, &mut messages).await?;
        let member_count = match cid {
            ConversationId::Group(g) => Some(self.member_count(g).await?),
            ConversationId::Private(..) => None,
        };
        Ok(Done::ok(MessagePage {
            conversation_id: cid_str.clone(),
            messages,
            has_more,
            last_seq: self.last_seq(&cid_str).await?,
            member_count,
        }))
    }

    /// Adds reactions and "read by" counts to a page of messages.
    async fn decorate(&self, me: i64, cid: &str, messages: &mut [Message]) -> Result<(), ImError> {
        let content: Vec<i64> = messages
            .iter()
            .filter(|m| m.kind.is_content())
            .map(|m| m.seq)
            .collect();
        let (Some(lo), Some(hi)) = (content.iter().min(), content.iter().max()) else {
            return Ok(());
        };
        #[derive(FromRow)]
        struct ReactionRow {
            seq: i64,
            emoji: String,
            n: i64,
            mine: i64,
        }
        let reactions = sqlx::query_as::<_, ReactionRow>(
            "SELECT seq, emoji, COUNT(*) AS n, SUM(CASE WHEN user_id = $4 THEN 1 ELSE 0 END) AS mine \
             FROM reactions WHERE conversation_id = $1 AND seq BETWEEN $2 AND $3 GROUP BY seq, emoji ORDER BY seq, MIN(created_at)",
        )
        .bind(cid)
        .bind(lo)
        .bind(hi)
        .bind(me)
        .fetch_all(&self.db.pool)
        .await?;
        let mut by_seq: BTreeMap<i64, Vec<ReactionCount>> = BTreeMap::new();
        for r in reactions {
            by_seq.entry(r.seq).or_default().push(ReactionCount {
                emoji: r.emoji,
                count: r.n,
                me: r.mine > 0,
            });
        }
        // Each participant's read seq: a group of 1,000 is 1,000 small rows, counted here per message.
        let reads: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT user_id, read_seq FROM user_conversations WHERE conversation_id = $1",
        )
        .bind(cid)
        .fetch_all(&self.db.pool)
        .await?;
        let mut read_seqs: Vec<i64> = reads.iter().map(|(_, s)| *s).collect();
        read_seqs.sort_unstable();
        let by_user: HashMap<i64, i64> = reads.into_iter().collect();
        for m in messages.iter_mut().filter(|m| m.kind.is_content()) {
            m.reactions = by_seq.remove(&m.seq).unwrap_or_default();
            let at_or_past = read_seqs.len() - read_seqs.partition_point(|s| *s < m.seq);
            let sender_counted = by_user.get(&m.sender_id).is_some_and(|s| *s >= m.seq);
            m.read_by = Some(at_or_past as i64 - i64::from(sender_counted));
        }
        Ok(())
    }

    pub(crate) async fn last_seq(&self, cid: &str) -> Result<i64, ImError> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT last_seq FROM conversations WHERE id = $1")
                .bind(cid)
                .fetch_optional(&self.db.pool)
                .await?
                .unwrap_or(0),
        )
    }

    /// Messages from others after `read_seq` (changes and recalled messages do not count).
    pub(crate) async fn unread(&self, me: i64, cid: &str, read_seq: i64) -> Result<i64, ImError> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM messages WHERE conversation_id = $1 AND seq > $2 AND sender_id <> $3 \
             AND kind IN ('text', 'image', 'file') AND recalled = 0",
        )
        .bind(cid)
        .bind(read_seq)
        .bind(me)
        .fetch_one(&self.db.pool)
        .await?)
    }

    pub(crate) async fn read(&self, c: &Caller<'_>, r: ReadConversation) -> ImResult<ReadState> {
        let me = c.me;
        let cid = r.path.cid;
        let cid_str = cid.to_string();
        self.readable(me, cid).await?;
        let seq = r.body.seq;
        let last = self.last_seq(&cid_str).await?;
        if seq < 0 || seq > last {
            return Err(ImError::invalid(format!(
                "seq must be between 0 and the last seq {last}"
            )));
        }
        if last == 0 {
            return Ok(Done::ok(ReadState {
                conversation_id: cid_str,
                read_seq: 0,
                unread: 0,
            }));
        }
        // A group member's row exists from their join; only private chats get theirs on first read.
        if let ConversationId::Private(..) = cid {
            sqlx::query(
                "INSERT INTO user_conversations (user_id, conversation_id) VALUES ($1, $2) ON CONFLICT (user_id, conversation_id) DO NOTHING",
            )
            .bind(me)
            .bind(&cid_str)
            .execute(&self.db.pool)
            .await?;
        }
        let before = sqlx::query_scalar::<_, i64>(
            "SELECT read_seq FROM user_conversations WHERE user_id = $1 AND conversation_id = $2",
        )
        .bind(me)
        .bind(&cid_str)
        .fetch_optional(&self.db.pool)
        .await?
        .unwrap_or(0);
        sqlx::query(
            "UPDATE user_conversations SET read_seq = $3 WHERE user_id = $1 AND conversation_id = $2 AND read_seq < $3",
        )
        .bind(me)
        .bind(&cid_str)
        .bind(seq)
        .execute(&self.db.pool)
        .await?;
        let read_seq = before.max(seq);
        let unread = self.unread(me, &cid_str, read_seq).await?;
        let receipt = |unread| {
            LiveEvent::Read(ReadEvent {
                conversation_id: cid_str.clone(),
                user_id: me,
                seq: read_seq,
                unread,
            })
        };
        // My other devices clear their unread count; the others hear a read receipt: the peer of a
        // private chat, and in a group the senders of the messages this read newly covers (whose
        // "read by" count changed).
        let others: Vec<i64> = match cid {
            ConversationId::Private(..) => cid.peer_of(me).into_iter().collect(),
            ConversationId::Group(_) if read_seq > before => sqlx::query_scalar::<_, i64>(
                "SELECT DISTINCT sender_id FROM messages WHERE conversation_id = $1 AND seq > $2 AND seq <= $3 \
                 AND sender_id <> $4 AND kind IN ('text', 'image', 'file')",
            )
            .bind(&cid_str)
            .bind(before)
            .bind(read_seq)
            .bind(me)
            .fetch_all(&self.db.pool)
            .await?,
            ConversationId::Group(_) => Vec::new(),
        };
        Ok(Done::ok(ReadState {
            conversation_id: cid_str.clone(),
            read_seq,
            unread,
        })
        .push(Event::new(vec![me], receipt(Some(unread))))
        .push(Event::new(others, receipt(None))))
    }

    pub(crate) async fn conversations(
        &self,
        c: &Caller<'_>,
        r: ListConversations,
    ) -> ImResult<ConversationsPage> {
        let me = c.me;
        let (limit, offset) = paging::cursor(&r.query)?;
        #[derive(FromRow)]
        struct Row {
            id: String,
            last_seq: i64,
            read_seq: i64,
            updated_at: i64,
            unread: i64,
            m_id: Option<i64>,
            m_sender: Option<i64>,
            m_client_id: Option<String>,
            m_kind: Option<String>,
            m_content: Option<String>,
            m_created: Option<i64>,
            m_ref: Option<i64>,
            m_edited: Option<i64>,
            m_recalled: Option<i64>,
        }
        // Each conversation with its last message and unread count in one query (a group member does
        // not see messages from before they joined).
        let mut rows = sqlx::query_as::<_, Row>(
            "SELECT c.id, c.last_seq, uc.read_seq, c.updated_at, \
             (SELECT COUNT(*) FROM messages u WHERE u.conversation_id = c.id AND u.seq > uc.read_seq AND u.seq > uc.min_seq \
              AND u.sender_id <> $1 AND u.kind IN ('text', 'image', 'file') AND u.recalled = 0) AS unread, \
             m.id AS m_id, m.sender_id AS m_sender, m.client_msg_id AS m_client_id, m.kind AS m_kind, \
             m.content AS m_content, m.created_at AS m_created, m.ref_seq AS m_ref, m.edited_at AS m_edited, m.recalled AS m_recalled \
             FROM user_conversations uc JOIN conversations c ON c.id = uc.conversation_id \
             LEFT JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq AND c.last_seq > uc.min_seq \
             WHERE uc.user_id = $1 ORDER BY c.updated_at DESC, c.id LIMIT $2 OFFSET $3",
        )
        .bind(me)
        .bind(limit + 1)
        .bind(offset)
        .fetch_all(&self.db.pool)
        .await?;
        let next_cursor = paging::next(&mut rows, limit, offset);
        let mut out = Vec::with_capacity(rows.len());
        let mut peers = Vec::new();
        for r in rows {
            let Ok(cid) = ConversationId::parse(&r.id) else {
                continue;
            };
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
                ) => Some(Message::from(MessageRow {
                    id,
                    conversation_id: r.id.clone(),
                    seq: r.last_seq,
                    sender_id,
                    client_msg_id,
                    kind,
                    content,
                    created_at,
                    ref_seq: r.m_ref,
                    edited_at: r.m_edited,
                    recalled: r.m_recalled.unwrap_or(0),
                })),
                _ => None,
            };
            let (kind, peer, group) = match cid {
                ConversationId::Private(..) => {
                    let other = cid.peer_of(me).unwrap_or(0);
                    peers.push(other);
                    (
                        "private",
                        self.public_users(me, &[other]).await?.pop(),
                        None,
                    )
                }
                ConversationId::Group(g) => match self.group_row(g).await {
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
                id: r.id,
                kind: kind.into(),
                peer,
                group,
                last_seq: r.last_seq,
                read_seq: r.read_seq,
                unread: r.unread,
                last_message,
                updated_at: r.updated_at,
            });
        }
        let online = self.online(&peers).await;
        for c in &mut out {
            if let Some(p) = &mut c.peer {
                p.online = Some(online.contains(&p.id));
            }
        }
        Ok(Done::ok(ConversationsPage {
            conversations: out,
            next_cursor,
        }))
    }
}
