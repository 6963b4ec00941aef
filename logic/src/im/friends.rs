//! Friend groups, friend requests and friendships. A friendship is two rows (one per side, each with
//! that side's friend group and remark), written and deleted together. A blocked user cannot ask to
//! be a friend, and friend requests are limited per user per day.

use imcloud_common::im::events::{FriendChange, FriendEvent, LiveEvent};
use imcloud_common::im::friends::*;
use imcloud_common::im::operations::*;
use imcloud_common::im::values::RequestStatus;

use sqlx::FromRow;

use super::db::now_ms;
use super::error::{ImError, is_unique_violation};
use super::paging;
use super::rate_limits::{refuse, window_check};
use super::rows::{FriendGroupRow, UserRow, status};
use super::{Caller, Done, Event, Im, ImResult};

const MAX_FRIEND_GROUPS: i64 = 50;
const DAY_MS: i64 = 86_400_000;

/// A friend group name that is already taken is a conflict; other errors stay database errors.
fn name_taken(e: sqlx::Error, name: &str) -> ImError {
    if is_unique_violation(&e) {
        ImError::conflict(format!("you already have a friend group named {name:?}"))
    } else {
        e.into()
    }
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

macro_rules! request_columns {
    () => {
        "id, from_id, to_id, note, friend_group_id, status, created_at, handled_at"
    };
}

fn friend_event(to: i64, other: i64, change: FriendChange) -> Event {
    Event::new(
        vec![to],
        LiveEvent::Friend(FriendEvent {
            user_id: other,
            change,
        }),
    )
}

impl Im {
    async fn friend_group_rows(&self, me: i64) -> Result<Vec<FriendGroup>, ImError> {
        Ok(sqlx::query_as::<_, FriendGroupRow>(
            "SELECT id, name, is_default FROM friend_groups WHERE user_id = $1 ORDER BY is_default DESC, id",
        )
        .bind(me)
        .fetch_all(&self.db.pool)
        .await?
        .into_iter()
        .map(FriendGroup::from)
        .collect())
    }

    pub(crate) async fn default_friend_group(&self, me: i64) -> Result<i64, ImError> {
        sqlx::query_scalar::<_, i64>(
            "SELECT id FROM friend_groups WHERE user_id = $1 AND is_default = 1",
        )
        .bind(me)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| ImError::internal("user has no default friend group"))
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

    pub(crate) async fn friend_groups(
        &self,
        c: &Caller<'_>,
        _r: ListFriendGroups,
    ) -> ImResult<FriendGroups> {
        Ok(Done::ok(FriendGroups {
            friend_groups: self.friend_group_rows(c.me).await?,
        }))
    }

    pub(crate) async fn create_friend_group(
        &self,
        c: &Caller<'_>,
        r: CreateFriendGroup,
    ) -> ImResult<FriendGroup> {
        let name = r.body.name.as_str();
        let count =
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM friend_groups WHERE user_id = $1")
                .bind(c.me)
                .fetch_one(&self.db.pool)
                .await?;
        if count >= MAX_FRIEND_GROUPS {
            return Err(ImError::conflict(format!(
                "at most {MAX_FRIEND_GROUPS} friend groups"
            )));
        }
        let row = sqlx::query_as::<_, FriendGroupRow>(
            "INSERT INTO friend_groups (user_id, name, created_at) VALUES ($1, $2, $3) RETURNING id, name, is_default",
        )
        .bind(c.me)
        .bind(name)
        .bind(now_ms())
        .fetch_one(&self.db.pool)
        .await
        .map_err(|e| name_taken(e, name))?;
        Ok(Done::created(row.into()))
    }

    pub(crate) async fn rename_friend_group(
        &self,
        c: &Caller<'_>,
        r: RenameFriendGroup,
    ) -> ImResult<FriendGroup> {
        let id = self.my_friend_group(c.me, Some(r.path.id.get())).await?;
        let name = r.body.name.as_str();
        let row = sqlx::query_as::<_, FriendGroupRow>(
            "UPDATE friend_groups SET name = $3 WHERE id = $1 AND user_id = $2 RETURNING id, name, is_default",
        )
        .bind(id)
        .bind(c.me)
        .bind(name)
        .fetch_one(&self.db.pool)
        .await
        .map_err(|e| name_taken(e, name))?;
        Ok(Done::ok(row.into()))
    }

    pub(crate) async fn delete_friend_group(
        &self,
        c: &Caller<'_>,
        r: DeleteFriendGroup,
    ) -> ImResult<FriendGroupDeleted> {
        let me = c.me;
        let id = self.my_friend_group(me, Some(r.path.id.get())).await?;
        let default = self.default_friend_group(me).await?;
        if id == default {
            return Err(ImError::conflict(
                "the default friend group cannot be deleted",
            ));
        }
        let mut tx = self.db.pool.begin().await?;
        let moved = sqlx::query("UPDATE friendships SET friend_group_id = $3 WHERE user_id = $1 AND friend_group_id = $2")
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
        Ok(Done::ok(FriendGroupDeleted {
            deleted: id,
            friends_moved_to: default,
            moved,
        }))
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
            status: status(&r.status),
            created_at: r.created_at,
            handled_at: r.handled_at,
        })
    }

    /// Refuses a friend request over `IMCLOUD_IM_FRIEND_REQUESTS_PER_DAY`.
    async fn check_friend_request_quota(&self, me: i64) -> Result<(), ImError> {
        let limit = self.settings.friend_requests_per_day;
        if limit <= 0 {
            return Ok(());
        }
        let now = now_ms();
        let (used, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at) FROM friend_requests WHERE from_id = $1 AND created_at > $2",
        )
        .bind(me)
        .bind(now - DAY_MS)
        .fetch_one(&self.db.pool)
        .await?;
        window_check(limit, used, oldest, DAY_MS, now).map_err(|wait| {
            refuse(
                "friend_requests",
                format!("at most {limit} friend requests a day; try again in {wait} s"),
                wait,
            )
        })
    }

    pub(crate) async fn request_friend(
        &self,
        c: &Caller<'_>,
        r: CreateFriendRequest,
    ) -> ImResult<FriendRequest> {
        let me = c.me;
        let req = r.body;
        let to = req.to_user_id.get();
        if to == me {
            return Err(ImError::invalid("you cannot befriend yourself"));
        }
        self.live_user_or_404(to).await?;
        if self.blocked_either(me, to).await? {
            return Err(ImError::forbidden(
                "you cannot befriend this user (blocked)",
            ));
        }
        let group = self
            .my_friend_group(me, req.friend_group_id.map(|g| g.get()))
            .await?;
        if self.are_friends(me, to).await? {
            return Err(ImError::conflict("you are already friends"));
        }
        let pending = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM friend_requests WHERE from_id = $1 AND to_id = $2 AND status = 'pending'",
        )
        .bind(me)
        .bind(to)
        .fetch_one(&self.db.pool)
        .await?;
        if pending > 0 {
            return Err(ImError::conflict(
                "a request to this user is already pending",
            ));
        }
        self.check_friend_request_quota(me).await?;
        let row = sqlx::query_as::<_, RequestRow>(concat!(
            "INSERT INTO friend_requests (from_id, to_id, note, friend_group_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING ",
            request_columns!()
        ))
        .bind(me)
        .bind(to)
        .bind(req.note.as_str())
        .bind(group)
        .bind(now_ms())
        .fetch_one(&self.db.pool)
        .await?;
        let for_them = self.request_view(to, row.clone()).await?;
        let event = self
            .notify(
                to,
                "friend_request",
                serde_json::to_value(&for_them).unwrap_or_default(),
            )
            .await?;
        if let Some(w) = &self.webhooks {
            w.friend_change("requested", me, to);
        }
        Ok(Done::created(self.request_view(me, row).await?).push(event))
    }

    pub(crate) async fn friend_requests(
        &self,
        c: &Caller<'_>,
        _r: ListFriendRequests,
    ) -> ImResult<FriendRequests> {
        let me = c.me;
        let rows = sqlx::query_as::<_, RequestRow>(concat!(
            "SELECT ",
            request_columns!(),
            " FROM friend_requests WHERE from_id = $1 OR to_id = $1 ORDER BY id DESC LIMIT 200"
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
        Ok(Done::ok(FriendRequests { incoming, outgoing }))
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
        if status(&row.status) != RequestStatus::Pending {
            return Err(ImError::conflict(format!(
                "the request is already {}",
                row.status
            )));
        }
        Ok(row)
    }

    pub(crate) async fn accept_friend(
        &self,
        c: &Caller<'_>,
        r: AcceptFriendRequest,
    ) -> ImResult<FriendRequest> {
        let me = c.me;
        let row = self.pending_request_to_me(me, r.path.id.get()).await?;
        if self.blocked_either(me, row.from_id).await? {
            return Err(ImError::forbidden(
                "you cannot befriend this user (blocked)",
            ));
        }
        let my_group = self
            .my_friend_group(me, r.body.friend_group_id.map(|g| g.get()))
            .await?;
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
        if let Some(w) = &self.webhooks {
            w.friend_change("added", me, row.from_id);
        }
        Ok(Done::ok(view)
            .push(notice)
            .push(friend_event(row.from_id, me, FriendChange::Added))
            .push(friend_event(me, row.from_id, FriendChange::Added)))
    }

    /// A request just settled as `status`: how I see it, and the result in the requester's message box.
    async fn settled(
        &self,
        me: i64,
        row: &RequestRow,
        st: &str,
        now: i64,
    ) -> Result<(FriendRequest, Event), ImError> {
        let mut done = row.clone();
        done.status = st.into();
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

    pub(crate) async fn refuse_friend(
        &self,
        c: &Caller<'_>,
        r: RefuseFriendRequest,
    ) -> ImResult<FriendRequest> {
        let row = self.pending_request_to_me(c.me, r.path.id.get()).await?;
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
        let (view, notice) = self.settled(c.me, &row, "refused", now).await?;
        Ok(Done::ok(view).push(notice))
    }

    pub(crate) async fn friends(&self, c: &Caller<'_>, r: ListFriends) -> ImResult<FriendsPage> {
        let me = c.me;
        let (limit, offset) = paging::cursor(&r.query)?;
        #[derive(FromRow)]
        struct Row {
            friend_group_id: i64,
            remark: String,
            #[sqlx(flatten)]
            user: UserRow,
        }
        let mut rows = sqlx::query_as::<_, Row>(
            "SELECT f.friend_group_id, f.remark, u.id, u.account_no, u.email, u.nickname, u.avatar, u.signature, \
             u.sex, u.birthday, u.location, u.created_at, u.deleted_at FROM friendships f JOIN users u ON u.id = f.friend_id \
             WHERE f.user_id = $1 ORDER BY u.nickname, u.id LIMIT $2 OFFSET $3",
        )
        .bind(me)
        .bind(limit + 1)
        .bind(offset)
        .fetch_all(&self.db.pool)
        .await?;
        let next_cursor = paging::next(&mut rows, limit, offset);
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
            let friend = Friend {
                online: online.contains(&r.user.id),
                user: r.user.public(true),
                remark: r.remark,
            };
            if let Some(g) = groups.iter_mut().find(|g| g.id == r.friend_group_id) {
                g.friends.push(friend);
            } else if let Some(g) = groups.first_mut() {
                g.friends.push(friend);
            }
        }
        Ok(Done::ok(FriendsPage {
            groups,
            next_cursor,
        }))
    }

    pub(crate) async fn update_friend(
        &self,
        c: &Caller<'_>,
        r: UpdateFriend,
    ) -> ImResult<FriendUpdated> {
        let me = c.me;
        let friend = r.path.user_id.get();
        if !self.are_friends(me, friend).await? {
            return Err(ImError::not_found(format!(
                "user {friend} is not your friend"
            )));
        }
        let group = match r.body.friend_group_id {
            Some(g) => Some(self.my_friend_group(me, Some(g.get())).await?),
            None => None,
        };
        sqlx::query(
            "UPDATE friendships SET remark = COALESCE($3, remark), friend_group_id = COALESCE($4, friend_group_id) \
             WHERE user_id = $1 AND friend_id = $2",
        )
        .bind(me)
        .bind(friend)
        .bind(r.body.remark.as_ref().map(|v| v.as_str()))
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
        Ok(Done::ok(FriendUpdated {
            user_id: friend,
            remark,
            friend_group_id: group,
        }))
    }

    pub(crate) async fn delete_friend(
        &self,
        c: &Caller<'_>,
        r: DeleteFriend,
    ) -> ImResult<FriendDeleted> {
        let me = c.me;
        let friend = r.path.user_id.get();
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
        if let Some(w) = &self.webhooks {
            w.friend_change("removed", me, friend);
        }
        Ok(Done::ok(FriendDeleted { deleted: friend })
            .push(friend_event(friend, me, FriendChange::Removed))
            .push(friend_event(me, friend, FriendChange::Removed)))
    }
}
