//! The message box, and system notices from trusted backends.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::values::{Id, Text};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    pub id: i64,
    /// friend_request, friend_request_result, group_join_request, group_join_result, group_notice, system
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub read: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotificationPage {
    /// Newest first.
    pub items: Vec<Notification>,
    pub unread: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadNotificationsReq {
    /// Items to mark read (at most 500); omitted = all.
    #[schema(max_items = 500)]
    pub ids: Option<Vec<i64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Unread {
    pub unread: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoticeReq {
    /// 1 to 1000 users.
    #[schema(min_items = 1, max_items = 1000)]
    pub user_ids: Vec<Id>,
    pub title: Text<1, 100>,
    #[serde(default)]
    pub content: Text<0, 2000>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NoticeSent {
    pub sent: usize,
    pub unknown_user_ids: Vec<i64>,
}
