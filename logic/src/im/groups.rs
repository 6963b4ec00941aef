//! Groups: lifecycle (create, update, dismiss, transfer), membership (join directly or by approved
//! request, leave, kick), roles (owner, admin, member) and mutes (per member, or the whole group).
//! Each group has the conversation `g-<id>`; a member sees its messages from the moment they joined.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::FromRow;
use utoipa::ToSchema;

use super::accounts::check_image_ref;
use super::args::{Args, opt_text, text};
use super::db::now_ms;
use super::error::{ImError, is_unique_violation};
use super::events::{Event, OP_GROUP};
use super::users::{PublicUser, User};
use super::{Im, ImResult, Reply};
use rand::Rng;

macro_rules! group_columns {
    () => {
        "id, group_no, name, description, avatar, owner_id, max_members, need_approval, all_muted, created_at"
    };
}
const DEFAULT_MAX_MEMBERS: i64 = 500;
/// Groups one user may be in (it bounds their group and conversation lists).
const MAX_GROUPS_JOINED: i64 = 500;

#[derive(Debug, Clone, FromRow, Serialize, ToSchema)]
pub struct GroupRow {
    pub id: i64,
    pub group_no: String,
    pub name: String,
    pub description: String,
    pub avatar: String,
    pub owner_id: i64,
    pub max_members: i64,
    pub need_approval: i64,
    pub all_muted: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Group {
    pub id: i64,
    pub group_no: String,
    pub name: String,
    pub description: String,
    pub avatar: String,
    pub owner_id: i64,
    pub max_members: i64,
    pub need_approval: bool,
    pub all_muted: bool,
    pub created_at: i64,
    pub member_count: i64,
    /// My role, when I am a member: owner, admin or member.
    pub my_role: Option<String>,
    /// The group's conversation id.
    pub conversation_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroupReq {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub avatar: String,
    /// 2 to the server's limit; default 500.
    pub max_members: Option<i64>,
    #[serde(default)]
    pub need_approval: bool,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroupReq {
    pub name: Option<String>,
    pub description: Option<String>,
    pub avatar: Option<String>,
    pub max_members: Option<i64>,
    pub need_approval: Option<bool>,
    /// Only the owner and admins may speak while on.
    pub all_muted: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferReq {
    pub user_id: i64,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinReq {
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemberReq {
    /// admin or member (owner only; ownership moves with /transfer).
    pub role: Option<String>,
    /// Unix milliseconds; 0 unmutes (owner or admin).
    pub muted_until: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Member {
    pub user: PublicUser,
    pub role: String,
    pub muted_until: i64,
    pub joined_at: i64,
    pub online: bool,
}

#[derive(Debug, Clone, FromRow, Serialize, ToSchema)]
pub struct JoinRequest {
    pub id: i64,
    pub group_id: i64,
    pub user_id: i64,
    pub note: String,
    /// pending, accepted or refused
    pub status: String,
    pub handled_by: Option<i64>,
    pub created_at: i64,
    pub handled_at: Option<i64>,
}

macro_rules! join_columns {
    () => {
        "id, group_id, user_id, note, status, handled_by, created_at, handled_at"
    };
}

pub fn group_conversation(id: i64) -> String {
    format!("g-{id}")
}

fn is_manager(role: &str) -> bool {
    role == "owner" || role == "admin"
}

impl Im {
    pub(crate) async fn group_row(&self, id: i64) -> Result<GroupRow, ImError> {
        sqlx::query_as::<_, GroupRow>(concat!(
            "SELECT ",
            group_columns!(),
            " FROM chat_groups WHERE id = $1 AND dismissed = 0"
        ))
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| ImError::not_found(format!("no group {id}")))
    }

    /// My role and mute in a group, when I am a member.
    pub(crate) async fn membership(
        &self,
        group: i64,
        user: i64,
    ) -> Result<Option<(String, i64)>, ImError> {
        Ok(sqlx::query_as::<_, (String, i64)>(
            "SELECT role, muted_until FROM group_members WHERE group_id = $1 AND user_id = $2",
        )
        .bind(group)
        .bind(user)
        .fetch_optional(&self.db.pool)
        .await?)
    }

    async fn role_or_403(&self, group: i64, me: i64) -> Result<String, ImError> {
        self.membership(group, me)
            .await?
            .map(|(role, _)| role)
            .ok_or_else(|| ImError::forbidden("you are not a member of this group"))
    }

    async fn manager_or_403(&self, group: i64, me: i64) -> Result<String, ImError> {
        let role = self.role_or_403(group, me).await?;
        if !is_manager(&role) {
            return Err(ImError::forbidden("only the owner or an admin may do this"));
        }
        Ok(role)
    }

    pub(crate) async fn member_ids(&self, group: i64) -> Result<Vec<i64>, ImError> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT user_id FROM group_members WHERE group_id = $1")
                .bind(group)
                .fetch_all(&self.db.pool)
                .await?,
        )
    }

    async fn member_count(&self, group: i64) -> Result<i64, ImError> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM group_members WHERE group_id = $1")
                .bind(group)
                .fetch_one(&self.db.pool)
                .await?,
        )
    }

    pub(crate) async fn group_view(&self, row: GroupRow, me: i64) -> Result<Group, ImError> {
        let member_count = self.member_count(row.id).await?;
        let my_role = self.membership(row.id, me).await?.map(|(r, _)| r);
        Ok(Group {
            conversation_id: group_conversation(row.id),
            id: row.id,
            group_no: row.group_no,
            name: row.name,
            description: row.description,
            avatar: row.avatar,
            owner_id: row.owner_id,
            max_members: row.max_members,
            need_approval: row.need_approval != 0,
            all_muted: row.all_muted != 0,
            created_at: row.created_at,
            member_count,
            my_role,
        })
    }

    fn check_max_members(&self, n: i64) -> Result<(), ImError> {
        if n < 2 || n > self.settings.max_group_size {
            return Err(ImError::invalid(format!(
                "max_members must be between 2 and {}",
                self.settings.max_group_size
            )));
        }
        Ok(())
    }

    /// Adds a member (their view of the conversation starts at its current seq); `false` when they
    /// already were one.
    async fn add_member(&self, group: i64, user: i64, role: &str) -> Result<bool, ImError> {
        let cid = group_conversation(group);
        let now = now_ms();
        let mut tx = self.db.pool.begin().await?;
        // Locks the group's row until commit: concurrent joins queue here, so the size limit holds.
        let max = sqlx::query_scalar::<_, i64>(
            "UPDATE chat_groups SET max_members = max_members WHERE id = $1 RETURNING max_members",
        )
        .bind(group)
        .fetch_one(&mut *tx)
        .await?;
        let count =
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM group_members WHERE group_id = $1")
                .bind(group)
                .fetch_one(&mut *tx)
                .await?;
        if count >= max {
            return Err(ImError::conflict("the group is full"));
        }
        let joined =
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM group_members WHERE user_id = $1")
                .bind(user)
                .fetch_one(&mut *tx)
                .await?;
        if joined >= MAX_GROUPS_JOINED {
            return Err(ImError::conflict(format!(
                "a user may be in at most {MAX_GROUPS_JOINED} groups"
            )));
        }
        let added = sqlx::query(
            "INSERT INTO group_members (group_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (group_id, user_id) DO NOTHING",
        )
        .bind(group)
        .bind(user)
        .bind(role)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if added == 0 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO conversations (id, updated_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(&cid)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // Locks the counter row (as a send does): no message can take a seq around the joiner's start.
        let seq = sqlx::query_scalar::<_, i64>(
            "UPDATE conversations SET last_seq = last_seq WHERE id = $1 RETURNING last_seq",
        )
        .bind(&cid)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO user_conversations (user_id, conversation_id, read_seq, min_seq) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (user_id, conversation_id) DO UPDATE SET read_seq = $3, min_seq = $3",
        )
        .bind(user)
        .bind(&cid)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn drop_member(&self, group: i64, user: i64) -> Result<bool, ImError> {
        let mut tx = self.db.pool.begin().await?;
        let n = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(group)
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM user_conversations WHERE user_id = $1 AND conversation_id = $2")
            .bind(user)
            .bind(group_conversation(group))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn group_event(
        &self,
        group: i64,
        change: &str,
        data: serde_json::Value,
    ) -> Result<Event, ImError> {
        let mut body = json!({"group_id": group, "change": change});
        if let (Some(b), serde_json::Value::Object(d)) = (body.as_object_mut(), data) {
            b.extend(d);
        }
        Ok(Event::new(
            self.member_ids(group).await?,
            OP_GROUP,
            "group",
            body,
        ))
    }

    pub(crate) async fn create_group(&self, me: i64, a: &Args) -> ImResult {
        let req: CreateGroupReq = a.body()?;
        let name = text("name", &req.name, 1, 32)?;
        let description = text("description", &req.description, 0, 200)?;
        let avatar = check_image_ref("avatar", &req.avatar)?;
        let max_members = req
            .max_members
            .unwrap_or(DEFAULT_MAX_MEMBERS.min(self.settings.max_group_size));
        self.check_max_members(max_members)?;
        let owned = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM chat_groups WHERE owner_id = $1 AND dismissed = 0",
        )
        .bind(me)
        .fetch_one(&self.db.pool)
        .await?;
        if owned >= self.settings.max_groups_owned {
            return Err(ImError::conflict(format!(
                "you already own {owned} groups (the limit is {})",
                self.settings.max_groups_owned
            )));
        }
        for _ in 0..5 {
            let group_no = rand::rng()
                .random_range(10_000_000..100_000_000i64)
                .to_string();
            let inserted = sqlx::query_as::<_, GroupRow>(concat!("INSERT INTO chat_groups (group_no, name, description, avatar, owner_id, max_members, need_approval, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ", group_columns!()))
            .bind(&group_no)
            .bind(&name)
            .bind(&description)
            .bind(&avatar)
            .bind(me)
            .bind(max_members)
            .bind(req.need_approval as i64)
            .bind(now_ms())
            .fetch_one(&self.db.pool)
            .await;
            match inserted {
                Ok(row) => {
                    if let Err(e) = self.add_member(row.id, me, "owner").await {
                        // No group without its owner.
                        sqlx::query("DELETE FROM chat_groups WHERE id = $1")
                            .bind(row.id)
                            .execute(&self.db.pool)
                            .await?;
                        return Err(e);
                    }
                    return Ok(Reply::created(self.group_view(row, me).await?));
                }
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ImError::new(
            503,
            "unavailable",
            "could not allocate a group number; retry",
        ))
    }

    pub(crate) async fn my_groups(&self, me: i64) -> ImResult {
        let rows = sqlx::query_as::<_, GroupRow>(
            "SELECT g.id, g.group_no, g.name, g.description, g.avatar, g.owner_id, g.max_members, g.need_approval, \
             g.all_muted, g.created_at FROM chat_groups g JOIN group_members m ON m.group_id = g.id \
             WHERE m.user_id = $1 AND g.dismissed = 0 ORDER BY g.id",
        )
        .bind(me)
        .fetch_all(&self.db.pool)
        .await?;
        let mut groups = Vec::with_capacity(rows.len());
        for r in rows {
            groups.push(self.group_view(r, me).await?);
        }
        Ok(Reply::ok(json!({"groups": groups})))
    }

    pub(crate) async fn group(&self, me: i64, a: &Args) -> ImResult {
        let row = self.group_row(a.id("id")?).await?;
        Ok(Reply::ok(self.group_view(row, me).await?))
    }

    pub(crate) async fn update_group(&self, me: i64, a: &Args) -> ImResult {
        let id = a.id("id")?;
        self.group_row(id).await?;
        self.manager_or_403(id, me).await?;
        let req: UpdateGroupReq = a.body()?;
        let name = opt_text("name", req.name.as_deref(), 1, 32)?;
        let description = opt_text("description", req.description.as_deref(), 0, 200)?;
        let avatar = req
            .avatar
            .as_deref()
            .map(|v| check_image_ref("avatar", v))
            .transpose()?;
        if let Some(n) = req.max_members {
            self.check_max_members(n)?;
            if n < self.member_count(id).await? {
                return Err(ImError::conflict(
                    "max_members is below the current member count",
                ));
            }
        }
        sqlx::query(
            "UPDATE chat_groups SET name = COALESCE($2, name), description = COALESCE($3, description), \
             avatar = COALESCE($4, avatar), max_members = COALESCE($5, max_members), \
             need_approval = COALESCE($6, need_approval), all_muted = COALESCE($7, all_muted) WHERE id = $1",
        )
        .bind(id)
        .bind(name)
        .bind(description)
        .bind(avatar)
        .bind(req.max_members)
        .bind(req.need_approval.map(i64::from))
        .bind(req.all_muted.map(i64::from))
        .execute(&self.db.pool)
        .await?;
        let view = self.group_view(self.group_row(id).await?, me).await?;
        let shared = Group {
            my_role: None,
            ..view.clone()
        };
        let event = self
            .group_event(id, "updated", json!({"group": shared}))
            .await?;
        Ok(Reply::ok(view).event(event))
    }

    pub(crate) async fn dismiss_group(&self, me: i64, a: &Args) -> ImResult {
        let id = a.id("id")?;
        let row = self.group_row(id).await?;
        if self.role_or_403(id, me).await? != "owner" {
            return Err(ImError::forbidden("only the owner may dismiss the group"));
        }
        let event = self.group_event(id, "dismissed", json!({})).await?;
        let members = event.to.clone();
        let mut tx = self.db.pool.begin().await?;
        sqlx::query("UPDATE chat_groups SET dismissed = 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM group_members WHERE group_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM user_conversations WHERE conversation_id = $1")
            .bind(group_conversation(id))
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE group_join_requests SET status = 'refused', handled_at = $2 WHERE group_id = $1 AND status = 'pending'")
            .bind(id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut reply = Reply::ok(json!({"dismissed": id})).event(event);
        for m in members.into_iter().filter(|m| *m != me) {
            reply = reply.event(
                self.notify(
                    m,
                    "group_notice",
                    json!({"group_id": id, "name": row.name, "change": "dismissed"}),
                )
                .await?,
            );
        }
        Ok(reply)
    }

    pub(crate) async fn transfer_group(&self, me: i64, a: &Args) -> ImResult {
        let id = a.id("id")?;
        self.group_row(id).await?;
        if self.role_or_403(id, me).await? != "owner" {
            return Err(ImError::forbidden("only the owner may transfer the group"));
        }
        let req: TransferReq = a.body()?;
        if req.user_id == me {
            return Err(ImError::invalid("you already own the group"));
        }
        if self.membership(id, req.user_id).await?.is_none() {
            return Err(ImError::not_found(format!(
                "user {} is not a member",
                req.user_id
            )));
        }
        // Each step must change exactly one row, or nothing changes: a racing transfer, leave or dismiss
        // cannot leave the group with no owner or two.
        let mut tx = self.db.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE chat_groups SET owner_id = $2 WHERE id = $1 AND owner_id = $3 AND dismissed = 0",
        )
        .bind(id)
        .bind(req.user_id)
        .bind(me)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let promoted = sqlx::query(
            "UPDATE group_members SET role = 'owner', muted_until = 0 WHERE group_id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(req.user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let stepped_down = sqlx::query(
            "UPDATE group_members SET role = 'admin' WHERE group_id = $1 AND user_id = $2 AND role = 'owner'",
        )
        .bind(id)
        .bind(me)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if (moved, promoted, stepped_down) != (1, 1, 1) {
            return Err(ImError::conflict("the group changed meanwhile; retry"));
        }
        tx.commit().await?;
        let event = self
            .group_event(
                id,
                "owner",
                json!({"user_id": req.user_id, "previous_owner": me}),
            )
            .await?;
        Ok(Reply::ok(self.group_view(self.group_row(id).await?, me).await?).event(event))
    }

    pub(crate) async fn group_members(&self, me: i64, a: &Args) -> ImResult {
        let id = a.id("id")?;
        self.group_row(id).await?;
        self.role_or_403(id, me).await?;
        #[derive(sqlx::FromRow)]
        struct Row {
            role: String,
            muted_until: i64,
            joined_at: i64,
            is_friend: i64,
            #[sqlx(flatten)]
            user: User,
        }
        // One query for the whole list (a group may have thousands of members).
        let rows = sqlx::query_as::<_, Row>(
            "SELECT m.role, m.muted_until, m.joined_at, \
             (SELECT COUNT(*) FROM friendships f WHERE f.user_id = $2 AND f.friend_id = m.user_id) AS is_friend, \
             u.id, u.account_no, u.email, u.nickname, u.avatar, u.signature, u.sex, u.birthday, u.location, u.created_at \
             FROM group_members m JOIN users u ON u.id = m.user_id WHERE m.group_id = $1 \
             ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, m.joined_at, m.user_id",
        )
        .bind(id)
        .bind(me)
        .fetch_all(&self.db.pool)
        .await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.user.id).collect();
        let online = self.online(&ids).await;
        let members: Vec<Member> = rows
            .into_iter()
            .map(|r| Member {
                online: online.contains(&r.user.id),
                user: {
                    let show_email = r.is_friend > 0 || r.user.id == me;
                    r.user.public(show_email)
                },
                role: r.role,
                muted_until: r.muted_until,
                joined_at: r.joined_at,
            })
            .collect();
        Ok(Reply::ok(json!({"members": members})))
    }

    pub(crate) async fn join_group(&self, me: i64, a: &Args) -> ImResult {
        let id = a.id("id")?;
        let row = self.group_row(id).await?;
        let req: JoinReq = a.body()?;
        let note = text("note", &req.note, 0, 100)?;
        if self.membership(id, me).await?.is_some() {
            return Err(ImError::conflict("you are already a member"));
        }
        if self.member_count(id).await? >= row.max_members {
            return Err(ImError::conflict("the group is full"));
        }
        if row.need_approval == 0 {
            if !self.add_member(id, me, "member").await? {
                return Err(ImError::conflict("you are already a member"));
            }
            let event = self
                .group_event(id, "joined", json!({"user_id": me}))
                .await?;
            return Ok(Reply::ok(
                json!({"status": "joined", "group": self.group_view(row, me).await?}),
            )
            .event(event));
        }
        let pending = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM group_join_requests WHERE group_id = $1 AND user_id = $2 AND status = 'pending'",
        )
        .bind(id)
        .bind(me)
        .fetch_one(&self.db.pool)
        .await?;
        if pending > 0 {
            return Err(ImError::conflict("your join request is already pending"));
        }
        let request = sqlx::query_as::<_, JoinRequest>(concat!("INSERT INTO group_join_requests (group_id, user_id, note, created_at) VALUES ($1, $2, $3, $4) RETURNING ", join_columns!()))
        .bind(id)
        .bind(me)
        .bind(&note)
        .bind(now_ms())
        .fetch_one(&self.db.pool)
        .await?;
        let managers = sqlx::query_scalar::<_, i64>(
            "SELECT user_id FROM group_members WHERE group_id = $1 AND role IN ('owner', 'admin')",
        )
        .bind(id)
        .fetch_all(&self.db.pool)
        .await?;
        let requester = self.public_users(0, &[me]).await?.pop();
        let mut reply = Reply::json(202, json!({"status": "pending", "request": request}));
        for m in managers {
            reply = reply.event(
                self.notify(
                    m,
                    "group_join_request",
                    json!({"request": request, "group_id": id, "group_name": row.name, "user": requester}),
                )
                .await?,
            );
        }
        Ok(reply)
    }

    pub(crate) async fn join_requests(&self, me: i64, a: &Args) -> ImResult {
        let id = a.id("id")?;
        self.group_row(id).await?;
        self.manager_or_403(id, me).await?;
        let rows = sqlx::query_as::<_, JoinRequest>(concat!(
            "SELECT ",
            join_columns!(),
            " FROM group_join_requests WHERE group_id = $1 ORDER BY id DESC LIMIT 200"
        ))
        .bind(id)
        .fetch_all(&self.db.pool)
        .await?;
        Ok(Reply::ok(json!({"requests": rows})))
    }

    pub(crate) async fn handle_join(&self, me: i64, a: &Args, accept: bool) -> ImResult {
        let id = a.id("id")?;
        let row = self.group_row(id).await?;
        self.manager_or_403(id, me).await?;
        let request_id = a.id("request_id")?;
        let request = sqlx::query_as::<_, JoinRequest>(concat!(
            "SELECT ",
            join_columns!(),
            " FROM group_join_requests WHERE id = $1 AND group_id = $2"
        ))
        .bind(request_id)
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| ImError::not_found(format!("no join request {request_id} in group {id}")))?;
        if request.status != "pending" {
            return Err(ImError::conflict(format!(
                "the request is already {}",
                request.status
            )));
        }
        if accept && self.member_count(id).await? >= row.max_members {
            return Err(ImError::conflict("the group is full"));
        }
        let status = if accept { "accepted" } else { "refused" };
        let claimed = sqlx::query(
            "UPDATE group_join_requests SET status = $2, handled_by = $3, handled_at = $4 WHERE id = $1 AND status = 'pending'",
        )
        .bind(request_id)
        .bind(status)
        .bind(me)
        .bind(now_ms())
        .execute(&self.db.pool)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Err(ImError::conflict("the request was handled meanwhile"));
        }
        let mut reply = Reply::ok(json!({"request_id": request_id, "status": status}));
        // Someone who joined meanwhile by other means is simply left as they are.
        let added = if accept {
            match self.add_member(id, request.user_id, "member").await {
                Ok(added) => added,
                Err(e) => {
                    // Full after all (a race with another join): the request stays pending.
                    sqlx::query("UPDATE group_join_requests SET status = 'pending', handled_by = NULL, handled_at = NULL WHERE id = $1")
                        .bind(request_id)
                        .execute(&self.db.pool)
                        .await?;
                    return Err(e);
                }
            }
        } else {
            false
        };
        if added {
            reply = reply.event(
                self.group_event(id, "joined", json!({"user_id": request.user_id}))
                    .await?,
            );
        }
        reply = reply.event(
            self.notify(
                request.user_id,
                "group_join_result",
                json!({"request_id": request_id, "group_id": id, "group_name": row.name, "status": status}),
            )
            .await?,
        );
        Ok(reply)
    }

    pub(crate) async fn update_member(&self, me: i64, a: &Args) -> ImResult {
        let id = a.id("id")?;
        let row = self.group_row(id).await?;
        let my_role = self.manager_or_403(id, me).await?;
        let target = a.id("user_id")?;
        let (target_role, _) = self
            .membership(id, target)
            .await?
            .ok_or_else(|| ImError::not_found(format!("user {target} is not a member")))?;
        let req: UpdateMemberReq = a.body()?;
        if req.role.is_none() && req.muted_until.is_none() {
            return Err(ImError::invalid(
                "nothing to change: give role or muted_until",
            ));
        }
        // Every check before any change, so that a refused request changes nothing.
        if let Some(role) = &req.role {
            if my_role != "owner" {
                return Err(ImError::forbidden("only the owner may change roles"));
            }
            if !matches!(role.as_str(), "admin" | "member") {
                return Err(ImError::invalid(
                    "role must be admin or member (use /transfer for owner)",
                ));
            }
            if target == row.owner_id {
                return Err(ImError::conflict(
                    "the owner's role changes only by transfer",
                ));
            }
        }
        if let Some(until) = req.muted_until {
            if until < 0 {
                return Err(ImError::invalid(
                    "muted_until must be unix milliseconds or 0",
                ));
            }
            if target == me
                || target_role == "owner"
                || (target_role == "admin" && my_role != "owner")
            {
                return Err(ImError::forbidden("you may not mute this member"));
            }
        }
        // Both changes in one statement: either the member takes them both, or (gone meanwhile) neither.
        let n = sqlx::query(
            "UPDATE group_members SET role = COALESCE($3, role), muted_until = COALESCE($4, muted_until) \
             WHERE group_id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(target)
        .bind(req.role.as_deref())
        .bind(req.muted_until)
        .execute(&self.db.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(ImError::not_found(format!("user {target} is not a member")));
        }
        let mut reply_events = Vec::new();
        if let Some(role) = &req.role {
            reply_events.push(
                self.group_event(id, "role", json!({"user_id": target, "role": role}))
                    .await?,
            );
        }
        if let Some(until) = req.muted_until {
            reply_events.push(
                self.group_event(
                    id,
                    "muted",
                    json!({"user_id": target, "muted_until": until}),
                )
                .await?,
            );
        }
        let (role, muted_until) = self.membership(id, target).await?.unwrap_or_default();
        let mut reply =
            Reply::ok(json!({"user_id": target, "role": role, "muted_until": muted_until}));
        for e in reply_events {
            reply = reply.event(e);
        }
        Ok(reply)
    }

    pub(crate) async fn remove_member(&self, me: i64, a: &Args) -> ImResult {
        let id = a.id("id")?;
        let row = self.group_row(id).await?;
        let target = a.id("user_id")?;
        let my_role = self.role_or_403(id, me).await?;
        if target == me {
            if my_role == "owner" {
                return Err(ImError::conflict(
                    "the owner cannot leave: transfer the group or dismiss it",
                ));
            }
            let event = self.group_event(id, "left", json!({"user_id": me})).await?;
            self.drop_member(id, me).await?;
            return Ok(Reply::ok(json!({"left": id})).event(event));
        }
        if !is_manager(&my_role) {
            return Err(ImError::forbidden(
                "only the owner or an admin may remove members",
            ));
        }
        let (target_role, _) = self
            .membership(id, target)
            .await?
            .ok_or_else(|| ImError::not_found(format!("user {target} is not a member")))?;
        if target_role == "owner" || (target_role == "admin" && my_role != "owner") {
            return Err(ImError::forbidden("you may not remove this member"));
        }
        let event = self
            .group_event(id, "kicked", json!({"user_id": target, "by": me}))
            .await?;
        self.drop_member(id, target).await?;
        let notice = self
            .notify(
                target,
                "group_notice",
                json!({"group_id": id, "name": row.name, "change": "kicked", "by": me}),
            )
            .await?;
        Ok(Reply::ok(json!({"removed": target}))
            .event(event)
            .event(notice))
    }
}
