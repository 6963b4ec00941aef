//! User rows and the two ways a user is shown: to themself (everything but the password hash) and to
//! others (no email unless they are friends).

use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;

use super::Im;
use super::error::ImError;

/// The columns of [`User`], for `concat!` into static SQL.
macro_rules! user_columns {
    () => {
        "id, account_no, email, nickname, avatar, signature, sex, birthday, location, created_at"
    };
}
pub(crate) use user_columns;

#[derive(Debug, Clone, FromRow, Serialize, ToSchema)]
pub struct User {
    pub id: i64,
    pub account_no: String,
    pub email: String,
    pub nickname: String,
    pub avatar: String,
    pub signature: String,
    /// unknown, male or female
    pub sex: String,
    /// YYYY-MM-DD or empty
    pub birthday: String,
    pub location: String,
    pub created_at: i64,
}

/// A user as others see them: the email only for friends.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicUser {
    pub id: i64,
    pub account_no: String,
    pub nickname: String,
    pub avatar: String,
    pub signature: String,
    pub sex: String,
    pub birthday: String,
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
}

impl User {
    pub fn public(self, show_email: bool) -> PublicUser {
        PublicUser {
            id: self.id,
            account_no: self.account_no,
            nickname: self.nickname,
            avatar: self.avatar,
            signature: self.signature,
            sex: self.sex,
            birthday: self.birthday,
            location: self.location,
            email: show_email.then_some(self.email),
            online: None,
        }
    }
}

impl Im {
    pub(crate) async fn find_user(&self, id: i64) -> Result<Option<User>, ImError> {
        Ok(sqlx::query_as::<_, User>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?)
    }

    pub(crate) async fn user_or_404(&self, id: i64) -> Result<User, ImError> {
        self.find_user(id)
            .await?
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
