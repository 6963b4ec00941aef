//! The OpenAPI 3.1 document of the IM JSON API, built from the route table (`im_routes`) and the
//! request and response types' schemas (derived with utoipa), served at `/v1/openapi.json`.

use imcloud_common::im_routes::IM_ROUTES;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use super::accounts::{LoginReply, LoginReq, RegisterReq, UpdateMeReq};
use super::chat::{Conversation, Message, ReadReq, SendReq};
use super::friends::{
    AcceptFriendReq, Friend, FriendGroup, FriendGroupReq, FriendGroupWithFriends, FriendRequest,
    FriendRequestReq, UpdateFriendReq,
};
use super::groups::{
    CreateGroupReq, Group, JoinReq, JoinRequest, Member, TransferReq, UpdateGroupReq,
    UpdateMemberReq,
};
use super::notifications::{NoticeReq, Notification, ReadNotificationsReq};
use super::uploads::Upload;
use super::users::{PublicUser, User};

/// The request and success schema (by component name) of an operation, and its success status.
fn io(op: &str) -> (Option<&'static str>, Option<&'static str>, u16) {
    match op {
        "users.register" => (Some("RegisterReq"), Some("User"), 201),
        "sessions.login" => (Some("LoginReq"), Some("LoginReply"), 200),
        "me.get" => (None, Some("User"), 200),
        "me.update" => (Some("UpdateMeReq"), Some("User"), 200),
        "users.get" => (None, Some("PublicUser"), 200),
        "uploads.create" => (None, Some("Upload"), 201),
        "friend_groups.create" => (Some("FriendGroupReq"), Some("FriendGroup"), 201),
        "friend_groups.rename" => (Some("FriendGroupReq"), Some("FriendGroup"), 200),
        "friend_requests.create" => (Some("FriendRequestReq"), Some("FriendRequest"), 201),
        "friend_requests.accept" => (Some("AcceptFriendReq"), Some("FriendRequest"), 200),
        "friend_requests.refuse" => (None, Some("FriendRequest"), 200),
        "friends.update" => (Some("UpdateFriendReq"), None, 200),
        "groups.create" => (Some("CreateGroupReq"), Some("Group"), 201),
        "groups.get" => (None, Some("Group"), 200),
        "groups.update" => (Some("UpdateGroupReq"), Some("Group"), 200),
        "groups.transfer" => (Some("TransferReq"), Some("Group"), 200),
        "groups.join" => (Some("JoinReq"), None, 200),
        "groups.member_update" => (Some("UpdateMemberReq"), None, 200),
        "messages.send" => (Some("SendReq"), Some("Message"), 201),
        "conversations.read" => (Some("ReadReq"), None, 200),
        "notifications.read" => (Some("ReadNotificationsReq"), None, 200),
        "notices.create" => (Some("NoticeReq"), None, 200),
        _ => (None, None, 200),
    }
}

/// Query parameters of the list operations.
fn query_params(op: &str) -> &'static [(&'static str, &'static str)] {
    match op {
        "search.users" => &[
            ("q", "account number, part of a nickname, or an exact email"),
            ("page", "from 1"),
            ("page_size", "1 to 100"),
        ],
        "search.groups" => &[
            ("q", "group number or part of a name"),
            ("page", "from 1"),
            ("page_size", "1 to 100"),
        ],
        "recommendations.users" | "notifications.list" => {
            &[("page", "from 1"), ("page_size", "1 to 100")]
        }
        "messages.list" => &[
            (
                "before_seq",
                "messages with a smaller seq (newest first page when omitted)",
            ),
            (
                "after_seq",
                "messages with a larger seq (for syncing after a reconnect)",
            ),
            ("limit", "1 to 200, default 50"),
        ],
        _ => &[],
    }
}

/// The schema of a query parameter, with the bounds the server enforces (`Args::page`, `chat.rs`).
fn query_schema(name: &str) -> Value {
    match name {
        "q" => json!({"type": "string", "minLength": 1}),
        "page" => json!({"type": "integer", "minimum": 1, "maximum": 10000}),
        "page_size" => json!({"type": "integer", "minimum": 1, "maximum": 100}),
        "limit" => json!({"type": "integer", "minimum": 1, "maximum": 200}),
        // before_seq / after_seq: any integer is accepted.
        _ => json!({"type": "integer"}),
    }
}

fn add<T: ToSchema>(schemas: &mut Map<String, Value>) {
    let mut nested: Vec<(String, RefOr<Schema>)> = Vec::new();
    T::schemas(&mut nested);
    nested.push((T::name().into_owned(), T::schema()));
    for (name, schema) in nested {
        schemas.insert(name, serde_json::to_value(schema).unwrap_or(Value::Null));
    }
}

fn components() -> Map<String, Value> {
    let mut s = Map::new();
    add::<User>(&mut s);
    add::<PublicUser>(&mut s);
    add::<RegisterReq>(&mut s);
    add::<LoginReq>(&mut s);
    add::<LoginReply>(&mut s);
    add::<UpdateMeReq>(&mut s);
    add::<Upload>(&mut s);
    add::<FriendGroup>(&mut s);
    add::<FriendGroupReq>(&mut s);
    add::<FriendGroupWithFriends>(&mut s);
    add::<Friend>(&mut s);
    add::<FriendRequest>(&mut s);
    add::<FriendRequestReq>(&mut s);
    add::<AcceptFriendReq>(&mut s);
    add::<UpdateFriendReq>(&mut s);
    add::<Group>(&mut s);
    add::<CreateGroupReq>(&mut s);
    add::<UpdateGroupReq>(&mut s);
    add::<TransferReq>(&mut s);
    add::<JoinReq>(&mut s);
    add::<JoinRequest>(&mut s);
    add::<UpdateMemberReq>(&mut s);
    add::<Member>(&mut s);
    add::<Message>(&mut s);
    add::<SendReq>(&mut s);
    add::<ReadReq>(&mut s);
    add::<Conversation>(&mut s);
    add::<Notification>(&mut s);
    add::<ReadNotificationsReq>(&mut s);
    add::<NoticeReq>(&mut s);
    s.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}),
    );
    s
}

fn schema_ref(name: Option<&str>) -> Value {
    match name {
        Some(n) => json!({"$ref": format!("#/components/schemas/{n}")}),
        None => json!({"type": "object"}),
    }
}

/// The whole document.
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for r in IM_ROUTES {
        let (req, resp, status) = io(r.op);
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                let schema = if name == "cid" || (name == "id" && r.path.starts_with("/v1/uploads"))
                {
                    json!({"type": "string", "minLength": 1})
                } else {
                    // Ids are positive (`Args::id`).
                    json!({"type": "integer", "minimum": 1})
                };
                json!({"name": name, "in": "path", "required": true, "schema": schema})
            })
            .collect();
        for (name, description) in query_params(r.op) {
            params.push(json!({"name": name, "in": "query", "required": *name == "q", "description": description, "schema": query_schema(name)}));
        }
        let error = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        let success = if r.op == "uploads.get" {
            json!({"description": "the file, with its Content-Type", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})
        } else {
            json!({"description": "success", "content": {"application/json": {"schema": schema_ref(resp)}}})
        };
        let mut op = json!({
            "operationId": r.op,
            "summary": r.summary,
            "tags": [r.tag],
            "parameters": params,
            "responses": {status.to_string(): success, "4XX": error},
        });
        if r.auth {
            op["security"] = json!([{"bearer": []}]);
        } else if r.trusted {
            op["security"] = json!([{"apiKey": []}]);
        }
        // The other successes some operations have.
        let also: &[(u16, &str)] = match r.op {
            "groups.join" => &[(202, "a join request was filed (the group needs approval)")],
            "messages.send" => &[(
                200,
                "a resend: the message stored earlier with this client_msg_id",
            )],
            _ => &[],
        };
        for (status, description) in also {
            op["responses"][status.to_string()] = json!({"description": description, "content": {"application/json": {"schema": schema_ref(resp)}}});
        }
        if r.raw_body {
            op["requestBody"] = json!({"required": true, "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}});
        } else if let Some(req) = req {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema_ref(Some(req))}}});
        }
        let item = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        item[r.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "imcloud IM API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Accounts, friends, groups, chat and the message box. Errors are {\"error\":{\"code\",\"message\"}}. Live events arrive on the websocket (see docs/im.md)."
        },
        "paths": paths,
        "components": {
            "schemas": components(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "a login token (POST /v1/sessions)"},
                "apiKey": {"type": "http", "scheme": "bearer", "description": "IMCLOUD_API_KEY, for trusted backends"}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_carry_their_bounds() {
        let doc = document();
        let params = |path: &str, method: &str| doc["paths"][path][method]["parameters"].clone();
        let search = params("/v1/search/users", "get");
        let by_name = |name: &str| {
            search
                .as_array()
                .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
                .unwrap_or_default()
        };
        assert_eq!(by_name("q")["schema"]["minLength"], 1);
        assert_eq!(by_name("page")["schema"]["minimum"], 1);
        assert_eq!(by_name("page_size")["schema"]["maximum"], 100);
        let user = params("/v1/users/{id}", "get");
        assert_eq!(user[0]["schema"]["minimum"], 1);
    }

    #[test]
    fn every_route_and_referenced_schema_is_in_the_document() {
        let doc = document();
        for r in IM_ROUTES {
            assert!(
                doc["paths"][r.path][r.method.to_ascii_lowercase()].is_object(),
                "{} {}",
                r.method,
                r.path
            );
        }
        let text = doc.to_string();
        for piece in text.split("#/components/schemas/").skip(1) {
            let name: String = piece.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(
                doc["components"]["schemas"][&name].is_object(),
                "{name} is referenced but missing"
            );
        }
    }
}
