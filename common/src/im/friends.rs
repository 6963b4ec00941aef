//! Friend groups, friend requests and friendships.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::accounts::PublicUser;
use super::values::{Id, RequestStatus, Text};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FriendGroup {
    pub id: i64,
    pub name: String,
    /// 1 for the default group (new friends land here; it cannot be deleted)
    pub is_default: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FriendGroups {
    pub friend_groups: Vec<FriendGroup>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FriendGroupReq {
    pub name: Text<1, 20>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FriendGroupDeleted {
    pub deleted: i64,
    pub friends_moved_to: i64,
    pub moved: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FriendRequestReq {
    pub to_user_id: Id,
    #[serde(default)]
    pub note: Text<0, 100>,
    /// My friend group for them; omitted = my default group.
    pub friend_group_id: Option<Id>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptFriendReq {
    /// My friend group for them; omitted = my default group.
    pub friend_group_id: Option<Id>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateFriendReq {
    pub remark: Option<Text<0, 32>>,
    pub friend_group_id: Option<Id>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FriendRequest {
    pub id: i64,
    pub from_user_id: i64,
    pub to_user_id: i64,
    /// The other party.
    pub user: Option<PublicUser>,
    pub note: String,
    pub status: RequestStatus,
    pub created_at: i64,
    pub handled_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FriendRequests {
    pub incoming: Vec<FriendRequest>,
    pub outgoing: Vec<FriendRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Friend {
    pub user: PublicUser,
    pub remark: String,
    pub online: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FriendGroupWithFriends {
    pub id: i64,
    pub name: String,
    pub is_default: i64,
    pub friends: Vec<Friend>,
}

/// One page of my friends (ordered by nickname), under every friend group of mine.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FriendsPage {
    pub groups: Vec<FriendGroupWithFriends>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FriendUpdated {
    pub user_id: i64,
    pub remark: String,
    pub friend_group_id: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FriendDeleted {
    pub deleted: i64,
}
