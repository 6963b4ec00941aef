//! Groups: lifecycle (create, update, dismiss, transfer), membership (join directly, by approved
//! request or by invitation, leave, kick), roles (owner, admin, member) and mutes (per member, or the
//! whole group). Each group has the conversation `g-<id>`; a member sees its messages from the moment
//! they joined. Who may do what is decided by the pure rules in `group_rules.rs`.

use imcloud_common::im::events::{GroupChange, GroupEvent, LiveEvent};
use imcloud_common::im::groups::*;
use imcloud_common::im::operations::*;
use imcloud_common::im::params::JoinRequestPath;
use imcloud_common::im::values::{GroupRole, RequestStatus};
use rand::Rng;
use serde_json::json;
use sqlx::FromRow;

use super::db::now_ms;
use super::error::{ImError, is_unique_violation};
use super::group_rules;
use super::paging;
use super::rate_limits::{refuse, window_check};
use super::rows::{JoinRequestRow, UserRow, join_columns, role, status};
use super::{Caller, Done, Event, Im, ImResult};

macro_rules! group_columns {
    () => {
        "id, group_no, name, description, avatar, owner_id, max_members, need_approval, all_muted, created_at"
    };
}
const DEFAULT_MAX_MEMBERS: i64 = 500;
/// Groups one user may be in (it bounds their group and conversation lists).
const MAX_GROUPS_JOINED: i64 = 500;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, FromRow)]
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

/// What a send to a group needs to know ([`Im::group_post`]).
pub struct GroupPost {
    pub members: Vec<i64>,
    /// The sender's role and `muted_until`, when a member.
    pub me: Option<(GroupRole, i64)>,
    pub all_muted: bool,
}

pub fn group_conversation(id: i64) -> String {
    format!("g-{id}")
}

fn group_event(to: Vec<i64>, e: GroupEvent) -> Event {
    Event::new(to, LiveEvent::Group(e))
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
    ) -> Result<Option<(GroupRole, i64)>, ImError> {
        Ok(sqlx::query_as::<_, (String, i64)>(
            "SELECT role, muted_until FROM group_members WHERE group_id = $1 AND user_id = $2",
        )
        .bind(group)
        .bind(user)
        .fetch_optional(&self.db.pool)
        .await?
        .map(|(r, m)| (role(&r), m)))
    }

    pub(crate) async fn role_or_403(&self, group: i64, me: i64) -> Result<GroupRole, ImError> {
        self.membership(group, me)
            .await?
            .map(|(role, _)| role)
            .ok_or_else(|| ImError::forbidden("you are not a member of this group"))
    }

    async fn manager_or_403(&self, group: i64, me: i64) -> Result<GroupRole, ImError> {
        let role = self.role_or_403(group, me).await?;
        if !group_rules::may_manage(role) {
            return Err(ImError::forbidden("only the owner or an admin may do this"));
        }
        Ok(role)
    }

    /// What a send to a group needs, in one query on the usual path: every member (the event's
    /// recipients), the sender's role and mute, and whether the whole group is muted. A missing or
    /// dismissed group is a 404 (from [`Im::group_row`], asked only when no member row came back).
    pub(crate) async fn group_post(&self, group: i64, me: i64) -> Result<GroupPost, ImError> {
        let rows = sqlx::query_as::<_, (i64, String, i64, i64)>(
            "SELECT m.user_id, m.role, m.muted_until, g.all_muted FROM group_members m \
             JOIN chat_groups g ON g.id = m.group_id WHERE m.group_id = $1 AND g.dismissed = 0",
        )
        .bind(group)
        .fetch_all(&self.db.pool)
        .await?;
        let Some(first) = rows.first() else {
            self.group_row(group).await?;
            return Ok(GroupPost {
                members: Vec::new(),
                me: None,
                all_muted: false,
            });
        };
        let all_muted = first.3 != 0;
        let me = rows.iter().find(|r| r.0 == me).map(|r| (role(&r.1), r.2));
        Ok(GroupPost {
            members: rows.into_iter().map(|r| r.0).collect(),
            me,
            all_muted,
        })
    }

    pub(crate) async fn member_ids(&self, group: i64) -> Result<Vec<i64>, ImError> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT user_id FROM group_members WHERE group_id = $1")
                .bind(group)
                .fetch_all(&self.db.pool)
                .await?,
        )
    }

    pub(crate) async fn member_count(&self, group: i64) -> Result<i64, ImError> {
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
    async fn add_member(&self, group: i64, user: i64, role: GroupRole) -> Result<bool, ImError> {
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
        .bind(role.as_str())
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

    pub(crate) async fn drop_member(&self, group: i64, user: i64) -> Result<bool, ImError> {
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

    /// The event of a group change, to its current members.
    async fn to_members(&self, group: i64, e: GroupEvent) -> Result<Event, ImError> {
        if let Some(w) = &self.webhooks {
            w.group_change(&e);
        }
        Ok(group_event(self.member_ids(group).await?, e))
    }

    /// Refuses a group over `IMCLOUD_IM_GROUPS_PER_DAY`.
    async fn check_group_quota(&self, me: i64) -> Result<(), ImError> {
        let limit = self.settings.groups_per_day;
        if limit <= 0 {
            return Ok(());
        }
        let now = now_ms();
        let (used, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at) FROM chat_groups WHERE owner_id = $1 AND created_at > $2",
        )
        .bind(me)
        .bind(now - DAY_MS)
        .fetch_one(&self.db.pool)
        .await?;
        window_check(limit, used, oldest, DAY_MS, now).map_err(|wait| {
            refuse(
                "groups",
                format!("at most {limit} new groups a day; try again in {wait} s"),
                wait,
            )
        })
    }

    pub(crate) async fn create_group(&self, c: &Caller<'_>, r: CreateGroup) -> ImResult<Group> {
        let me = c.me;
        let req = r.body;
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
        self.check_group_quota(me).await?;
        for _ in 0..5 {
            let group_no = rand::rng()
                .random_range(10_000_000..100_000_000i64)
                .to_string();
            let inserted = sqlx::query_as::<_, GroupRow>(concat!(
                "INSERT INTO chat_groups (group_no, name, description, avatar, owner_id, max_members, need_approval, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
                group_columns!()
            ))
            .bind(&group_no)
            .bind(req.name.as_str())
            .bind(req.description.as_str())
            .bind(req.avatar.as_str())
            .bind(me)
            .bind(max_members)
            .bind(req.need_approval as i64)
            .bind(now_ms())
            .fetch_one(&self.db.pool)
            .await;
            match inserted {
                Ok(row) => {
                    if let Err(e) = self.add_member(row.id, me, GroupRole::Owner).await {
                        // No group without its owner.
                        sqlx::query("DELETE FROM chat_groups WHERE id = $1")
                            .bind(row.id)
                            .execute(&self.db.pool)
                            .await?;
                        return Err(e);
                    }
                    return Ok(Done::created(self.group_view(row, me).await?));
                }
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ImError::unavailable(
            "could not allocate a group number; retry",
        ))
    }

    pub(crate) async fn my_groups(&self, c: &Caller<'_>, _r: MyGroups) -> ImResult<Groups> {
        let rows = sqlx::query_as::<_, GroupRow>(
            "SELECT g.id, g.group_no, g.name, g.description, g.avatar, g.owner_id, g.max_members, g.need_approval, \
             g.all_muted, g.created_at FROM chat_groups g JOIN group_members m ON m.group_id = g.id \
             WHERE m.user_id = $1 AND g.dismissed = 0 ORDER BY g.id",
        )
        .bind(c.me)
        .fetch_all(&self.db.pool)
        .await?;
        let mut groups = Vec::with_capacity(rows.len());
        for r in rows {
            groups.push(self.group_view(r, c.me).await?);
        }
        Ok(Done::ok(Groups { groups }))
    }

    pub(crate) async fn group(&self, c: &Caller<'_>, r: GetGroup) -> ImResult<Group> {
        let row = self.group_row(r.path.id.get()).await?;
        Ok(Done::ok(self.group_view(row, c.me).await?))
    }

    pub(crate) async fn update_group(&self, c: &Caller<'_>, r: UpdateGroup) -> ImResult<Group> {
        let me = c.me;
        let id = r.path.id.get();
        self.group_row(id).await?;
        self.manager_or_403(id, me).await?;
        let req = r.body;
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
        .bind(req.name.as_ref().map(|v| v.as_str()))
        .bind(req.description.as_ref().map(|v| v.as_str()))
        .bind(req.avatar.as_ref().map(|v| v.as_str()))
        .bind(req.max_members)
        .bind(req.need_approval.map(i64::from))
        .bind(req.all_muted.map(i64::from))
        .execute(&self.db.pool)
        .await?;
        let view = self.group_view(self.group_row(id).await?, me).await?;
        let mut e = GroupEvent::new(id, GroupChange::Updated);
        e.group = Some(Group {
            my_role: None,
            ..view.clone()
        });
        let event = self.to_members(id, e).await?;
        Ok(Done::ok(view).push(event))
    }

    pub(crate) async fn dismiss_group(
        &self,
        c: &Caller<'_>,
        r: DismissGroup,
    ) -> ImResult<GroupDismissed> {
        let me = c.me;
        let id = r.path.id.get();
        let row = self.group_row(id).await?;
        if self.role_or_403(id, me).await? != GroupRole::Owner {
            return Err(ImError::forbidden("only the owner may dismiss the group"));
        }
        let event = self
            .to_members(id, GroupEvent::new(id, GroupChange::Dismissed))
            .await?;
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
        sqlx::query(
            "UPDATE group_join_requests SET status = 'refused', handled_at = $2 WHERE group_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut done = Done::ok(GroupDismissed { dismissed: id }).push(event);
        for m in members.into_iter().filter(|m| *m != me) {
            done = done.push(
                self.notify(
                    m,
                    "group_notice",
                    json!({"group_id": id, "name": row.name, "change": "dismissed"}),
                )
                .await?,
            );
        }
        Ok(done)
    }

    /// Moves ownership of `group` from `from` to `to` (a member), all-or-nothing.
    pub(crate) async fn hand_over(&self, group: i64, from: i64, to: i64) -> Result<(), ImError> {
        // Each step must change exactly one row, or nothing changes: a racing transfer, leave or dismiss
        // cannot leave the group with no owner or two.
        let mut tx = self.db.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE chat_groups SET owner_id = $2 WHERE id = $1 AND owner_id = $3 AND dismissed = 0",
        )
        .bind(group)
        .bind(to)
        .bind(from)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let promoted = sqlx::query(
            "UPDATE group_members SET role = 'owner', muted_until = 0 WHERE group_id = $1 AND user_id = $2",
        )
        .bind(group)
        .bind(to)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let stepped_down = sqlx::query(
            "UPDATE group_members SET role = 'admin' WHERE group_id = $1 AND user_id = $2 AND role = 'owner'",
        )
        .bind(group)
        .bind(from)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if (moved, promoted, stepped_down) != (1, 1, 1) {
            return Err(ImError::conflict("the group changed meanwhile; retry"));
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn transfer_group(&self, c: &Caller<'_>, r: TransferGroup) -> ImResult<Group> {
        let me = c.me;
        let id = r.path.id.get();
        let to = r.body.user_id.get();
        self.group_row(id).await?;
        if self.role_or_403(id, me).await? != GroupRole::Owner {
            return Err(ImError::forbidden("only the owner may transfer the group"));
        }
        if to == me {
            return Err(ImError::invalid("you already own the group"));
        }
        if self.membership(id, to).await?.is_none() {
            return Err(ImError::not_found(format!("user {to} is not a member")));
        }
        self.hand_over(id, me, to).await?;
        let mut e = GroupEvent::new(id, GroupChange::Owner).user(to);
        e.previous_owner = Some(me);
        let event = self.to_members(id, e).await?;
        Ok(Done::ok(self.group_view(self.group_row(id).await?, me).await?).push(event))
    }

    pub(crate) async fn group_members(
        &self,
        c: &Caller<'_>,
        r: ListMembers,
    ) -> ImResult<MembersPage> {
        let me = c.me;
        let id = r.path.id.get();
        let (limit, offset) = paging::cursor(&r.query)?;
        self.group_row(id).await?;
        self.role_or_403(id, me).await?;
        #[derive(FromRow)]
        struct Row {
            role: String,
            muted_until: i64,
            joined_at: i64,
            is_friend: i64,
            #[sqlx(flatten)]
            user: UserRow,
        }
        // One query for the page (a group may have thousands of members).
        let mut rows = sqlx::query_as::<_, Row>(
            "SELECT m.role, m.muted_until, m.joined_at, \
             (SELECT COUNT(*) FROM friendships f WHERE f.user_id = $2 AND f.friend_id = m.user_id) AS is_friend, \
             u.id, u.account_no, u.email, u.nickname, u.avatar, u.signature, u.sex, u.birthday, u.location, u.created_at, u.deleted_at \
             FROM group_members m JOIN users u ON u.id = m.user_id WHERE m.group_id = $1 \
             ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, m.joined_at, m.user_id \
             LIMIT $3 OFFSET $4",
        )
        .bind(id)
        .bind(me)
        .bind(limit + 1)
        .bind(offset)
        .fetch_all(&self.db.pool)
        .await?;
        let next_cursor = paging::next(&mut rows, limit, offset);
        let ids: Vec<i64> = rows.iter().map(|r| r.user.id).collect();
        let online = self.online(&ids).await;
        let members = rows
            .into_iter()
            .map(|r| Member {
                online: online.contains(&r.user.id),
                user: {
                    let show_email = r.is_friend > 0 || r.user.id == me;
                    r.user.public(show_email)
                },
                role: role(&r.role),
                muted_until: r.muted_until,
                joined_at: r.joined_at,
            })
            .collect();
        Ok(Done::ok(MembersPage {
            members,
            next_cursor,
        }))
    }

    pub(crate) async fn invite_member(&self, c: &Caller<'_>, r: InviteMember) -> ImResult<Invited> {
        let me = c.me;
        let id = r.path.id.get();
        let target = r.body.user_id.get();
        let row = self.group_row(id).await?;
        let my_role = self.role_or_403(id, me).await?;
        if !group_rules::may_invite(my_role, row.need_approval != 0) {
            return Err(ImError::forbidden(
                "this group needs approval: only the owner or an admin may invite",
            ));
        }
        self.live_user_or_404(target).await?;
        if !self.are_friends(me, target).await? {
            return Err(ImError::forbidden("you can only invite your friends"));
        }
        if self.blocked_by(target, me).await? {
            return Err(ImError::forbidden(
                "this user does not accept your invitations (blocked)",
            ));
        }
        if !self.add_member(id, target, GroupRole::Member).await? {
            return Err(ImError::conflict(format!(
                "user {target} is already a member"
            )));
        }
        let event = self
            .to_members(
                id,
                GroupEvent::new(id, GroupChange::Joined).user(target).by(me),
            )
            .await?;
        Ok(Done::ok(Invited {
            group_id: id,
            user_id: target,
        })
        .push(event))
    }

    pub(crate) async fn join_group(&self, c: &Caller<'_>, r: JoinGroup) -> ImResult<JoinOutcome> {
        let me = c.me;
        let id = r.path.id.get();
        let row = self.group_row(id).await?;
        if self.membership(id, me).await?.is_some() {
            return Err(ImError::conflict("you are already a member"));
        }
        if self.member_count(id).await? >= row.max_members {
            return Err(ImError::conflict("the group is full"));
        }
        if row.need_approval == 0 {
            if !self.add_member(id, me, GroupRole::Member).await? {
                return Err(ImError::conflict("you are already a member"));
            }
            let event = self
                .to_members(id, GroupEvent::new(id, GroupChange::Joined).user(me))
                .await?;
            return Ok(Done::ok(JoinOutcome::Joined {
                group: self.group_view(row, me).await?,
            })
            .push(event));
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
        let request: JoinRequest = sqlx::query_as::<_, JoinRequestRow>(concat!(
            "INSERT INTO group_join_requests (group_id, user_id, note, created_at) VALUES ($1, $2, $3, $4) RETURNING ",
            join_columns!()
        ))
        .bind(id)
        .bind(me)
        .bind(r.body.note.as_str())
        .bind(now_ms())
        .fetch_one(&self.db.pool)
        .await?
        .into();
        let managers = sqlx::query_scalar::<_, i64>(
            "SELECT user_id FROM group_members WHERE group_id = $1 AND role IN ('owner', 'admin')",
        )
        .bind(id)
        .fetch_all(&self.db.pool)
        .await?;
        let requester = self.public_users(0, &[me]).await?.pop();
        let mut done = Done::status(
            202,
            JoinOutcome::Pending {
                request: request.clone(),
            },
        );
        for m in managers {
            done = done.push(
                self.notify(
                    m,
                    "group_join_request",
                    json!({"request": request, "group_id": id, "group_name": row.name, "user": requester}),
                )
                .await?,
            );
        }
        Ok(done)
    }

    pub(crate) async fn join_requests(
        &self,
        c: &Caller<'_>,
        r: ListJoinRequests,
    ) -> ImResult<JoinRequests> {
        let id = r.path.id.get();
        self.group_row(id).await?;
        self.manager_or_403(id, c.me).await?;
        let rows = sqlx::query_as::<_, JoinRequestRow>(concat!(
            "SELECT ",
            join_columns!(),
            " FROM group_join_requests WHERE group_id = $1 ORDER BY id DESC LIMIT 200"
        ))
        .bind(id)
        .fetch_all(&self.db.pool)
        .await?;
        Ok(Done::ok(JoinRequests {
            requests: rows.into_iter().map(JoinRequest::from).collect(),
        }))
    }

    pub(crate) async fn handle_join(
        &self,
        c: &Caller<'_>,
        p: JoinRequestPath,
        accept: bool,
    ) -> ImResult<JoinHandled> {
        let me = c.me;
        let id = p.id.get();
        let request_id = p.request_id.get();
        let row = self.group_row(id).await?;
        self.manager_or_403(id, me).await?;
        let request = sqlx::query_as::<_, JoinRequestRow>(concat!(
            "SELECT ",
            join_columns!(),
            " FROM group_join_requests WHERE id = $1 AND group_id = $2"
        ))
        .bind(request_id)
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| ImError::not_found(format!("no join request {request_id} in group {id}")))?;
        if status(&request.status) != RequestStatus::Pending {
            return Err(ImError::conflict(format!(
                "the request is already {}",
                request.status
            )));
        }
        if accept && self.member_count(id).await? >= row.max_members {
            return Err(ImError::conflict("the group is full"));
        }
        let decided = RequestStatus::decided(accept);
        let claimed = sqlx::query(
            "UPDATE group_join_requests SET status = $2, handled_by = $3, handled_at = $4 WHERE id = $1 AND status = 'pending'",
        )
        .bind(request_id)
        .bind(decided.as_str())
        .bind(me)
        .bind(now_ms())
        .execute(&self.db.pool)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Err(ImError::conflict("the request was handled meanwhile"));
        }
        let mut done = Done::ok(JoinHandled {
            request_id,
            status: decided,
        });
        // Someone who joined meanwhile by other means is simply left as they are.
        let added = if accept {
            match self
                .add_member(id, request.user_id, GroupRole::Member)
                .await
            {
                Ok(added) => added,
                Err(e) => {
                    // Full after all (a race with another join): the request stays pending.
                    sqlx::query(
                        "UPDATE group_join_requests SET status = 'pending', handled_by = NULL, handled_at = NULL WHERE id = $1",
                    )
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
            done = done.push(
                self.to_members(
                    id,
                    GroupEvent::new(id, GroupChange::Joined).user(request.user_id),
                )
                .await?,
            );
        }
        Ok(done.push(
            self.notify(
                request.user_id,
                "group_join_result",
                json!({"request_id": request_id, "group_id": id, "group_name": row.name, "status": decided}),
            )
            .await?,
        ))
    }

    pub(crate) async fn update_member(
        &self,
        c: &Caller<'_>,
        r: UpdateMember,
    ) -> ImResult<MemberUpdated> {
        let me = c.me;
        let id = r.path.id.get();
        let target = r.path.user_id.get();
        self.group_row(id).await?;
        let my_role = self.manager_or_403(id, me).await?;
        let (target_role, _) = self
            .membership(id, target)
            .await?
            .ok_or_else(|| ImError::not_found(format!("user {target} is not a member")))?;
        let req = r.body;
        if req.role.is_none() && req.muted_until.is_none() {
            return Err(ImError::invalid(
                "nothing to change: give role or muted_until",
            ));
        }
        // Every check before any change, so that a refused request changes nothing.
        if let Some(to) = req.role {
            if my_role != GroupRole::Owner {
                return Err(ImError::forbidden("only the owner may change roles"));
            }
            if !group_rules::may_set_role(my_role, target_role, to) {
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
            if !group_rules::may_mute(my_role, target_role, target == me) {
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
        .bind(req.role.map(|r| GroupRole::from(r).as_str()))
        .bind(req.muted_until)
        .execute(&self.db.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(ImError::not_found(format!("user {target} is not a member")));
        }
        let mut events = Vec::new();
        if let Some(to) = req.role {
            let mut e = GroupEvent::new(id, GroupChange::Role).user(target);
            e.role = Some(to.into());
            events.push(self.to_members(id, e).await?);
        }
        if let Some(until) = req.muted_until {
            let mut e = GroupEvent::new(id, GroupChange::Muted).user(target);
            e.muted_until = Some(until);
            events.push(self.to_members(id, e).await?);
        }
        let (role, muted_until) = self
            .membership(id, target)
            .await?
            .unwrap_or((GroupRole::Member, 0));
        Ok(Done::ok(MemberUpdated {
            user_id: target,
            role,
            muted_until,
        })
        .events(events))
    }

    pub(crate) async fn remove_member(
        &self,
        c: &Caller<'_>,
        r: RemoveMember,
    ) -> ImResult<MemberRemoved> {
        let me = c.me;
        let id = r.path.id.get();
        let target = r.path.user_id.get();
        let row = self.group_row(id).await?;
        let my_role = self.role_or_403(id, me).await?;
        if target == me {
            if my_role == GroupRole::Owner {
                return Err(ImError::conflict(
                    "the owner cannot leave: transfer the group or dismiss it",
                ));
            }
            let event = self
                .to_members(id, GroupEvent::new(id, GroupChange::Left).user(me))
                .await?;
            self.drop_member(id, me).await?;
            return Ok(Done::ok(MemberRemoved::Left { left: id }).push(event));
        }
        if !group_rules::may_manage(my_role) {
            return Err(ImError::forbidden(
                "only the owner or an admin may remove members",
            ));
        }
        let (target_role, _) = self
            .membership(id, target)
            .await?
            .ok_or_else(|| ImError::not_found(format!("user {target} is not a member")))?;
        if !group_rules::may_kick(my_role, target_role, false) {
            return Err(ImError::forbidden("you may not remove this member"));
        }
        let event = self
            .to_members(
                id,
                GroupEvent::new(id, GroupChange::Kicked).user(target).by(me),
            )
            .await?;
        self.drop_member(id, target).await?;
        let notice = self
            .notify(
                target,
                "group_notice",
                json!({"group_id": id, "name": row.name, "change": "kicked", "by": me}),
            )
            .await?;
        Ok(Done::ok(MemberRemoved::Removed { removed: target })
            .push(event)
            .push(notice))
    }
}
