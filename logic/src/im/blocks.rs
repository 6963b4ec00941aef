//! Blocking: a user I block cannot message me, befriend me or invite me into a group (and while a
//! block stands either way, neither side can message the other privately). The block list is mine;
//! my other devices hear of each change (op 1007).

use imcloud_common::im::accounts::{BlockChanged, Blocked, Blocks};
use imcloud_common::im::events::{BlockEvent, LiveEvent};
use imcloud_common::im::operations::{Block, ListBlocks, Unblock};
use sqlx::FromRow;

use super::db::now_ms;
use super::error::ImError;
use super::rows::UserRow;
use super::{Caller, Done, Im, ImResult};

/// At most this many users blocked by one user.
const MAX_BLOCKS: i64 = 1000;

impl Im {
    /// Whether `a` blocked `b` or `b` blocked `a`.
    pub(crate) async fn blocked_either(&self, a: i64, b: i64) -> Result<bool, ImError> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM blocks WHERE (user_id = $1 AND blocked_id = $2) OR (user_id = $2 AND blocked_id = $1)",
        )
        .bind(a)
        .bind(b)
        .fetch_one(&self.db.pool)
        .await?
            > 0)
    }

    /// Whether `by` blocked `who`.
    pub(crate) async fn blocked_by(&self, by: i64, who: i64) -> Result<bool, ImError> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM blocks WHERE user_id = $1 AND blocked_id = $2",
        )
        .bind(by)
        .bind(who)
        .fetch_one(&self.db.pool)
        .await?
            > 0)
    }

    pub(crate) async fn blocks(&self, c: &Caller<'_>, _r: ListBlocks) -> ImResult<Blocks> {
        #[derive(FromRow)]
        struct Row {
            blocked_at: i64,
            #[sqlx(flatten)]
            user: UserRow,
        }
        let rows = sqlx::query_as::<_, Row>(
            "SELECT b.created_at AS blocked_at, u.id, u.account_no, u.email, u.nickname, u.avatar, u.signature, \
             u.sex, u.birthday, u.location, u.created_at, u.deleted_at \
             FROM blocks b JOIN users u ON u.id = b.blocked_id WHERE b.user_id = $1 ORDER BY b.created_at DESC, u.id",
        )
        .bind(c.me)
        .fetch_all(&self.db.pool)
        .await?;
        Ok(Done::ok(Blocks {
            blocked: rows
                .into_iter()
                .map(|r| Blocked {
                    created_at: r.blocked_at,
                    user: r.user.public(false),
                })
                .collect(),
        }))
    }

    pub(crate) async fn block(&self, c: &Caller<'_>, r: Block) -> ImResult<BlockChanged> {
        let target = r.body.user_id.get();
        if target == c.me {
            return Err(ImError::invalid("you cannot block yourself"));
        }
        self.user_or_404(target).await?;
        let count = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM blocks WHERE user_id = $1")
            .bind(c.me)
            .fetch_one(&self.db.pool)
            .await?;
        if count >= MAX_BLOCKS {
            return Err(ImError::conflict(format!(
                "at most {MAX_BLOCKS} blocked users"
            )));
        }
        sqlx::query(
            "INSERT INTO blocks (user_id, blocked_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (user_id, blocked_id) DO NOTHING",
        )
        .bind(c.me)
        .bind(target)
        .bind(now_ms())
        .execute(&self.db.pool)
        .await?;
        Ok(self.block_changed(c.me, target, true))
    }

    pub(crate) async fn unblock(&self, c: &Caller<'_>, r: Unblock) -> ImResult<BlockChanged> {
        let target = r.path.user_id.get();
        let n = sqlx::query("DELETE FROM blocks WHERE user_id = $1 AND blocked_id = $2")
            .bind(c.me)
            .bind(target)
            .execute(&self.db.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(ImError::not_found(format!(
                "you have not blocked user {target}"
            )));
        }
        Ok(self.block_changed(c.me, target, false))
    }

    fn block_changed(&self, me: i64, target: i64, blocked: bool) -> Done<BlockChanged> {
        Done::ok(BlockChanged {
            user_id: target,
            blocked,
        })
        .event(
            vec![me],
            LiveEvent::Block(BlockEvent {
                user_id: target,
                blocked,
            }),
        )
    }
}
