//! Group commit of sends, on PostgreSQL. Senders to one conversation queue on its counter row (that is
//! what keeps seqs gapless), and the row lock is held until the commit's WAL flush: one `fdatasync` per
//! message caps a hot conversation at the disk's flush rate (676 µs here, so about 1,480 messages a
//! second) however fast the rest is, and a commit per message costs PostgreSQL more CPU than the
//! message's insert. So concurrent sends are stored together: one statement takes, per conversation, as
//! many seqs as it has messages, inserts them and moves the senders' read state, and is committed with
//! one flush; every caller is answered after that commit.
//!
//! Sends go to one of [`SHARDS`] queues by their conversation; each queue runs one statement at a time,
//! with whatever waited while the previous one ran (the first send to an idle queue starts at once, so a
//! lone sender waits for no one). A conversation is always in the same queue, so its statements never
//! overlap on this node, and the queues run side by side on the pool.
//!
//! Contract:
//! - **Order:** a conversation's seqs follow the order in which its sends reached
//!   [`SendBatches::store`], within a statement and across statements. Another logic node's statements
//!   interleave whole, in the counter rows' lock order (each statement locks its rows in conversation
//!   order, so two nodes' statements do not deadlock on them).
//! - **Exactly once:** a `(conversation, sender, client_msg_id)` already stored takes no seq and is
//!   answered with the stored message (`created == false`), also when it repeats within one batch. A
//!   duplicate that another node commits while the statement runs fails it on the unique index; the
//!   statement is run again, and then sees it.
//! - **Durability:** a caller is answered `created` only after the commit that holds its message.
//! - **Failure:** a statement the database refuses is run again one conversation at a time, so only the
//!   sends of the conversation at fault fail (a user deleted meanwhile, say), each with the error and
//!   nothing stored; if the database is out of reach, every send of the batch fails at once.
//! - **Bounds:** a statement carries at most [`MAX_BATCH`] messages; at most [`MAX_WAITING`] sends wait
//!   per queue, and a send past that is refused with 503 (retry), storing nothing.
//! - **Tracing:** a statement runs in an `im.send_batch` span, a child of its first send's span that
//!   follows from the others' (OpenTelemetry links), so each send's trace shows its SQL.
//! - **Cancellation:** the statements run on a task of their own, so a caller that goes away (its call
//!   was cancelled) cancels no one's statement; its message may still be stored, and a resend returns it.
//!
//! SQLite has one writer at a time anyway and keeps its transaction per message (`chat.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use imcloud_common::im::chat::Message;
use imcloud_common::im::values::{ConversationId, MessageKind};
use serde::Serialize;
use sqlx::AnyPool;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::error::{ImError, is_unique_violation};
use super::rows::{MessageRow, message_columns};

/// Queues of sends, each running one statement at a time (the pool has 16 connections).
pub const SHARDS: usize = 4;
/// Messages in one statement at most.
pub const MAX_BATCH: usize = 256;
/// Sends waiting in one queue at most; past this a send is refused with 503.
pub const MAX_WAITING: usize = 8192;
/// Runs of one statement while another node's commit of a duplicate, or a deadlock, fails it.
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
    cid: ConversationId,
    message: NewMessage,
    reply: oneshot::Sender<Stored>,
    /// The span of the call that sent it: its statement's span is a child of the first send's and
    /// follows from the others'.
    span: tracing::Span,
}

/// One queue: the sends waiting, and whether a task is running its statements.
#[derive(Default)]
struct Shard {
    running: bool,
    waiting: Vec<Waiting>,
}

/// The send queues of one logic node (see the module's contract).
pub struct SendBatches {
    pool: AnyPool,
    shards: [Mutex<Shard>; SHARDS],
}

/// The queue of a conversation's sends.
fn shard_of(cid: ConversationId) -> usize {
    let h = match cid {
        ConversationId::Private(a, b) => a.wrapping_mul(31).wrapping_add(b),
        ConversationId::Group(g) => g,
    };
    h.rem_euclid(SHARDS as i64) as usize
}

/// Sends that may repeat one another: the key of a stored message.
type Key<'a> = (ConversationId, i64, &'a str);

fn key_of(cid: ConversationId, m: &NewMessage) -> Key<'_> {
    (cid, m.sender_id, m.client_msg_id.as_str())
}

impl SendBatches {
    pub fn new(pool: AnyPool) -> Arc<SendBatches> {
        Arc::new(SendBatches {
            pool,
            shards: Default::default(),
        })
    }

    fn shard(&self, i: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `message` in `cid` with the conversation's next seq, together with the sends that wait
    /// beside it (see the module's contract).
    pub async fn store(self: &Arc<Self>, cid: ConversationId, message: NewMessage) -> Stored {
        let (reply, answer) = oneshot::channel();
        let i = shard_of(cid);
        let start = {
            let mut shard = self.shard(i);
            if shard.waiting.len() >= MAX_WAITING {
                metrics::counter!("imcloud_im_send_batch_refused_total").increment(1);
                return Err(ImError::unavailable(format!(
                    "{MAX_WAITING} messages are waiting to be stored; retry"
                )));
            }
            shard.waiting.push(Waiting {
                cid,
                message,
                reply,
                span: tracing::Span::current(),
            });
            !std::mem::replace(&mut shard.running, true)
        };
        if start {
            tokio::spawn(self.clone().run(i));
        }
        answer
            .await
            .map_err(|_| ImError::internal("the message's batch ended without an answer"))?
    }

    /// Runs queue `i`'s statements until no send waits in it.
    async fn run(self: Arc<Self>, i: usize) {
        // Should this task end early (a panic), its queue is marked idle and emptied: the sends in it
        // are answered with an error by their dropped reply channels instead of waiting forever.
        let mut guard = Running {
            batches: &self,
            shard: i,
            armed: true,
        };
        loop {
            let batch: Vec<Waiting> = {
                let mut shard = self.shard(i);
                if shard.waiting.is_empty() {
                    shard.running = false;
                    guard.armed = false;
                    return;
                }
                let n = shard.waiting.len().min(MAX_BATCH);
                shard.waiting.drain(..n).collect()
            };
            metrics::histogram!("imcloud_im_send_batch_messages").record(batch.len() as f64);
            let span = tracing::info_span!(parent: &batch[0].span, "im.send_batch", messages = batch.len());
            for w in &batch[1..] {
                span.follows_from(&w.span);
            }
            let sends: Vec<(ConversationId, &NewMessage)> =
                batch.iter().map(|w| (w.cid, &w.message)).collect();
            let answers = self.store_batch(&sends).instrument(span).await;
            for (w, answer) in batch.into_iter().zip(answers) {
                // A caller that went away no longer listens; its message is stored all the same.
                let _ = w.reply.send(answer);
            }
        }
    }

    /// One answer per send of `batch`, in its order.
    async fn store_batch(&self, batch: &[(ConversationId, &NewMessage)]) -> Vec<Stored> {
        // A send repeated within the batch is stored once: the first of its copies takes the seq.
        let mut seen: HashSet<Key> = HashSet::new();
        let unique: Vec<(ConversationId, &NewMessage)> = batch
            .iter()
            .copied()
            .filter(|(cid, m)| seen.insert(key_of(*cid, m)))
            .collect();
        let mut inserted: HashMap<(ConversationId, i64, String), Message> = HashMap::new();
        let mut failed: HashMap<ConversationId, ImError> = HashMap::new();
        match self.insert_retrying(&unique).await {
            Ok(rows) => inserted.extend(rows),
            Err(e) => {
                let mut cids: Vec<ConversationId> = unique.iter().map(|(cid, _)| *cid).collect();
                cids.sort_by_key(|cid| cid.to_string());
                cids.dedup();
                // Only a statement the database refused can be one conversation's fault; a database
                // out of reach fails the whole batch at once (one wait for the pool, not one each).
                if cids.len() == 1 || e.as_database_error().is_none() {
                    let e = ImError::from(e);
                    failed.extend(cids.into_iter().map(|cid| (cid, e.clone())));
                } else {
                    // One conversation's fault must not fail the others: one statement each.
                    for cid in cids {
                        let alone: Vec<_> = unique.iter().copied().filter(|u| u.0 == cid).collect();
                        match self.insert_retrying(&alone).await {
                            Ok(rows) => inserted.extend(rows),
                            Err(e) => {
                                failed.insert(cid, ImError::from(e));
                            }
                        }
                    }
                }
            }
        }
        let mut answered: HashSet<Key> = HashSet::new();
        let mut answers = Vec::with_capacity(batch.len());
        for &(cid, m) in batch {
            if let Some(e) = failed.get(&cid) {
                answers.push(Err(e.clone()));
                continue;
            }
            let answer = match inserted.get(&(cid, m.sender_id, m.client_msg_id.clone())) {
                // The first copy of a new message stored it; a later copy in the batch is a resend.
                Some(message) => Ok((message.clone(), answered.insert(key_of(cid, m)))),
                // Stored before this batch: what a resend returns.
                None => stored_message(&self.pool, &cid.to_string(), m.sender_id, &m.client_msg_id)
                    .await
                    .map(|message| (message, false))
                    .map_err(ImError::from),
            };
            answers.push(answer);
        }
        answers
    }

    /// [`Self::insert`], run again while a concurrent commit makes it fail on the unique index or a
    /// deadlock.
    async fn insert_retrying(
        &self,
        batch: &[(ConversationId, &NewMessage)],
    ) -> Result<Vec<((ConversationId, i64, String), Message)>, sqlx::Error> {
        let mut attempt = 1;
        let rows = loop {
            match self.insert(batch).await {
                Err(e) if (is_unique_violation(&e) || is_deadlock(&e)) && attempt < ATTEMPTS => {
                    attempt += 1
                }
                done => break done?,
            }
        };
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let cid = ConversationId::parse(&r.conversation_id).ok()?;
                Some((
                    (cid, r.sender_id, r.client_msg_id.clone()),
                    Message::from(r),
                ))
            })
            .collect())
    }

    /// The statement: the sends of `batch` not stored yet take their conversations' next seqs in batch
    /// order, and each sender's read state moves to their last message. Returns the rows it inserted.
    async fn insert(
        &self,
        batch: &[(ConversationId, &NewMessage)],
    ) -> Result<Vec<MessageRow>, sqlx::Error> {
        #[derive(Serialize)]
        struct Row<'a> {
            i: usize,
            cid: String,
            /// A private chat's members; none for a group.
            a: Option<i64>,
            b: Option<i64>,
            #[serde(flatten)]
            message: &'a NewMessage,
        }
        let rows: Vec<Row> = batch
            .iter()
            .enumerate()
            .map(|(i, (cid, message))| {
                let (a, b) = match *cid {
                    ConversationId::Private(a, b) => (Some(a), Some(b)),
                    ConversationId::Group(_) => (None, None),
                };
                Row {
                    i,
                    cid: cid.to_string(),
                    a,
                    b,
                    message,
                }
            })
            .collect();
        let json = serde_json::to_string(&rows)
            .map_err(|e| sqlx::Error::Encode(format!("a batch of messages: {e}").into()))?;
        // `fresh`: the batch less what is stored, numbered per conversation; `k`: how many each
        // conversation takes; `c`: takes them (locking the counter rows, in conversation order, to the
        // commit); `m`: the messages; `p`: both views of each private chat (a view whose read state does
        // not move is left as it is: no new row version); `g`: each sender's view of each group.
        // The resend check is a lateral probe of the unique (conversation, sender, client_msg_id) index, one
        // per message, whatever the statistics say. Written as `NOT EXISTS`, it became a hash anti join
        // that read every stored message for each batch while the table's statistics were young (until
        // autovacuum's next ANALYZE): 7.9 ms a statement instead of 1.4 in docs/benchmarks.md's run.
        let sql = concat!(
            "WITH fresh AS (SELECT t.*, row_number() OVER (PARTITION BY t.cid ORDER BY t.i) AS n \
             FROM json_to_recordset($2::json) AS t(i BIGINT, cid TEXT, a BIGINT, b BIGINT, sender_id BIGINT, \
             client_msg_id TEXT, kind TEXT, content TEXT, ref_seq BIGINT) \
             LEFT JOIN LATERAL (SELECT 1 AS stored FROM messages x WHERE x.conversation_id = t.cid \
             AND x.sender_id = t.sender_id AND x.client_msg_id = t.client_msg_id LIMIT 1) AS d ON true \
             WHERE d.stored IS NULL), \
             k AS (SELECT cid, count(*) AS k FROM fresh GROUP BY cid), \
             c AS (INSERT INTO conversations (id, last_seq, updated_at) SELECT cid, k, $1 FROM k ORDER BY cid \
             ON CONFLICT (id) DO UPDATE SET last_seq = conversations.last_seq + excluded.last_seq, \
             updated_at = $1 RETURNING id, last_seq), \
             m AS (INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, kind, content, created_at, ref_seq) \
             SELECT f.cid, c.last_seq - k.k + f.n, f.sender_id, f.client_msg_id, f.kind, f.content, $1, f.ref_seq \
             FROM fresh f JOIN k ON k.cid = f.cid JOIN c ON c.id = f.cid RETURNING ",
            message_columns!(),
            "), \
             p AS (INSERT INTO user_conversations (user_id, conversation_id, read_seq) \
             SELECT u.id, pc.cid, COALESCE(s.seq, 0) \
             FROM (SELECT DISTINCT cid, a, b FROM fresh WHERE a IS NOT NULL) AS pc \
             CROSS JOIN LATERAL (VALUES (pc.a), (pc.b)) AS u(id) \
             LEFT JOIN (SELECT conversation_id, sender_id, max(seq) AS seq FROM m GROUP BY 1, 2) AS s \
             ON s.conversation_id = pc.cid AND s.sender_id = u.id \
             ON CONFLICT (user_id, conversation_id) DO UPDATE SET read_seq = excluded.read_seq \
             WHERE excluded.read_seq > user_conversations.read_seq), \
             g AS (UPDATE user_conversations SET read_seq = s.seq \
             FROM (SELECT m.conversation_id, m.sender_id, max(m.seq) AS seq FROM m \
             JOIN (SELECT DISTINCT cid FROM fresh WHERE a IS NULL) AS gc ON gc.cid = m.conversation_id \
             GROUP BY 1, 2) AS s \
             WHERE user_conversations.user_id = s.sender_id AND user_conversations.conversation_id = s.conversation_id \
             AND user_conversations.read_seq < s.seq) \
             SELECT ",
            message_columns!(),
            " FROM m"
        );
        sqlx::query_as::<_, MessageRow>(sql)
            .bind(super::db::now_ms())
            .bind(json)
            .fetch_all(&self.pool)
            .await
    }
}

/// The message `sender_id` stored in `cid` under `client_msg_id` (what a resend returns); on both
/// stores, for the transaction of `chat.rs` as well.
pub(crate) async fn stored_message(
    pool: &AnyPool,
    cid: &str,
    sender_id: i64,
    client_msg_id: &str,
) -> Result<Message, sqlx::Error> {
    let row = sqlx::query_as::<_, MessageRow>(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE conversation_id = $1 AND sender_id = $2 AND client_msg_id = $3"
    ))
    .bind(cid)
    .bind(sender_id)
    .bind(client_msg_id)
    .fetch_one(pool)
    .await?;
    Ok(row.into())
}

/// PostgreSQL's `deadlock_detected`.
fn is_deadlock(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40P01")
}

/// Marks a queue idle and empties it if its task ends without doing so itself.
struct Running<'a> {
    batches: &'a SendBatches,
    shard: usize,
    armed: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut shard = self.batches.shard(self.shard);
            shard.running = false;
            shard.waiting.clear();
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

    /// A migrated database of this test's own, with users 1 to 20; dropped by [`drop_database`].
    async fn database() -> (Db, String) {
        let name = unique_test_name("imcloud_batch").replace('-', "_");
        let db = Db::open(&format!("{}/{name}", postgres_base()))
            .await
            .expect("the test database (is PostgreSQL at IMCLOUD_TEST_POSTGRES_URL?)");
        for id in 1_i64..=20 {
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
        assert!(!batches.shard(shard_of(cid)).running);
        drop_database(db, &name).await;
    }

    /// Sends to many conversations at once are stored by one statement per queue, each conversation's
    /// seqs in order from 1, with both views of each private chat.
    #[tokio::test(flavor = "current_thread")]
    async fn sends_to_many_conversations_share_one_statement_per_queue() {
        let (db, name) = database().await;
        let batches = SendBatches::new(db.pool.clone());
        let cids: Vec<ConversationId> = (2..=20).map(|b| ConversationId::Private(1, b)).collect();
        let mut sends = Vec::new();
        for round in 0..3 {
            for (n, cid) in cids.iter().enumerate() {
                let sender = if round == 1 { 2 + n as i64 } else { 1 };
                sends.push((*cid, text(sender, &format!("r{round}"))));
            }
        }
        let answers = join_all(sends.iter().map(|(cid, m)| batches.store(*cid, m.clone()))).await;
        for ((cid, m), answer) in sends.iter().zip(&answers) {
            let (stored, created) = answer.as_ref().expect("stored");
            assert!(created);
            let round: i64 = m.client_msg_id[1..].parse().expect("round");
            assert_eq!(
                (stored.conversation_id.as_str(), stored.seq),
                (cid.to_string().as_str(), round + 1)
            );
        }
        let transactions: i64 =
            sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM messages")
                .fetch_one(&db.pool)
                .await
                .expect("counting transactions");
        assert!(
            (1..=SHARDS as i64).contains(&transactions),
            "57 sends in {transactions} transactions"
        );
        // User 1 sent the last message of each conversation; the peer read up to their own (seq 2).
        let read: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT user_id, read_seq FROM user_conversations WHERE conversation_id = 'u-1-7'",
        )
        .fetch_all(&db.pool)
        .await
        .expect("read state");
        let read: HashMap<i64, i64> = read.into_iter().collect();
        assert_eq!(read, HashMap::from([(1, 3), (7, 2)]));
        drop_database(db, &name).await;
    }

    /// A statement that fails for one conversation is run again one conversation at a time: only that
    /// conversation's sends fail, and the others in its batch are stored.
    #[tokio::test(flavor = "current_thread")]
    async fn one_conversations_fault_fails_only_its_own_sends() {
        let (db, name) = database().await;
        let batches = SendBatches::new(db.pool.clone());
        // User 99 does not exist: the read state's foreign key fails a statement with this chat.
        let bad = ConversationId::Private(1, 99);
        let good = (2..=20)
            .map(|b| ConversationId::Private(1, b))
            .find(|cid| shard_of(*cid) == shard_of(bad))
            .expect("a conversation in the same queue");
        let sends = [
            (bad, text(1, "x")),
            (good, text(1, "y")),
            (bad, text(1, "z")),
        ];
        let answers = join_all(sends.iter().map(|(cid, m)| batches.store(*cid, m.clone()))).await;
        assert!(
            answers[0].as_ref().is_err_and(|e| e.status == 409),
            "{answers:?}"
        );
        assert!(
            answers[2].as_ref().is_err_and(|e| e.status == 409),
            "{answers:?}"
        );
        let (m, created) = answers[1].as_ref().expect("the good send");
        assert_eq!((m.seq, *created), (1, true));
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
            .fetch_one(&db.pool)
            .await
            .expect("counting messages");
        assert_eq!(stored, 1);
        drop_database(db, &name).await;
    }

    /// With the database out of reach, a batch over many conversations fails at once, each send with a
    /// 503, instead of one failed attempt per conversation (30 here).
    #[tokio::test(flavor = "current_thread")]
    async fn a_database_out_of_reach_fails_the_whole_batch_at_once() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .acquire_timeout(Duration::from_millis(500))
            .connect_lazy("postgres://postgres@127.0.0.1:1/nothing_listens_here")
            .expect("a lazy pool");
        let batches = SendBatches::new(pool);
        let sends: Vec<(ConversationId, NewMessage)> = (2..=31)
            .map(|b| (ConversationId::Private(1, b), text(1, "m")))
            .collect();
        let started = std::time::Instant::now();
        let answers = join_all(sends.iter().map(|(cid, m)| batches.store(*cid, m.clone()))).await;
        let took = started.elapsed();
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().is_err_and(|e| e.status == 503)),
            "{answers:?}"
        );
        assert!(
            took < Duration::from_millis(2500),
            "the batch failed after {took:?}"
        );
    }

    /// A failed statement fails every send of its batch and stores none of them; the conversation is
    /// free again for the next send.
    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_statement_fails_its_whole_batch_and_stores_nothing() {
        let (db, name) = database().await;
        let batches = SendBatches::new(db.pool.clone());
        let cid = ConversationId::Private(1, 2);
        // User 99 does not exist: the read state's foreign key fails the statement (409: "removed
        // meanwhile", as when a user is deleted during a send).
        let bad = ConversationId::Private(1, 99);
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
