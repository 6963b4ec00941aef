//! Read receipts: each participant's read seq, and who read a message. A group of 1,000 is one
//! indexed range read (`user_conversations (conversation_id, read_seq)`) per page.

use imcloud_common::im::chat::{MemberRead, Readers, ReadsPage};
use imcloud_common::im::operations::{ConversationReads, MessageReaders};

use super::error::ImError;
use super::paging;
use super::{Caller, Done, Im, ImResult};

impl Im {
    pub(crate) async fn reads(&self, c: &Caller<'_>, r: ConversationReads) -> ImResult<ReadsPage> {
        let cid = r.path.cid;
        self.readable(c.me, cid).await?;
        let (limit, offset) = paging::cursor(&r.query)?;
        let mut rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT user_id, read_seq FROM user_conversations WHERE conversation_id = $1 ORDER BY user_id LIMIT $2 OFFSET $3",
        )
        .bind(cid.to_string())
        .bind(limit + 1)
        .bind(offset)
        .fetch_all(&self.db.pool)
        .await?;
        let next_cursor = paging::next(&mut rows, limit, offset);
        Ok(Done::ok(ReadsPage {
            conversation_id: cid.to_string(),
            reads: rows
                .into_iter()
                .map(|(user_id, read_seq)| MemberRead { user_id, read_seq })
                .collect(),
            next_cursor,
        }))
    }

    pub(crate) async fn readers(&self, c: &Caller<'_>, r: MessageReaders) -> ImResult<Readers> {
        let cid = r.path.cid;
        let seq = r.path.seq.get();
        let min_seq = self.readable(c.me, cid).await?;
        let (limit, offset) = paging::cursor(&r.query)?;
        let cid_str = cid.to_string();
        let sender = sqlx::query_scalar::<_, i64>(
            "SELECT sender_id FROM messages WHERE conversation_id = $1 AND seq = $2 AND seq > $3",
        )
        .bind(&cid_str)
        .bind(seq)
        .bind(min_seq)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| ImError::not_found(format!("no message {seq} in {cid}")))?;
        let (read_by, of): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN read_seq >= $2 THEN 1 ELSE 0 END), 0), COUNT(*) \
             FROM user_conversations WHERE conversation_id = $1 AND user_id <> $3",
        )
        .bind(&cid_str)
        .bind(seq)
        .bind(sender)
        .fetch_one(&self.db.pool)
        .await?;
        let mut readers: Vec<i64> = sqlx::query_scalar(
            "SELECT user_id FROM user_conversations WHERE conversation_id = $1 AND read_seq >= $2 AND user_id <> $3 \
             ORDER BY user_id LIMIT $4 OFFSET $5",
        )
        .bind(&cid_str)
        .bind(seq)
        .bind(sender)
        .bind(limit + 1)
        .bind(offset)
        .fetch_all(&self.db.pool)
        .await?;
        let next_cursor = paging::next(&mut readers, limit, offset);
        Ok(Done::ok(Readers {
            conversation_id: cid_str,
            seq,
            read_by,
            of,
            readers,
            next_cursor,
        }))
    }
}
