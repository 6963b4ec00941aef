//! Groups: lifecycle, membership, roles and mutes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::accounts::PublicUser;
use super::values::{AssignableRole, GroupRole, Id, ImageRef, RequestStatus, Text};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
    /// My role, when I am a member.
    pub my_role: Option<GroupRole>,
    /// The group's conversation id.
    pub conversation_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Groups {
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroupReq {
    pub name: Text<1, 32>,
    #[serde(default)]
    pub description: Text<0, 200>,
    #[serde(default)]
    pub avatar: ImageRef,
    /// 2 to the server's limit; default 500.
    pub max_members: Option<i64>,
    #[serde(default)]
    pub need_approval: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroupReq {
    pub name: Option<Text<1, 32>>,
    pub description: Option<Text<0, 200>>,
    pub avatar: Option<ImageRef>,
    pub max_members: Option<i64>,
    pub need_approval: Option<bool>,
    /// Only the owner and admins may speak while on.
    pub all_muted: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupDismissed {
    pub dismissed: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferReq {
    pub user_id: Id,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinReq {
    #[serde(default)]
    pub note: Text<0, 100>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteReq {
    /// A friend of mine who is not yet a member.
    pub user_id: Id,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinRequest {
    pub id: i64,
    pub group_id: i64,
    pub user_id: i64,
    pub note: String,
    pub status: RequestStatus,
    pub handled_by: Option<i64>,
    pub created_at: i64,
    pub handled_at: Option<i64>,
}

/// The result of a join: 200 `joined` at once, or 202 `pending` when the group needs approval.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum JoinOutcome {
    Joined { group: Group },
    Pending { request: JoinRequest },
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinRequests {
    pub requests: Vec<JoinRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinHandled {
    pub request_id: i64,
    pub status: RequestStatus,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemberReq {
    /// admin or member (owner only; ownership moves with /transfer).
    pub role: Option<AssignableRole>,
    /// Unix milliseconds; 0 unmutes (owner or admin).
    pub muted_until: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemberUpdated {
    pub user_id: i64,
    pub role: GroupRole,
    pub muted_until: i64,
}

/// `{"left": group id}` when I left, `{"removed": user id}` when I removed someone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MemberRemoved {
    Left { left: i64 },
    Removed { removed: i64 },
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub user: PublicUser,
    pub role: GroupRole,
    pub muted_until: i64,
    pub joined_at: i64,
    pub online: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MembersPage {
    /// The owner, then admins, then members, each by join time.
    pub members: Vec<Member>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Invited {
    pub group_id: i64,
    pub user_id: i64,
}
