//! The IM JSON API's routes: one table shared by the api (which serves them) and logic (which runs each
//! operation and builds the OpenAPI document from it). Paths use axum's and OpenAPI's `{param}` syntax.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImRoute {
    pub method: &'static str,
    pub path: &'static str,
    /// The operation logic runs (`ImCall.op`).
    pub op: &'static str,
    /// Whether a login token (`Authorization: Bearer …`) is required.
    pub auth: bool,
    /// The request body is the raw bytes of a file, not JSON.
    pub raw_body: bool,
    /// For trusted backends: the api key (`Authorization: Bearer <IMCLOUD_API_KEY>`), not a login.
    pub trusted: bool,
    pub tag: &'static str,
    pub summary: &'static str,
}

const fn r(
    method: &'static str,
    path: &'static str,
    op: &'static str,
    tag: &'static str,
    summary: &'static str,
) -> ImRoute {
    ImRoute {
        method,
        path,
        op,
        auth: true,
        raw_body: false,
        trusted: false,
        tag,
        summary,
    }
}

const fn public(route: ImRoute) -> ImRoute {
    ImRoute {
        auth: false,
        ..route
    }
}

const fn trusted(route: ImRoute) -> ImRoute {
    ImRoute {
        auth: false,
        trusted: true,
        ..route
    }
}

const fn raw(route: ImRoute) -> ImRoute {
    ImRoute {
        raw_body: true,
        ..route
    }
}

pub const IM_ROUTES: &[ImRoute] = &[
    public(r(
        "POST",
        "/v1/users",
        "users.register",
        "accounts",
        "Register an account",
    )),
    public(r(
        "POST",
        "/v1/sessions",
        "sessions.login",
        "accounts",
        "Log in: a token for /v1 and for the websocket",
    )),
    r(
        "DELETE",
        "/v1/sessions/current",
        "sessions.logout",
        "accounts",
        "Log out: the token stops working",
    ),
    r("GET", "/v1/me", "me.get", "accounts", "My profile"),
    r(
        "PATCH",
        "/v1/me",
        "me.update",
        "accounts",
        "Update my profile",
    ),
    r(
        "GET",
        "/v1/users/{id}",
        "users.get",
        "accounts",
        "Another user's public profile",
    ),
    raw(r(
        "POST",
        "/v1/uploads",
        "uploads.create",
        "uploads",
        "Upload an avatar, image or file (raw body, Content-Type set)",
    )),
    public(r(
        "GET",
        "/v1/uploads/{id}",
        "uploads.get",
        "uploads",
        "Download an upload",
    )),
    r(
        "GET",
        "/v1/friend-groups",
        "friend_groups.list",
        "friends",
        "My friend groups",
    ),
    r(
        "POST",
        "/v1/friend-groups",
        "friend_groups.create",
        "friends",
        "Create a friend group",
    ),
    r(
        "PATCH",
        "/v1/friend-groups/{id}",
        "friend_groups.rename",
        "friends",
        "Rename a friend group",
    ),
    r(
        "DELETE",
        "/v1/friend-groups/{id}",
        "friend_groups.delete",
        "friends",
        "Delete a friend group (its friends move to the default group)",
    ),
    r(
        "POST",
        "/v1/friend-requests",
        "friend_requests.create",
        "friends",
        "Send a friend request",
    ),
    r(
        "GET",
        "/v1/friend-requests",
        "friend_requests.list",
        "friends",
        "Incoming and outgoing friend requests",
    ),
    r(
        "POST",
        "/v1/friend-requests/{id}/accept",
        "friend_requests.accept",
        "friends",
        "Accept a friend request",
    ),
    r(
        "POST",
        "/v1/friend-requests/{id}/refuse",
        "friend_requests.refuse",
        "friends",
        "Refuse a friend request",
    ),
    r(
        "GET",
        "/v1/friends",
        "friends.list",
        "friends",
        "My friends by friend group, with online status",
    ),
    r(
        "PATCH",
        "/v1/friends/{user_id}",
        "friends.update",
        "friends",
        "Set a friend's remark or friend group",
    ),
    r(
        "DELETE",
        "/v1/friends/{user_id}",
        "friends.delete",
        "friends",
        "Delete a friend (both sides)",
    ),
    r(
        "GET",
        "/v1/search/users",
        "search.users",
        "discovery",
        "Search users by account number, nickname or exact email",
    ),
    r(
        "GET",
        "/v1/search/groups",
        "search.groups",
        "discovery",
        "Search groups by number or name",
    ),
    r(
        "GET",
        "/v1/recommendations/users",
        "recommendations.users",
        "discovery",
        "Users I might know (never me or my friends)",
    ),
    r(
        "POST",
        "/v1/groups",
        "groups.create",
        "groups",
        "Create a group",
    ),
    r(
        "GET",
        "/v1/groups",
        "groups.mine",
        "groups",
        "The groups I am in",
    ),
    r("GET", "/v1/groups/{id}", "groups.get", "groups", "A group"),
    r(
        "PATCH",
        "/v1/groups/{id}",
        "groups.update",
        "groups",
        "Update a group (owner or admin)",
    ),
    r(
        "DELETE",
        "/v1/groups/{id}",
        "groups.dismiss",
        "groups",
        "Dismiss a group (owner)",
    ),
    r(
        "POST",
        "/v1/groups/{id}/transfer",
        "groups.transfer",
        "groups",
        "Transfer ownership to a member (owner)",
    ),
    r(
        "GET",
        "/v1/groups/{id}/members",
        "groups.members",
        "groups",
        "Members with roles and online status",
    ),
    r(
        "POST",
        "/v1/groups/{id}/join",
        "groups.join",
        "groups",
        "Join, or ask to join when approval is on",
    ),
    r(
        "GET",
        "/v1/groups/{id}/join-requests",
        "groups.join_requests",
        "groups",
        "Join requests (owner or admin)",
    ),
    r(
        "POST",
        "/v1/groups/{id}/join-requests/{request_id}/accept",
        "groups.join_accept",
        "groups",
        "Accept a join request (owner or admin)",
    ),
    r(
        "POST",
        "/v1/groups/{id}/join-requests/{request_id}/refuse",
        "groups.join_refuse",
        "groups",
        "Refuse a join request (owner or admin)",
    ),
    r(
        "PATCH",
        "/v1/groups/{id}/members/{user_id}",
        "groups.member_update",
        "groups",
        "Change a member's role (owner) or mute them (owner or admin)",
    ),
    r(
        "DELETE",
        "/v1/groups/{id}/members/{user_id}",
        "groups.member_remove",
        "groups",
        "Kick a member, or leave when it is me",
    ),
    r(
        "GET",
        "/v1/conversations",
        "conversations.list",
        "chat",
        "My conversations with last message and unread count",
    ),
    r(
        "GET",
        "/v1/conversations/{cid}/messages",
        "messages.list",
        "chat",
        "History, paged by seq",
    ),
    r(
        "POST",
        "/v1/conversations/{cid}/messages",
        "messages.send",
        "chat",
        "Send a message (idempotent by client_msg_id)",
    ),
    r(
        "POST",
        "/v1/conversations/{cid}/read",
        "conversations.read",
        "chat",
        "Mark read up to a seq",
    ),
    r(
        "GET",
        "/v1/notifications",
        "notifications.list",
        "notifications",
        "The message box",
    ),
    trusted(r(
        "POST",
        "/v1/notices",
        "notices.create",
        "notifications",
        "Send a system notice to users' message boxes (trusted backends, API key)",
    )),
    r(
        "POST",
        "/v1/notifications/read",
        "notifications.read",
        "notifications",
        "Mark message-box items read",
    ),
    public(r(
        "GET",
        "/v1/openapi.json",
        "openapi",
        "meta",
        "This document",
    )),
];

/// The largest upload a deployment may allow (IMCLOUD_IM_UPLOAD_MAX_BYTES is checked against it).
pub const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;
/// The largest ImCall request or reply on gRPC: an upload plus room for the rest.
pub const MAX_IM_CALL_BYTES: usize = MAX_UPLOAD_BYTES + 1024 * 1024;

/// The route of an operation.
pub fn route_of(op: &str) -> Option<&'static ImRoute> {
    IM_ROUTES.iter().find(|r| r.op == op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ops_and_routes_are_unique() {
        let ops: HashSet<_> = IM_ROUTES.iter().map(|r| r.op).collect();
        assert_eq!(ops.len(), IM_ROUTES.len());
        let routes: HashSet<_> = IM_ROUTES.iter().map(|r| (r.method, r.path)).collect();
        assert_eq!(routes.len(), IM_ROUTES.len());
        assert!(IM_ROUTES.iter().all(|r| r.path.starts_with("/v1/")));
    }
}
