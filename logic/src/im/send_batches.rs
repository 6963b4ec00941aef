//! Group commit of sends into one conversation, on PostgreSQL. Senders to one conversation queue on its
//! counter row (that is what keeps seqs gapless), and the row lock is held until the commit's WAL flush:
//! one `fdatasync` per message caps a hot conversation at the disk's flush rate (676 µs here, so about
//! 1,480 messages a second) however fast the rest is. So concurrent sends to one conversation are
//! stored together: one statement takes `k` seqs, inserts the `k` messages and moves the senders' read
//! state, and is committed with one flush; every caller is answered after that commit.
//!
//! Contract:
//! - **Order:** seqs follow the order in which the sends reached [`SendBatches::store`], within a
//!   statement and across statements (one statement per conversation runs at a time per logic node;
//!   another node's statements interleave whole, in the counter row's lock order).
//! - **Exactly once:** a `(sender, client_msg_id)` already stored takes no seq and is answered with the
//!   stored message (`created == false`), also when it repeats within one batch. A duplicate that
//!   another node commits while the statement runs fails it on the unique index; the statement is run
//!   again, and then sees it.
//! - **Durability:** a caller is answered `created` only after the commit that holds its message. A
//!   failed statement fails every caller of its batch, and none of its messages is stored.
//! - **Bounds:** a statement carries at most [`MAX_BATCH`] messages; at most [`MAX_WAITING`] sends wait
//!   per conversation, and a send past that is refused with 503 (retry), storing nothing.
//! - **Cancellation:** the batch runs on a task of its own, so a caller that goes away (its call was
//!   cancelled) does not cancel the others' statement; its message may still be stored, and a resend
//!   returns it.
//!
//! The first send to an idle conversation starts its statement at once: a lone sender waits for no one.
//! SQLite has one writer at a time anyway and keeps its transaction (`chat.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use imcloud_common::im::chat::Message;
use imcloud_common::im::values::{ConversationId, MessageKind};
use serde::Serialize;
use sqlx::AnyPool;
use tokio::sync::oneshot;

use super::error::{ImError, is_unique_violation};
use super::rows::{MessageRow, message_columns};

/// Messages in one statement at most.
pub const MAX_BATCH: usize = 256;
/// Sends waiting for one conversation at most; past this a send is refused with 503.
pub const MAX_WAITING: usize = 4096;
/// Runs of one statement when another node's commit of a duplicate fails it.
const ATTEMPTS: usize = 3;

/// A message to store: the part of a send that the statement needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewMessage {
    pub sender_id: i64,
    pub client_msg_id: String,
    pub kind: MessageKind,
    pub content: String,
    pub ref_seq: Option<i64>,
}

/// What a send is answered: the message and whether this send stored it.
pub type Stored = Result<(Message, bool), ImError>;

struct Waiting {
    message: NewMessage,
    reply: oneshot::Sender<Stored>,
}

/// The sends waiting per conversation. A conversation is in the map exactly while a task runs its
/// statements; that task removes it when nothing is left to store.
pub struct SendBatches {
    pool: AnyPool,
    waiting: Mutex<HashMap<ConversationId, Vec<Waiting>>>,
}

impl SendBatches {
    pub fn new(pool: AnyPool) -> Arc<SendBatches> {
        Arc::new(SendBatches {
            pool,
            waiting: Mutex::new(HashMap::new()),
        })
    }

    /// Stores `message` in `cid` with the conversation's next seq, together with the sends to `cid`
    /// that wait beside it (see the module's contract).
    pub async fn store(self: &Arc<Self>, cid: ConversationId, message: NewMessage) -> Stored {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            match waiting.get_mut(&cid) {
                Some(queue) if queue.len() >= MAX_WAITING => {
                    metrics::counter!("imcloud_im_send_batch_refused_total").increment(1);
                    return Err(ImError::unavailable(format!(
                        "{MAX_WAITING} messages are waiting to be stored in {cid}; retry"
                    )));
                }
                Some(queue) => {
                    queue.push(Waiting { message, reply });
                    false
                }
                None => {
                    waiting.insert(cid, vec![Waiting { message, reply }]);
                    true
                }
            }
        };
        if start {
            tokio::spawn(self.clone().run(cid));
        }
        answer
            .await
            .map_err(|_| ImError::internal("the message's batch ended without an answer"))?
    }

    /// Runs statements for `cid` until no send waits.
    async fn run(self: Arc<Self>, cid: ConversationId) {
        // Should this task end early (a panic), its conversation leaves the map, and the sends left in
        // it are answered with an error by their dropped reply channels instead of waiting forever.
        let mut guard = Running {
            batches: &self,
            cid,
            armed: true,
        };
        loop {
            let batch: Vec<Waiting> = {
                let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
                let Some(queue) = waiting.get_mut(&cid) else {
                    guard.armed = false;
                    return;
                };
                if queue.is_empty() {
                    waiting.remove(&cid);
                    guard.armed = false;
                    return;
                }
                let n = queue.len().min(MAX_BATCH);
                queue.drain(..n).collect()
            };
            metrics::histogram!("imcloud_im_send_batch_messages").record(batch.len() as f64);
            let messages: Vec<&NewMessage> = batch.iter().map(|w| &w.message).collect();
            let answers = self.store_batch(cid, &messages).await;
            for (w, answer) in batch.into_iter().zip(answers) {
                // A caller that went away no longer listens; its message is stored all the same.
                let _ = w.reply.send(answer);
            }
        }
    }

    /// One answer per message of `batch`, in its order.
    async fn store_batch(&self, cid: ConversationId, batch: &[&NewMessage]) -> Vec<Stored> {
        // A send repeated within the batch is stored once: the first of its copies takes the seq.
        let mut seen: HashSet<(i64, &str)> = HashSet::new();
        let unique: Vec<&NewMessage> = batch
            .iter()
            .copied()
            .filter(|m| seen.insert((m.sender_id, m.client_msg_id.as_str())))
            .collect();
        let mut attempt = 1;
        let stored = loop {
            match self.insert(cid, &unique).await {
                Err(e) if is_unique_violation(&e) && attempt < ATTEMPTS => attempt += 1,
                done => break done,
            }
        };
        let rows: HashMap<(i64, String), Message> = match stored {
            Ok(rows) => rows
                .into_iter()
                .map(|r| ((r.sender_id, r.client_msg_id.clone()), Message::from(r)))
                .collect(),
            Err(e) => {
                let e = ImError::from(e);
                return batch.iter().map(|_| Err(e.clone())).collect();
            }
        };
        let mut answered: HashSet<(i64, &str)> = HashSet::new();
        let mut answers = Vec::with_capacity(batch.len());
        for m in batch {
            let key = (m.sender_id, m.client_msg_id.as_str());
            let inserted = rows.get(&(m.sender_id, m.client_msg_id.clone()));
            let answer = match inserted {
                // The first copy of a new message stored it; a later copy in the batch is a resend.
                Some(message) => Ok((message.clone(), answered.insert(key))),
                // Stored before this batch: what a resend returns.
                None => self
                    .stored(cid, m)
                    .await
                    .map(|message| (message, false))
                    .map_err(ImError::from),
            };
            answers.push(answer);
        }
        answers
    }

    /// The statement: the messages of `batch` not stored yet take the next seqs in batch order, and
    /// each sender's read state moves to their last message. Returns the rows it inserted.
    async fn insert(
        &self,
        cid: ConversationId,
        batch: &[&NewMessage],
    ) -> Result<Vec<MessageRow>, sqlx::Error> {
        #[derive(Serialize)]
        struct Row<'a> {
            i: usize,
            #[serde(flatten)]
            message: &'a NewMessage,
        }
        let rows: Vec<Row> = batch
            .iter()
            .enumerate()
            .map(|(i, message)| Row { i, message })
            .collect();
        let json = serde_json::to_string(&rows)
            .map_err(|e| sqlx::Error::Encode(format!("a batch of messages: {e}").into()))?;
        // `fresh` is the batch less what is stored; `c` takes as many seqs as it has messages (and
        // locks the counter row to the commit); `m` numbers them in batch order; `v` moves read state:
        // both views of a private chat ($4, $5 are its members), or each sender's view of a group.
        macro_rules! batch_sql {
            ($views:literal) => {
                concat!(
                    "WITH fresh AS (SELECT t.*, row_number() OVER (ORDER BY t.i) AS n \
                     FROM json_to_recordset($3::json) AS t(i BIGINT, sender_id BIGINT, client_msg_id TEXT, \
                     kind TEXT, content TEXT, ref_seq BIGINT) \
                     WHERE NOT EXISTS (SELECT 1 FROM messages x WHERE x.conversation_id = $1 \
                     AND x.sender_id = t.sender_id AND x.client_msg_id = t.client_msg_id)), \
                     c AS (INSERT INTO conversations (id, last_seq, updated_at) \
                     SELECT $1, count(*), $2 FROM fresh HAVING count(*) > 0 \
                     ON CONFLICT (id) DO UPDATE SET last_seq = conversations.last_seq + excluded.last_seq, \
                     updated_at = $2 RETURNING last_seq), \
                     m AS (INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, kind, content, created_at, ref_seq) \
                     SELECT $1, c.last_seq - (SELECT count(*) FROM fresh) + fresh.n, fresh.sender_id, \
                     fresh.client_msg_id, fresh.kind, fresh.content, $2, fresh.ref_seq FROM fresh, c RETURNING ",
                    message_columns!(),
                    "), ",
                    $views,
                    " SELECT ",
                    message_columns!(),
                    " FROM m ORDER BY seq"
                )
            };
        }
        let sql = match cid {
            ConversationId::Private(..) => batch_sql!(
                "v AS (INSERT INTO user_conversations (user_id, conversation_id, read_seq) \
                 SELECT u.id, $1::TEXT, COALESCE((SELECT max(m.seq) FROM m WHERE m.sender_id = u.id), 0) \
                 FROM (VALUES ($4::BIGINT), ($5::BIGINT)) AS u(id) WHERE EXISTS (SELECT 1 FROM m) \
                 ON CONFLICT (user_id, conversation_id) DO UPDATE \
                 SET read_seq = GREATEST(user_conversations.read_seq, excluded.read_seq))"
            ),
            ConversationId::Group(_) => batch_sql!(
                "v AS (UPDATE user_conversations SET read_seq = s.seq \
                 FROM (SELECT sender_id, max(seq) AS seq FROM m GROUP BY sender_id) AS s \
                 WHERE user_conversations.user_id = s.sender_id AND user_conversations.conversation_id = $1 \
                 AND user_conversations.read_seq < s.seq)"
            ),
        };
        let mut q = sqlx::query_as::<_, MessageRow>(sql)
            .bind(cid.to_string())
            .bind(super::db::now_ms())
            .bind(json);
        if let ConversationId::Private(a, b) = cid {
            q = q.bind(a).bind(b);
        }
        q.fetch_all(&self.pool).await
    }

    /// The message `m`'s sender stored in `cid` under its client_msg_id (what a resend returns).
    async fn stored(&self, cid: ConversationId, m: &NewMessage) -> Result<Message, sqlx::Error> {
        let row = sqlx::query_as::<_, MessageRow>(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE conversation_id = $1 AND sender_id = $2 AND client_msg_id = $3"
        ))
        .bind(cid.to_string())
        .bind(m.sender_id)
        .bind(&m.client_msg_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }
}

/// Takes a conversation out of the map if its task ends without doing so itself.
struct Running<'a> {
    batches: &'a SendBatches,
    cid: ConversationId,
    armed: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut waiting = self
                .batches
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            waiting.remove(&self.cid);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::future::join_all;
    use imcloud_common::test_name::unique_test_name;
    use sqlx::Connection;

    use super::*;
    use crate::im::db::{Db, now_ms};

    fn postgres_base() -> String {
        std::env::var("IMCLOUD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
    }

    /// A migrated database of this test's own, with users 1 and 2; dropped by [`drop_database`].
    async fn database() -> (Db, String) {
        let name = unique_test_name("imcloud_batch").replace('-', "_");
        let db = Db::open(&format!("{}/{name}", postgres_base()))
            .await
            .expect("the test database (is PostgreSQL at IMCLOUD_TEST_POSTGRES_URL?)");
        for id in [1_i64, 2] {
            sqlx::query(
                "INSERT INTO users (id, account_no, email, nickname, password_hash, created_at) \
                 VALUES ($1, $2, $3, 'u', '', 0)",
            )
            .bind(id)
            .bind(format!("a{id}"))
            .bind(format!("u{id}@example.com"))
            .execute(&db.pool)
            .await
            .expect("a user");
        }
        (db, name)
    }

    async fn drop_database(db: Db, name: &str) {
        db.pool.close().await;
        let mut admin = sqlx::AnyConnection::connect(&format!("{}/postgres", postgres_base()))
            .await
            .expect("the postgres database");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .expect("dropping the test database");
    }

    fn text(sender_id: i64, client_msg_id: &str) -> NewMessage {
        NewMessage {
            sender_id,
            client_msg_id: client_msg_id.to_string(),
            kind: MessageKind::Text,
            content: format!("{client_msg_id} from {sender_id}"),
            ref_seq: None,
        }
    }

    /// Sends that arrive while a statement waits on the counter row are stored by one statement after
    /// it, in arrival order, each exactly once; copies are answered with the stored message.
    #[tokio::test(flavor = "current_thread")]
    async fn sends_that_wait_for_a_statement_share_the_next_one_in_order_and_exactly_once() {
        let (db, name) = database().await;
        let batches = SendBatches::new(db.pool.clone());
        let cid = ConversationId::Private(1, 2);
        let (first, created) = batches.store(cid, text(1, "m0")).await.expect("m0");
        assert_eq!((first.seq, created), (1, true));

        // Another transaction holds the counter row: the next statement waits for it.
        let mut holder = db.pool.begin().await.expect("a transaction");
        sqlx::query("UPDATE conversations SET updated_at = $2 WHERE id = $1")
            .bind(cid.to_string())
            .bind(now_ms())
            .execute(&mut *holder)
            .await
            .expect("locking the counter row");
        let blocked = tokio::spawn({
            let batches = batches.clone();
            async move { batches.store(cid, text(2, "m1")).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;

        // 40 new messages from both members, a copy of one of them, and a resend of m0.
        let mut sends: Vec<NewMessage> =
            (2..42).map(|i| text(1 + i % 2, &format!("m{i}"))).collect();
        sends.push(NewMessage {
            content: "a copy".into(),
            ..text(2, "m3")
        });
        sends.push(text(1, "m0"));
        let release = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            holder.commit().await.expect("releasing the counter row");
        };
        let (answers, ()) = tokio::join!(
            join_all(sends.iter().map(|m| batches.store(cid, m.clone()))),
            release
        );

        let (m1, created) = blocked.await.expect("task").expect("m1");
        assert_eq!((m1.seq, created), (2, true));
        let answers: Vec<(Message, bool)> =
            answers.into_iter().map(|a| a.expect("stored")).collect();
        let fresh: Vec<i64> = answers[..40].iter().map(|(m, _)| m.seq).collect();
        assert_eq!(
            fresh,
            (3..=42).collect::<Vec<i64>>(),
            "seqs in arrival order"
        );
        assert!(answers[..40].iter().all(|(_, created)| *created));
        assert_eq!(
            (answers[40].0.seq, &answers[40].0.content),
            (answers[1].0.seq, &answers[1].0.content),
            "the copy answers the stored m3"
        );
        assert!(!answers[40].1, "the copy stored nothing");
        assert_eq!(
            (answers[41].0.seq, answers[41].1),
            (1, false),
            "m0's resend"
        );

        // Three transactions: m0's, m1's (alone, it waited on the row), and one for the 40.
        let transactions: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT xmin::text) FROM messages WHERE conversation_id = $1",
        )
        .bind(cid.to_string())
        .fetch_one(&db.pool)
        .await
        .expect("counting transactions");
        assert_eq!(transactions, 3);
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM messages WHERE conversation_id = $1")
                .bind(cid.to_string())
                .fetch_one(&db.pool)
                .await
                .expect("counting messages");
        assert_eq!(stored, 42);
        // Each member has read up to their own last message.
        let read: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT user_id, read_seq FROM user_conversations WHERE conversation_id = $1 ORDER BY user_id",
        )
        .bind(cid.to_string())
        .fetch_all(&db.pool)
        .await
        .expect("read state");
        assert_eq!(read, vec![(1, 41), (2, 42)]);
        assert!(batches.waiting.lock().expect("map").is_empty());
        drop_database(db, &name).await;
    }

    /// A failed statement fails every send of its batch and stores none of them; the conversation is
    /// free again for the next send.
    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_statement_fails_its_whole_batch_and_stores_nothing() {
        let (db, name) = database().await;
        let batches = SendBatches::new(db.pool.clone());
        let cid = ConversationId::Private(1, 2);
        // User 3 does not exist: the read state's foreign key fails the statement (409: "removed
        // meanwhile", as when a user is deleted during a send).
        let bad = ConversationId::Private(1, 3);
        let answers = join_all([text(1, "a"), text(1, "b")].map(|m| batches.store(bad, m))).await;
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().is_err_and(|e| e.status == 409)),
            "{answers:?}"
        );
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
            .fetch_one(&db.pool)
            .await
            .expect("counting messages");
        assert_eq!(stored, 0);
        let (m, created) = batches.store(cid, text(1, "a")).await.expect("a");
        assert_eq!((m.seq, created), (1, true));
        drop_database(db, &name).await;
    }
}
