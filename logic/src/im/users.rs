//! Looking users up, and how one user sees another (the email only between friends).

use super::Im;
use super::error::ImError;
use super::rows::{UserRow, user_columns};
use imcloud_common::im::accounts::PublicUser;

impl Im {
    pub(crate) async fn find_user(&self, id: i64) -> Result<Option<UserRow>, ImError> {
        Ok(sqlx::query_as::<_, UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?)
    }

    pub(crate) async fn user_or_404(&self, id: i64) -> Result<UserRow, ImError> {
        self.find_user(id)
            .await?
            .ok_or_else(|| ImError::not_found(format!("no user {id}")))
    }

    /// A user that exists and has not been deleted.
    pub(crate) async fn live_user_or_404(&self, id: i64) -> Result<UserRow, ImError> {
        self.find_user(id)
            .await?
            .filter(|u| u.deleted_at.is_none())
            .ok_or_else(|| ImError::not_found(format!("no user {id}")))
    }

    /// Users by id, as `viewer` sees them (emails of the viewer's friends), in the order of `ids`.
    pub(crate) async fn public_users(
        &self,
        viewer: i64,
        ids: &[i64],
    ) -> Result<Vec<PublicUser>, ImError> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some(u) = self.find_user(id).await? {
                let friend = id == viewer || self.are_friends(viewer, id).await?;
                out.push(u.public(friend));
            }
        }
        Ok(out)
    }

    /// Whether `a` and `b` are friends, and whether either blocked the other: one round trip for a
    /// private send's two checks.
    pub(crate) async fn friends_and_blocked(
        &self,
        a: i64,
        b: i64,
    ) -> Result<(bool, bool), ImError> {
        let (friends, blocks) = sqlx::query_as::<_, (i64, i64)>(
            "SELECT (SELECT COUNT(*) FROM friendships WHERE user_id = $1 AND friend_id = $2), \
             (SELECT COUNT(*) FROM blocks WHERE (user_id = $1 AND blocked_id = $2) OR (user_id = $2 AND blocked_id = $1))",
        )
        .bind(a)
        .bind(b)
        .fetch_one(&self.db.pool)
        .await?;
        Ok((friends > 0, blocks > 0))
    }

    pub(crate) async fn are_friends(&self, a: i64, b: i64) -> Result<bool, ImError> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM friendships WHERE user_id = $1 AND friend_id = $2",
        )
        .bind(a)
        .bind(b)
        .fetch_one(&self.db.pool)
        .await?
            > 0)
    }
}
