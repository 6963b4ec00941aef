//! Accounts and uploads: registration, login and logout, profiles, blocking, account deletion.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::values::{Birthday, Email, GivenPassword, Id, ImageRef, Password, Sex, Text};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterReq {
    pub email: Email,
    pub nickname: Text<1, 32>,
    /// 8 to 128 characters
    pub password: Password,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginReq {
    pub email: Email,
    pub password: GivenPassword,
}

/// An account as its owner sees it (never the password hash).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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

/// A user as others see them: the email only for friends; `deleted` once the account is gone (then
/// the nickname is "deleted user" and the profile is empty).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublicUser {
    pub id: i64,
    pub account_no: String,
    pub nickname: String,
    pub avatar: String,
    pub signature: String,
    pub sex: String,
    pub birthday: String,
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginReply {
    /// Bearer token for /v1 and the websocket auth body's `token`.
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
    pub user: User,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoggedOut {
    pub logged_out: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeReq {
    pub nickname: Option<Text<1, 32>>,
    pub avatar: Option<ImageRef>,
    pub signature: Option<Text<0, 200>>,
    pub sex: Option<Sex>,
    /// YYYY-MM-DD, or empty to clear
    pub birthday: Option<Birthday>,
    pub location: Option<Text<0, 64>>,
    /// A new password; needs `current_password`.
    pub password: Option<Password>,
    pub current_password: Option<GivenPassword>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteMeReq {
    /// The account's password, as a confirmation.
    pub password: GivenPassword,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountDeleted {
    pub deleted: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Upload {
    pub id: String,
    /// Where to fetch it (also what avatar and image messages reference).
    pub url: String,
    pub content_type: String,
    pub size: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockReq {
    pub user_id: Id,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Blocked {
    pub user: PublicUser,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Blocks {
    pub blocked: Vec<Blocked>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlockChanged {
    pub user_id: i64,
    pub blocked: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserList {
    pub users: Vec<PublicUser>,
}
