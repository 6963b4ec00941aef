//! Friend groups, friend requests and friendships. A friendship is two rows (one per side, each with
//! that side's friend group and remark), written and deleted together.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::FromRow;
use utoipa::ToSchema;

use super::args::{Args, opt_text, text};
use super::db::now_ms;
use super::error::{ImError, is_unique_violation};
use super::events::{Event, OP_FRIEND};
use super::users::{PublicUser, User};
use super::{Im, ImResult, Reply};

const MAX_FRIEND_GROUPS: i64 = 50;

/// A friend group name that is already taken is a conflict; other errors stay database errors.
fn name_taken(e: sqlx::Error, name: &str) -> ImError {
    if is_unique_violation(&e) {
        ImError::conflict(format!("you already have a friend group named {name:?}"))
    } else {
        e.into()
    }
}

#[derive(Debug, Clone, FromRow, Serialize, ToSchema)]
pub struct FriendGroup {
    pub id: i64,
    pub name: String,
    /// 1 for the default group (new friends land here; it cannot be deleted)
    pub is_default: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FriendGroupReq {
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FriendRequestReq {
    pub to_user_id: i64,
    #[serde(default)]
    pub note: String,
    /// My friend group for them; omitted = my default group.
    pub friend_group_id: Option<i64>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptFriendReq {
    /// My friend group for them; omitted = my default group.
    pub friend_group_id: Option<i64>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateFriendReq {
    pub remark: Option<String>,
    pub friend_group_id: Option<i64>,
}

#[derive(Debug, Clone, FromRow)]
struct RequestRow {
    id: i64,
    from_id: i64,
    to_id: i64,
    note: String,
    friend_group_id: i64,
    status: String,
    created_at: i64,
    handled_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FriendRequest {
    pub id: i64,
    pub from_user_id: i64,
    pub to_user_id: i64,
    /// The other party.
    pub user: Option<PublicUser>,
    pub note: String,
    /// pending, accepted or refused
    pub status: String,
    pub created_at: i64,
    pub handled_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Friend {
    pub user: PublicUser,
    pub remark: String,
    pub online: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FriendGroupWithFriends {
    pub id: i64,
    pub name: String,
    pub is_default: i64,
    pub friends: Vec<Friend>,
}

macro_rules! request_columns {
    () => {
        "id, from_id, to_id, note, friend_group_id, status, created_at, handled_at"
    };
}

impl Im {
    async fn friend_group_rows(&self, me: i64) -> Result<Vec<FriendGroup>, ImError> {
        Ok(sqlx::query_as::<_, FriendGroup>(
            "SELECT id, name, is_default FROM friend_groups WHERE user_id = $1 ORDER BY is_default DESC, id",
        )
        .bind(me)
        .fetch_all(&self.db.pool)
        .await?)
    }

    pub(crate) async fn default_friend_group(&self, me: i64) -> Result<i64, ImError> {
        sqlx::query_scalar::<_, i64>(
            "SELECT id FROM friend_groups WHERE user_id = $1 AND is_default = 1",
        )
        .bind(me)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| ImError::new(500, "internal", "user has no default friend group"))
    }

    /// `id` when it is one of my friend groups, my default group when `None`.
    async fn my_friend_group(&self, me: i64, id: Option<i64>) -> Result<i64, ImError> {
        let Some(id) = id else {
            return self.default_friend_group(me).await;
        };
        let mine = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM friend_groups WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(me)
        .fetch_one(&self.db.pool)
        .await?;
        if mine == 0 {
            return Err(ImError::not_found(format!("no friend group {id} of yours")));
        }
        Ok(id)
    }

    pub(crate) async fn friend_groups(&self, me: i64) -> ImResult {
        Ok(Reply::ok(
            json!({"friend_groups": self.friend_group_rows(me).await?}),
        ))
    }

    pub(crate) async fn create_friend_group(&self, me: i64, a: &Args) -> ImResult {
        let req: FriendGroupReq = a.body()?;
        let name = text("name", &req.name, 1, 20)?;
        let count =
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM friend_groups WHERE user_id = $1")
                .bind(me)
                .fetch_one(&self.db.pool)
                .await?;
        if count >= MAX_FRIEND_GROUPS {
            return Err(ImError::conflict(format!(
                "at most {MAX_FRIEND_GROUPS} friend groups"
            )));
        }
        let row = sqlx::query_as::<_, FriendGroup>(
            "INSERT INTO friend_groups (user_id, name, created_at) VALUES ($1, $2, $3) RETURNING id, name, is_default",
        )
        .bind(me)
        .bind(&name)
        .bind(now_ms())
        .fetch_one(&self.db.pool)
        .await
        .map_err(|e| name_taken(e, &name))?;
        Ok(Reply::created(row))
    }

    pub(crate) async fn rename_friend_group(&self, me: i64, a: &Args) -> ImResult {
        let id = self.my_friend_group(me, Some(a.id("id")?)).await?;
        let req: FriendGroupReq = a.body()?;
        let name = text("name", &req.name, 1, 20)?;
        let row = sqlx::query_as::<_, FriendGroup>(
            "UPDATE friend_groups SET name = $3 WHERE id = $1 AND user_id = $2 RETURNING id, name, is_default",
        )
        .bind(id)
        .bind(me)
        .bind(&name)
        .fetch_one(&self.db.pool)
        .await
        .map_err(|e| name_taken(e, &name))?;
        Ok(Reply::ok(row))
    }

    pub(crate) async fn delete_friend_group(&self, me: i64, a: &Args) -> ImResult {
        let id = self.my_friend_group(me, Some(a.id("id")?)).await?;
        let default = self.default_friend_group(me).await?;
        if id == default {
            return Err(ImError::conflict(
                "the default friend group cannot be deleted",
            ));
        }
        let mut tx = self.db.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE friendships SET friend_group_id = $3 WHERE user_id = $1 AND friend_group_id = $2",
        )
        .bind(me)
        .bind(id)
        .bind(default)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM friend_groups WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(me)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Reply::ok(
            json!({"deleted": id, "friends_moved_to": default, "moved": moved}),
        ))
    }

    async fn request_view(&self, me: i64, r: RequestRow) -> Result<FriendRequest, ImError> {
        let other = if r.from_id == me { r.to_id } else { r.from_id };
        let user = self.public_users(me, &[other]).await?.pop();
        Ok(FriendRequest {
            id: r.id,
            from_user_id: r.from_id,
            to_user_id: r.to_id,
            user,
            note: r.note,
            status: r.status,
            created_at: r.created_at,
            handled_at: r.handled_at,
        })
    }

    pub(crate) async fn request_friend(&self, me: i64, a: &Args) -> ImResult {
        let req: FriendRequestReq = a.body()?;
        let note = text("note", &req.note, 0, 100)?;
        if req.to_user_id == me {
            return Err(ImError::invalid("you cannot befriend yourself"));
        }
        self.user_or_404(req.to_user_id).await?;
        let group = self.my_friend_group(me, req.friend_group_id).await?;
        if self.are_friends(me, req.to_user_id).await? {
            return Err(ImError::conflict("you are already friends"));
        }
        let pending = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM friend_requests WHERE from_id = $1 AND to_id = $2 AND status = 'pending'",
        )
        .bind(me)
        .bind(req.to_user_id)
        .fetch_one(&self.db.pool)
        .await?;
        if pending > 0 {
            return Err(ImError::conflict(
                "a request to this user is already pending",
            ));
        }
        let row = sqlx::query_as::<_, RequestRow>(concat!(
            "INSERT INTO friend_requests (from_id, to_id, note, friend_group_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING ",
            request_columns!()
        ))
        .bind(me)
        .bind(req.to_user_id)
        .bind(&note)
        .bind(group)
        .bind(now_ms())
        .fetch_one(&self.db.pool)
        .await?;
        let to = row.to_id;
        let for_them = self.request_view(to, row.clone()).await?;
        let event = self
            .notify(
                to,
                "friend_request",
                serde_json::to_value(&for_them).unwrap_or_default(),
            )
            .await?;
        Ok(Reply::created(self.request_view(me, row).await?).event(event))
    }

    pub(crate) async fn friend_requests(&self, me: i64) -> ImResult {
        let rows = sqlx::query_as::<_, RequestRow>(concat!(
            "SELECT ",
            request_columns!(),
            " FROM friend_requests WHERE from_id = $1 OR to_id = $1 \
             ORDER BY id DESC LIMIT 200"
        ))
        .bind(me)
        .fetch_all(&self.db.pool)
        .await?;
        let (mut incoming, mut outgoing) = (Vec::new(), Vec::new());
        for r in rows {
            if r.to_id == me {
                incoming.push(self.request_view(me, r).await?);
            } else {
                outgoing.push(self.request_view(me, r).await?);
            }
        }
        Ok(Reply::ok(
            json!({"incoming": incoming, "outgoing": outgoing}),
        ))
    }

    /// A pending request addressed to me.
    async fn pending_request_to_me(&self, me: i64, id: i64) -> Result<RequestRow, ImError> {
        let row = sqlx::query_as::<_, RequestRow>(concat!(
            "SELECT ",
            request_columns!(),
            " FROM friend_requests WHERE id = $1 AND to_id = $2"
        ))
        .bind(id)
        .bind(me)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| ImError::not_found(format!("no friend request {id} to you")))?;
        if row.status != "pending" {
            return Err(ImError::conflict(format!(
                "the request is already {}",
                row.status
            )));
        }
        Ok(row)
    }

    pub(crate) async fn accept_friend(&self, me: i64, a: &Args) -> ImResult {
        let row = self.pending_request_to_me(me, a.id("id")?).await?;
        let req: AcceptFriendReq = a.body()?;
        let my_group = self.my_friend_group(me, req.friend_group_id).await?;
        // The requester's group may have been deleted since: fall back to their default.
        let their_group = match self
            .my_friend_group(row.from_id, Some(row.friend_group_id))
            .await
        {
            Ok(g) => g,
            Err(_) => self.default_friend_group(row.from_id).await?,
        };
        let now = now_ms();
        let mut tx = self.db.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE friend_requests SET status = 'accepted', handled_at = $2 WHERE id = $1 AND status = 'pending'",
        )
        .bind(row.id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Err(ImError::conflict("the request was handled meanwhile"));
        }
        for (user, friend, group) in [(me, row.from_id, my_group), (row.from_id, me, their_group)] {
            sqlx::query(
                "INSERT INTO friendships (user_id, friend_id, friend_group_id, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, friend_id) DO NOTHING",
            )
            .bind(user)
            .bind(friend)
            .bind(group)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        // Any request the other way is settled too.
        sqlx::query(
            "UPDATE friend_requests SET status = 'accepted', handled_at = $3 WHERE from_id = $1 AND to_id = $2 AND status = 'pending'",
        )
        .bind(me)
        .bind(row.from_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let (view, notice) = self.settled(me, &row, "accepted", now).await?;
        Ok(Reply::ok(view)
            .event(notice)
            .event(Event::new(
                vec![row.from_id],
                OP_FRIEND,
                "friend",
                json!({"user_id": me, "change": "added"}),
            ))
            .event(Event::new(
                vec![me],
                OP_FRIEND,
                "friend",
                json!({"user_id": row.from_id, "change": "added"}),
            )))
    }

    /// A request just settled as `status`: how I see it, and the result in the requester's message box.
    async fn settled(
        &self,
        me: i64,
        row: &RequestRow,
        status: &str,
        now: i64,
    ) -> Result<(FriendRequest, Event), ImError> {
        let mut done = row.clone();
        done.status = status.into();
        done.handled_at = Some(now);
        let for_them = self.request_view(row.from_id, done.clone()).await?;
        let notice = self
            .notify(
                row.from_id,
                "friend_request_result",
                serde_json::to_value(&for_them).unwrap_or_default(),
            )
            .await?;
        Ok((self.request_view(me, done).await?, notice))
    }

    pub(crate) async fn refuse_friend(&self, me: i64, a: &Args) -> ImResult {
        let row = self.pending_request_to_me(me, a.id("id")?).await?;
        let now = now_ms();
        let claimed = sqlx::query(
            "UPDATE friend_requests SET status = 'refused', handled_at = $2 WHERE id = $1 AND status = 'pending'",
        )
        .bind(row.id)
        .bind(now)
        .execute(&self.db.pool)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Err(ImError::conflict("the request was handled meanwhile"));
        }
        let (view, notice) = self.settled(me, &row, "refused", now).await?;
        Ok(Reply::ok(view).event(notice))
    }

    pub(crate) async fn friends(&self, me: i64) -> ImResult {
        #[derive(FromRow)]
        struct Row {
            friend_group_id: i64,
            remark: String,
            #[sqlx(flatten)]
            user: User,
        }
        let rows = sqlx::query_as::<_, Row>(
            "SELECT f.friend_group_id, f.remark, u.id, u.account_no, u.email, u.nickname, u.avatar, u.signature, \
             u.sex, u.birthday, u.location, u.created_at FROM friendships f JOIN users u ON u.id = f.friend_id \
             WHERE f.user_id = $1 ORDER BY u.nickname, u.id",
        )
        .bind(me)
        .fetch_all(&self.db.pool)
        .await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.user.id).collect();
        let online = self.online(&ids).await;
        let mut groups: Vec<FriendGroupWithFriends> = self
            .friend_group_rows(me)
            .await?
            .into_iter()
            .map(|g| FriendGroupWithFriends {
                id: g.id,
                name: g.name,
                is_default: g.is_default,
                friends: Vec::new(),
            })
            .collect();
        for r in rows {
            let is_online = online.contains(&r.user.id);
            let friend = Friend {
                user: r.user.public(true),
                remark: r.remark,
                online: is_online,
            };
            if let Some(g) = groups.iter_mut().find(|g| g.id == r.friend_group_id) {
                g.friends.push(friend);
            } else if let Some(g) = groups.first_mut() {
                g.friends.push(friend);
            }
        }
        Ok(Reply::ok(json!({"groups": groups})))
    }

    pub(crate) async fn update_friend(&self, me: i64, a: &Args) -> ImResult {
        let friend = a.id("user_id")?;
        if !self.are_friends(me, friend).await? {
            return Err(ImError::not_found(format!(
                "user {friend} is not your friend"
            )));
        }
        let req: UpdateFriendReq = a.body()?;
        let remark = opt_text("remark", req.remark.as_deref(), 0, 32)?;
        let group = match req.friend_group_id {
            Some(g) => Some(self.my_friend_group(me, Some(g)).await?),
            None => None,
        };
        sqlx::query(
            "UPDATE friendships SET remark = COALESCE($3, remark), friend_group_id = COALESCE($4, friend_group_id) \
             WHERE user_id = $1 AND friend_id = $2",
        )
        .bind(me)
        .bind(friend)
        .bind(remark)
        .bind(group)
        .execute(&self.db.pool)
        .await?;
        let (remark, group): (String, i64) = sqlx::query_as(
            "SELECT remark, friend_group_id FROM friendships WHERE user_id = $1 AND friend_id = $2",
        )
        .bind(me)
        .bind(friend)
        .fetch_one(&self.db.pool)
        .await?;
        Ok(Reply::ok(
            json!({"user_id": friend, "remark": remark, "friend_group_id": group}),
        ))
    }

    pub(crate) async fn delete_friend(&self, me: i64, a: &Args) -> ImResult {
        let friend = a.id("user_id")?;
        let removed = sqlx::query(
            "DELETE FROM friendships WHERE (user_id = $1 AND friend_id = $2) OR (user_id = $2 AND friend_id = $1)",
        )
        .bind(me)
        .bind(friend)
        .execute(&self.db.pool)
        .await?
        .rows_affected();
        if removed == 0 {
            return Err(ImError::not_found(format!(
                "user {friend} is not your friend"
            )));
        }
        Ok(Reply::ok(json!({"deleted": friend}))
            .event(Event::new(
                vec![friend],
                OP_FRIEND,
                "friend",
                json!({"user_id": me, "change": "removed"}),
            ))
            .event(Event::new(
                vec![me],
                OP_FRIEND,
                "friend",
                json!({"user_id": friend, "change": "removed"}),
            )))
    }
}
