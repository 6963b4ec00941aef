//! The IM tier through the real HTTP API and real websocket clients, once on SQLite and once on
//! PostgreSQL (each scenario below runs against both stores: this is the stores' conformance suite).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::im::{ImServer, Store, TestUser, command, next_event, no_event};
use serde_json::{Value, json};

/// Runs each scenario once per store.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Store::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Store::Postgres).await } )*
        }
    };
}

on_both_stores!(
    accounts_register_login_profile_and_logout,
    friends_chat_live_and_offline_sync_without_loss_or_duplicates,
    group_lifecycle_with_roles_approval_mutes_kick_and_dismiss,
    every_authorization_rule_refuses,
    bad_input_gets_a_4xx_with_a_json_error,
    presence_follows_the_first_and_last_connection,
    concurrent_senders_get_gapless_seqs,
    one_device_per_platform_policy_closes_the_older_connection,
    search_recommendations_uploads_and_the_message_box,
);

fn ids(messages: &Value) -> Vec<i64> {
    messages["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect()
}

fn seqs(messages: &Value) -> Vec<i64> {
    messages["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}

async fn send(im: &ImServer, from: &TestUser, cid: &str, client_msg_id: &str, text: &str) -> Value {
    im.ok(
        201,
        "POST",
        &format!("/v1/conversations/{cid}/messages"),
        from,
        Some(json!({"client_msg_id": client_msg_id, "type": "text", "content": text})),
    )
    .await
}

async fn accounts_register_login_profile_and_logout(store: Store) {
    let im = ImServer::start(store).await;
    let (s, v) = im
        .call(
            "POST",
            "/v1/users",
            None,
            Some(
                json!({"email": "Ann@Example.com", "nickname": "Ann", "password": "correct horse"}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["email"], "ann@example.com");
    assert!(v.get("password_hash").is_none() && v.get("password").is_none());
    assert!(v["account_no"].as_str().is_some_and(|n| n.len() == 9));
    let id = v["id"].as_i64().expect("id");
    // The email is unique, whatever its case.
    let (s, v) = im
        .call("POST", "/v1/users", None, Some(json!({"email": "ANN@example.com", "nickname": "Ann2", "password": "correct horse"})))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{v}"
    );
    // A default friend group exists.
    let ann = im.login("ann@example.com", id).await;
    let groups = im.ok(200, "GET", "/v1/friend-groups", &ann, None).await;
    assert_eq!(groups["friend_groups"][0]["is_default"], 1, "{groups}");
    // Wrong password: 401, the same answer as an unknown email.
    let (s, v) = im
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"email": "ann@example.com", "password": "wrong password"})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (s2, v2) = im
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"email": "nobody@example.com", "password": "wrong password"})),
        )
        .await;
    assert_eq!((s2, &v2["error"]["message"]), (401, &v["error"]["message"]));
    // Profile.
    let me = im
        .ok(200, "PATCH", "/v1/me", &ann, Some(json!({"nickname": "Annie", "signature": "hello", "sex": "female", "birthday": "1990-05-17", "location": "Oslo"})))
        .await;
    assert_eq!(
        (
            me["nickname"].as_str(),
            me["sex"].as_str(),
            me["birthday"].as_str()
        ),
        (Some("Annie"), Some("female"), Some("1990-05-17"))
    );
    assert_eq!(
        im.ok(200, "GET", "/v1/me", &ann, None).await["signature"],
        "hello"
    );
    // Password change needs the current one; the new one works, and it ends the other logins.
    let other_login = im.login("ann@example.com", id).await;
    let mut other_ws = im.ws(&other_login).await;
    im.refused(
        403,
        "PATCH",
        "/v1/me",
        Some(&ann),
        Some(json!({"password": "new password!", "current_password": "nope nope"})),
    )
    .await;
    im.ok(
        200,
        "PATCH",
        "/v1/me",
        &ann,
        Some(json!({"password": "new password!", "current_password": "correct horse"})),
    )
    .await;
    let (s, _) = im
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"email": "ann@example.com", "password": "new password!"})),
        )
        .await;
    assert_eq!(s, 200);
    im.refused(401, "GET", "/v1/me", Some(&other_login), None)
        .await;
    let reason = common::expect_closed(&mut other_ws).await;
    assert!(reason.contains("password changed"), "{reason}");
    im.ok(200, "GET", "/v1/me", &ann, None).await;
    // Others see no email unless they are friends.
    let bob = im.user("Bob").await;
    let seen = im
        .ok(200, "GET", &format!("/v1/users/{id}"), &bob, None)
        .await;
    assert_eq!(seen["nickname"], "Annie");
    assert!(seen.get("email").is_none(), "{seen}");
    im.befriend(&bob, &ann).await;
    let seen = im
        .ok(200, "GET", &format!("/v1/users/{id}"), &bob, None)
        .await;
    assert_eq!(seen["email"], "ann@example.com");
    // The login token opens a websocket; after logout it opens neither /v1 nor a websocket.
    let mut c = im.ws(&ann).await;
    assert_eq!(command(&mut c, json!({"cmd": "ping"})).await["code"], 0);
    im.ok(200, "DELETE", "/v1/sessions/current", &ann, None)
        .await;
    assert_eq!(
        im.refused(401, "GET", "/v1/me", Some(&ann), None).await,
        "unauthenticated"
    );
    // The login's open connection is closed, with the reason.
    let reason = common::expect_closed(&mut c).await;
    assert!(reason.contains("logged out"), "{reason}");
    assert!(
        im.try_ws(&ann).await.is_err(),
        "a logged-out token must not open a websocket"
    );
    // Bob's login is unaffected.
    im.ok(200, "GET", "/v1/me", &bob, None).await;
}

async fn friends_chat_live_and_offline_sync_without_loss_or_duplicates(store: Store) {
    let im = ImServer::start(store).await;
    let ann = im.user("Ann").await;
    let bob = im.user("Bob").await;
    let mut bob_ws = im.ws(&bob).await;
    let mut ann_ws = im.ws(&ann).await;

    // A friend request reaches Bob live and in his message box.
    let close = im
        .ok(
            201,
            "POST",
            "/v1/friend-groups",
            &ann,
            Some(json!({"name": "Close"})),
        )
        .await;
    let req = im
        .ok(
            201,
            "POST",
            "/v1/friend-requests",
            &ann,
            Some(json!({"to_user_id": bob.id, "note": "it's Ann", "friend_group_id": close["id"]})),
        )
        .await;
    let n = next_event(&mut bob_ws, "notification").await;
    assert_eq!(
        (n["kind"].as_str(), n["payload"]["id"].as_i64()),
        (Some("friend_request"), req["id"].as_i64())
    );
    let listed = im.ok(200, "GET", "/v1/friend-requests", &bob, None).await;
    assert_eq!(listed["incoming"][0]["note"], "it's Ann");
    assert_eq!(
        im.ok(200, "GET", "/v1/friend-requests", &ann, None).await["outgoing"][0]["status"],
        "pending"
    );
    // Not friends yet: no private chat.
    let cid = format!("u-{}-{}", ann.id.min(bob.id), ann.id.max(bob.id));
    im.refused(
        403,
        "POST",
        &format!("/v1/conversations/{cid}/messages"),
        Some(&ann),
        Some(json!({"client_msg_id": "x", "content": "hi"})),
    )
    .await;
    // Bob accepts: both sides are friends, Ann hears the result.
    im.ok(
        200,
        "POST",
        &format!("/v1/friend-requests/{}/accept", req["id"]),
        &bob,
        None,
    )
    .await;
    let result = next_event(&mut ann_ws, "notification").await;
    assert_eq!(
        (
            result["kind"].as_str(),
            result["payload"]["status"].as_str()
        ),
        (Some("friend_request_result"), Some("accepted"))
    );
    next_event(&mut ann_ws, "friend").await;
    im.refused(
        409,
        "POST",
        &format!("/v1/friend-requests/{}/accept", req["id"]),
        Some(&bob),
        None,
    )
    .await;
    let friends = im.ok(200, "GET", "/v1/friends", &ann, None).await;
    let close_group = friends["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == "Close")
        .expect("Close")
        .clone();
    assert_eq!(
        close_group["friends"][0]["user"]["id"].as_i64(),
        Some(bob.id)
    );
    assert_eq!(close_group["friends"][0]["online"], true);
    let bobs = im.ok(200, "GET", "/v1/friends", &bob, None).await;
    assert_eq!(
        bobs["groups"][0]["friends"][0]["user"]["id"].as_i64(),
        Some(ann.id)
    );

    // Live: three messages arrive in order, to Bob and to Ann's own connection.
    for i in 1..=3 {
        send(&im, &ann, &cid, &format!("live-{i}"), &format!("hello {i}")).await;
    }
    for i in 1..=3 {
        let m = next_event(&mut bob_ws, "message").await;
        assert_eq!(
            (m["seq"].as_i64(), m["content"].as_str()),
            (Some(i), Some(format!("hello {i}").as_str()))
        );
        assert_eq!(
            next_event(&mut ann_ws, "message").await["seq"].as_i64(),
            Some(i)
        );
    }
    // Sending over the websocket: op 5 carries the stored message.
    let reply = command(&mut bob_ws, json!({"cmd": "send", "conversation_id": cid, "client_msg_id": "ws-1", "content": "from ws"})).await;
    assert_eq!(
        (reply["code"].as_i64(), reply["data"]["seq"].as_i64()),
        (Some(0), Some(4)),
        "{reply}"
    );
    assert_eq!(
        next_event(&mut ann_ws, "message").await["content"],
        "from ws"
    );
    let last_seen = 4;
    // A resend over the websocket is answered with the same message.
    let again = command(&mut bob_ws, json!({"cmd": "send", "conversation_id": cid, "client_msg_id": "ws-1", "content": "from ws"})).await;
    assert_eq!(again["data"]["id"], reply["data"]["id"]);

    // Bob goes offline (abruptly); Ann sends five more, one of them twice.
    drop(bob_ws);
    let mut sent = Vec::new();
    for i in 1..=5 {
        sent.push(
            send(
                &im,
                &ann,
                &cid,
                &format!("offline-{i}"),
                &format!("while away {i}"),
            )
            .await["id"]
                .as_i64()
                .expect("id"),
        );
    }
    let (s, dup) = im
        .call(
            "POST",
            &format!("/v1/conversations/{cid}/messages"),
            Some(&ann.token),
            Some(json!({"client_msg_id": "offline-3", "content": "while away 3"})),
        )
        .await;
    assert_eq!(
        (s, dup["id"].as_i64()),
        (200, Some(sent[2])),
        "a resend returns the stored message: {dup}"
    );

    // Bob reconnects: the conversation list shows the unread count; syncing from his last seq gives
    // exactly what he missed, in order.
    let mut bob_ws = im.ws(&bob).await;
    let convs = im.ok(200, "GET", "/v1/conversations", &bob, None).await;
    let conv = &convs["conversations"][0];
    assert_eq!(
        (conv["id"].as_str(), conv["last_seq"].as_i64()),
        (Some(cid.as_str()), Some(9)),
        "{convs}"
    );
    assert_eq!(
        conv["unread"].as_i64(),
        Some(5),
        "Bob's own message marked the first four read: {conv}"
    );
    assert_eq!(conv["peer"]["id"].as_i64(), Some(ann.id));
    assert_eq!(conv["last_message"]["content"], "while away 5");
    let mut got = Vec::new();
    let mut after = last_seen;
    loop {
        let page = im
            .ok(
                200,
                "GET",
                &format!("/v1/conversations/{cid}/messages?after_seq={after}&limit=2"),
                &bob,
                None,
            )
            .await;
        got.extend(ids(&page));
        after = *seqs(&page).last().unwrap_or(&after);
        if page["has_more"] == false {
            break;
        }
    }
    assert_eq!(got, sent, "missed messages, once each, in order");
    // History pages backwards.
    let newest = im
        .ok(
            200,
            "GET",
            &format!("/v1/conversations/{cid}/messages?limit=4"),
            &bob,
            None,
        )
        .await;
    assert_eq!(
        (seqs(&newest), newest["has_more"].as_bool()),
        (vec![6, 7, 8, 9], Some(true))
    );
    let older = im
        .ok(
            200,
            "GET",
            &format!("/v1/conversations/{cid}/messages?before_seq=6&limit=10"),
            &bob,
            None,
        )
        .await;
    assert_eq!(
        (seqs(&older), older["has_more"].as_bool()),
        (vec![1, 2, 3, 4, 5], Some(false))
    );
    // The same over the websocket.
    let h = command(
        &mut bob_ws,
        json!({"cmd": "history", "conversation_id": cid, "after_seq": 7}),
    )
    .await;
    assert_eq!(seqs(&h["data"]), vec![8, 9]);

    // Bob reads: Ann gets a read receipt, Bob's unread drops to zero.
    let read = im
        .ok(
            200,
            "POST",
            &format!("/v1/conversations/{cid}/read"),
            &bob,
            Some(json!({"seq": 9})),
        )
        .await;
    assert_eq!(
        (read["read_seq"].as_i64(), read["unread"].as_i64()),
        (Some(9), Some(0))
    );
    let receipt = next_event(&mut ann_ws, "read").await;
    assert_eq!(
        (receipt["user_id"].as_i64(), receipt["seq"].as_i64()),
        (Some(bob.id), Some(9))
    );
    assert_eq!(
        im.ok(200, "GET", "/v1/conversations", &bob, None).await["conversations"][0]["unread"],
        0
    );
    // Reading backwards never lowers the read mark.
    let read = im
        .ok(
            200,
            "POST",
            &format!("/v1/conversations/{cid}/read"),
            &bob,
            Some(json!({"seq": 2})),
        )
        .await;
    assert_eq!(read["read_seq"].as_i64(), Some(9));

    // Remark and group move; deleting the friendship removes both sides.
    let f = im
        .ok(
            200,
            "PATCH",
            &format!("/v1/friends/{}", ann.id),
            &bob,
            Some(json!({"remark": "Annie"})),
        )
        .await;
    assert_eq!(f["remark"], "Annie");
    im.ok(
        200,
        "DELETE",
        &format!("/v1/friend-groups/{}", close["id"]),
        &ann,
        None,
    )
    .await;
    let friends = im.ok(200, "GET", "/v1/friends", &ann, None).await;
    assert_eq!(
        friends["groups"][0]["friends"][0]["user"]["id"].as_i64(),
        Some(bob.id),
        "moved to the default group"
    );
    im.ok(
        200,
        "DELETE",
        &format!("/v1/friends/{}", bob.id),
        &ann,
        None,
    )
    .await;
    assert_eq!(next_event(&mut bob_ws, "friend").await["change"], "removed");
    let bobs = im.ok(200, "GET", "/v1/friends", &bob, None).await;
    assert!(
        bobs["groups"][0]["friends"]
            .as_array()
            .expect("friends")
            .is_empty(),
        "{bobs}"
    );
    im.refused(
        403,
        "POST",
        &format!("/v1/conversations/{cid}/messages"),
        Some(&bob),
        Some(json!({"client_msg_id": "late", "content": "hi"})),
    )
    .await;
    // The history stays readable to both.
    im.ok(
        200,
        "GET",
        &format!("/v1/conversations/{cid}/messages"),
        &bob,
        None,
    )
    .await;
}

async fn group_lifecycle_with_roles_approval_mutes_kick_and_dismiss(store: Store) {
    let im = ImServer::start(store).await;
    let (ann, bob, cat) = (
        im.user("Ann").await,
        im.user("Bob").await,
        im.user("Cat").await,
    );
    let mut ann_ws = im.ws(&ann).await;
    let mut bob_ws = im.ws(&bob).await;
    let mut cat_ws = im.ws(&cat).await;

    let g = im
        .ok(201, "POST", "/v1/groups", &ann, Some(json!({"name": "Climbers", "description": "weekends", "max_members": 10, "need_approval": true})))
        .await;
    let gid = g["id"].as_i64().expect("group id");
    let cid = format!("g-{gid}");
    assert_eq!(
        (
            g["my_role"].as_str(),
            g["member_count"].as_i64(),
            g["conversation_id"].as_str()
        ),
        (Some("owner"), Some(1), Some(cid.as_str()))
    );
    send(&im, &ann, &cid, "before", "before anyone joined").await;

    // Approval: Bob asks, Ann is told, Cat (not a member) may not decide, Ann accepts.
    let (s, pending) = im
        .call(
            "POST",
            &format!("/v1/groups/{gid}/join"),
            Some(&bob.token),
            Some(json!({"note": "let me in"})),
        )
        .await;
    assert_eq!(
        (s, pending["status"].as_str()),
        (202, Some("pending")),
        "{pending}"
    );
    let rid = pending["request"]["id"].as_i64().expect("request id");
    assert_eq!(
        next_event(&mut ann_ws, "notification").await["kind"],
        "group_join_request"
    );
    im.refused(
        409,
        "POST",
        &format!("/v1/groups/{gid}/join"),
        Some(&bob),
        None,
    )
    .await;
    im.refused(
        403,
        "POST",
        &format!("/v1/groups/{gid}/join-requests/{rid}/accept"),
        Some(&cat),
        None,
    )
    .await;
    im.refused(
        403,
        "GET",
        &format!("/v1/groups/{gid}/join-requests"),
        Some(&cat),
        None,
    )
    .await;
    assert_eq!(
        im.ok(
            200,
            "GET",
            &format!("/v1/groups/{gid}/join-requests"),
            &ann,
            None
        )
        .await["requests"][0]["status"],
        "pending"
    );
    im.ok(
        200,
        "POST",
        &format!("/v1/groups/{gid}/join-requests/{rid}/accept"),
        &ann,
        None,
    )
    .await;
    let joined = next_event(&mut ann_ws, "group").await;
    assert_eq!(
        (joined["change"].as_str(), joined["user_id"].as_i64()),
        (Some("joined"), Some(bob.id))
    );
    let result = next_event(&mut bob_ws, "notification").await;
    assert_eq!(
        (
            result["kind"].as_str(),
            result["payload"]["status"].as_str()
        ),
        (Some("group_join_result"), Some("accepted"))
    );
    // Bob does not see what was said before he joined.
    let h = im
        .ok(
            200,
            "GET",
            &format!("/v1/conversations/{cid}/messages"),
            &bob,
            None,
        )
        .await;
    assert!(seqs(&h).is_empty(), "{h}");
    let convs = im.ok(200, "GET", "/v1/conversations", &bob, None).await;
    let group_conv = convs["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .find(|c| c["id"] == cid.as_str())
        .expect("the group's conversation")
        .clone();
    assert!(group_conv["last_message"].is_null(), "{group_conv}");
    assert_eq!(group_conv["unread"], 0, "{group_conv}");
    // Cat's request is refused; then approval is turned off and Cat joins directly.
    let (_, p) = im
        .call(
            "POST",
            &format!("/v1/groups/{gid}/join"),
            Some(&cat.token),
            None,
        )
        .await;
    let crid = p["request"]["id"].as_i64().expect("request id");
    im.ok(
        200,
        "POST",
        &format!("/v1/groups/{gid}/join-requests/{crid}/refuse"),
        &ann,
        None,
    )
    .await;
    assert_eq!(
        next_event(&mut cat_ws, "notification").await["payload"]["status"],
        "refused"
    );
    im.refused(
        403,
        "PATCH",
        &format!("/v1/groups/{gid}"),
        Some(&bob),
        Some(json!({"need_approval": false})),
    )
    .await;
    im.ok(
        200,
        "PATCH",
        &format!("/v1/groups/{gid}"),
        &ann,
        Some(json!({"need_approval": false, "name": "Climbing club"})),
    )
    .await;
    let joined = im
        .ok(200, "POST", &format!("/v1/groups/{gid}/join"), &cat, None)
        .await;
    assert_eq!(joined["status"], "joined");
    let joined_event = next_event(&mut ann_ws, "group").await;
    assert_eq!(joined_event["change"], "updated");
    assert_eq!(next_event(&mut ann_ws, "group").await["change"], "joined");
    let members = im
        .ok(200, "GET", &format!("/v1/groups/{gid}/members"), &cat, None)
        .await;
    let roles: Vec<(i64, String)> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["user"]["id"].as_i64().expect("id"),
                m["role"].as_str().expect("role").to_string(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        vec![
            (ann.id, "owner".into()),
            (bob.id, "member".into()),
            (cat.id, "member".into())
        ]
    );
    assert!(
        members["members"]
            .as_array()
            .expect("members")
            .iter()
            .all(|m| m["online"] == true)
    );

    // Group chat reaches every member.
    send(&im, &cat, &cid, "c1", "hi all").await;
    for ws in [&mut ann_ws, &mut bob_ws, &mut cat_ws] {
        assert_eq!(next_event(ws, "message").await["content"], "hi all");
    }
    // Roles: only the owner promotes; an admin mutes a member but not the owner.
    im.refused(
        403,
        "PATCH",
        &format!("/v1/groups/{gid}/members/{}", cat.id),
        Some(&bob),
        Some(json!({"role": "admin"})),
    )
    .await;
    im.ok(
        200,
        "PATCH",
        &format!("/v1/groups/{gid}/members/{}", bob.id),
        &ann,
        Some(json!({"role": "admin"})),
    )
    .await;
    im.refused(
        403,
        "PATCH",
        &format!("/v1/groups/{gid}/members/{}", ann.id),
        Some(&bob),
        Some(json!({"muted_until": 4102444800000i64})),
    )
    .await;
    im.ok(
        200,
        "PATCH",
        &format!("/v1/groups/{gid}/members/{}", cat.id),
        &bob,
        Some(json!({"muted_until": 4102444800000i64})),
    )
    .await;
    assert_eq!(
        im.refused(
            403,
            "POST",
            &format!("/v1/conversations/{cid}/messages"),
            Some(&cat),
            Some(json!({"client_msg_id": "m", "content": "can I?"}))
        )
        .await,
        "forbidden"
    );
    im.ok(
        200,
        "PATCH",
        &format!("/v1/groups/{gid}/members/{}", cat.id),
        &bob,
        Some(json!({"muted_until": 0})),
    )
    .await;
    send(&im, &cat, &cid, "c2", "unmuted").await;
    // Whole-group mute: members are silent, admins are not.
    im.ok(
        200,
        "PATCH",
        &format!("/v1/groups/{gid}"),
        &ann,
        Some(json!({"all_muted": true})),
    )
    .await;
    im.refused(
        403,
        "POST",
        &format!("/v1/conversations/{cid}/messages"),
        Some(&cat),
        Some(json!({"client_msg_id": "c3", "content": "muted"})),
    )
    .await;
    send(&im, &bob, &cid, "b1", "admins may speak").await;
    im.ok(
        200,
        "PATCH",
        &format!("/v1/groups/{gid}"),
        &ann,
        Some(json!({"all_muted": false})),
    )
    .await;

    // Kick: an admin removes a member, who is told and can no longer read or post.
    im.refused(
        403,
        "DELETE",
        &format!("/v1/groups/{gid}/members/{}", bob.id),
        Some(&cat),
        None,
    )
    .await;
    im.ok(
        200,
        "DELETE",
        &format!("/v1/groups/{gid}/members/{}", cat.id),
        &bob,
        None,
    )
    .await;
    let notice = next_event(&mut cat_ws, "notification").await;
    assert_eq!(
        (
            notice["kind"].as_str(),
            notice["payload"]["change"].as_str()
        ),
        (Some("group_notice"), Some("kicked"))
    );
    im.refused(
        403,
        "GET",
        &format!("/v1/conversations/{cid}/messages"),
        Some(&cat),
        None,
    )
    .await;
    im.refused(
        403,
        "POST",
        &format!("/v1/conversations/{cid}/messages"),
        Some(&cat),
        Some(json!({"client_msg_id": "c4", "content": "hey"})),
    )
    .await;
    assert!(
        im.ok(200, "GET", "/v1/groups", &cat, None).await["groups"]
            .as_array()
            .expect("groups")
            .is_empty()
    );

    // Transfer and leave: the owner cannot leave, the new owner can dismiss.
    im.refused(
        409,
        "DELETE",
        &format!("/v1/groups/{gid}/members/{}", ann.id),
        Some(&ann),
        None,
    )
    .await;
    im.refused(
        403,
        "POST",
        &format!("/v1/groups/{gid}/transfer"),
        Some(&bob),
        Some(json!({"user_id": bob.id})),
    )
    .await;
    im.ok(
        200,
        "POST",
        &format!("/v1/groups/{gid}/transfer"),
        &ann,
        Some(json!({"user_id": bob.id})),
    )
    .await;
    assert_eq!(
        im.ok(200, "GET", &format!("/v1/groups/{gid}"), &bob, None)
            .await["my_role"],
        "owner"
    );
    im.ok(
        200,
        "DELETE",
        &format!("/v1/groups/{gid}/members/{}", ann.id),
        &ann,
        None,
    )
    .await;
    im.refused(
        403,
        "DELETE",
        &format!("/v1/groups/{gid}"),
        Some(&ann),
        None,
    )
    .await;
    im.ok(200, "DELETE", &format!("/v1/groups/{gid}"), &bob, None)
        .await;
    im.refused(404, "GET", &format!("/v1/groups/{gid}"), Some(&bob), None)
        .await;
    im.refused(
        404,
        "POST",
        &format!("/v1/conversations/{cid}/messages"),
        Some(&bob),
        Some(json!({"client_msg_id": "z", "content": "gone"})),
    )
    .await;
}

async fn every_authorization_rule_refuses(store: Store) {
    let im = ImServer::start(store).await;
    let (ann, bob, eve) = (
        im.user("Ann").await,
        im.user("Bob").await,
        im.user("Eve").await,
    );
    im.befriend(&ann, &bob).await;
    let cid = format!("u-{}-{}", ann.id.min(bob.id), ann.id.max(bob.id));
    send(&im, &ann, &cid, "secret", "just for Bob").await;
    let g = im
        .ok(
            201,
            "POST",
            "/v1/groups",
            &ann,
            Some(json!({"name": "Private"})),
        )
        .await;
    let gid = g["id"].as_i64().expect("id");

    // No token, a forged token, a backend connection token (not a login): 401 on every private route.
    for (method, path) in [
        ("GET", "/v1/me"),
        ("GET", "/v1/friends"),
        ("GET", "/v1/conversations"),
        ("POST", "/v1/groups"),
    ] {
        im.refused(401, method, path, None, Some(json!({}))).await;
        let forged = TestUser {
            id: ann.id,
            email: String::new(),
            token: format!("{}x", ann.token),
        };
        im.refused(401, method, path, Some(&forged), Some(json!({})))
            .await;
        let backend = TestUser {
            id: ann.id,
            email: String::new(),
            token: imcloud::client::sign_token(common::SECRET, ann.id, 600).expect("sign"),
        };
        im.refused(401, method, path, Some(&backend), Some(json!({})))
            .await;
    }
    // Eve reads and writes nobody else's private conversation, and cannot invent one.
    im.refused(
        404,
        "GET",
        &format!("/v1/conversations/{cid}/messages"),
        Some(&eve),
        None,
    )
    .await;
    im.refused(
        404,
        "POST",
        &format!("/v1/conversations/{cid}/messages"),
        Some(&eve),
        Some(json!({"client_msg_id": "e", "content": "x"})),
    )
    .await;
    im.refused(
        404,
        "POST",
        &format!("/v1/conversations/{cid}/read"),
        Some(&eve),
        Some(json!({"seq": 1})),
    )
    .await;
    let eve_ws = &mut im.ws(&eve).await;
    let r = command(eve_ws, json!({"cmd": "history", "conversation_id": cid})).await;
    assert_eq!(r["code"], -404, "{r}");
    assert!(r.get("data").is_none());
    // Nor a group's.
    im.refused(
        403,
        "GET",
        &format!("/v1/conversations/g-{gid}/messages"),
        Some(&eve),
        None,
    )
    .await;
    im.refused(
        403,
        "POST",
        &format!("/v1/conversations/g-{gid}/messages"),
        Some(&eve),
        Some(json!({"client_msg_id": "e", "content": "x"})),
    )
    .await;
    im.refused(
        403,
        "GET",
        &format!("/v1/groups/{gid}/members"),
        Some(&eve),
        None,
    )
    .await;
    // Managing a group needs its owner or an admin.
    im.refused(
        403,
        "PATCH",
        &format!("/v1/groups/{gid}"),
        Some(&eve),
        Some(json!({"name": "Mine"})),
    )
    .await;
    im.refused(
        403,
        "DELETE",
        &format!("/v1/groups/{gid}"),
        Some(&eve),
        None,
    )
    .await;
    im.refused(
        403,
        "DELETE",
        &format!("/v1/groups/{gid}/members/{}", ann.id),
        Some(&eve),
        None,
    )
    .await;
    im.refused(
        403,
        "PATCH",
        &format!("/v1/groups/{gid}/members/{}", ann.id),
        Some(&eve),
        Some(json!({"role": "admin"})),
    )
    .await;
    im.refused(
        403,
        "POST",
        &format!("/v1/groups/{gid}/transfer"),
        Some(&eve),
        Some(json!({"user_id": eve.id})),
    )
    .await;
    // Someone else's friend request, friend group, friendship.
    let r = im
        .ok(
            201,
            "POST",
            "/v1/friend-requests",
            &eve,
            Some(json!({"to_user_id": bob.id})),
        )
        .await;
    im.refused(
        404,
        "POST",
        &format!("/v1/friend-requests/{}/accept", r["id"]),
        Some(&ann),
        None,
    )
    .await;
    im.refused(
        404,
        "POST",
        &format!("/v1/friend-requests/{}/accept", r["id"]),
        Some(&eve),
        None,
    )
    .await;
    let ann_groups = im.ok(200, "GET", "/v1/friend-groups", &ann, None).await;
    let ann_default = ann_groups["friend_groups"][0]["id"].as_i64().expect("id");
    im.refused(
        404,
        "PATCH",
        &format!("/v1/friend-groups/{ann_default}"),
        Some(&eve),
        Some(json!({"name": "x"})),
    )
    .await;
    im.refused(
        404,
        "DELETE",
        &format!("/v1/friend-groups/{ann_default}"),
        Some(&eve),
        None,
    )
    .await;
    im.refused(
        409,
        "DELETE",
        &format!("/v1/friend-groups/{ann_default}"),
        Some(&ann),
        None,
    )
    .await;
    im.refused(
        404,
        "POST",
        "/v1/friend-requests",
        Some(&eve),
        Some(json!({"to_user_id": ann.id, "friend_group_id": ann_default})),
    )
    .await;
    im.refused(
        404,
        "PATCH",
        &format!("/v1/friends/{}", ann.id),
        Some(&eve),
        Some(json!({"remark": "x"})),
    )
    .await;
    im.refused(
        404,
        "DELETE",
        &format!("/v1/friends/{}", ann.id),
        Some(&eve),
        None,
    )
    .await;
    // Another user's profile never shows the email or password hash.
    let seen = im
        .ok(200, "GET", &format!("/v1/users/{}", ann.id), &eve, None)
        .await;
    assert!(
        seen.get("email").is_none() && seen.get("password_hash").is_none(),
        "{seen}"
    );
    // Another user's message box is not reachable: mine is empty.
    assert_eq!(
        im.ok(200, "GET", "/v1/notifications", &eve, None).await["items"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    // The trusted push API still wants the API key, not a login token.
    let (s, _) = im
        .server()
        .request(
            reqwest::Method::POST,
            "/goim/push/mids?operation=1000&mids=1",
            Some(&ann.token),
            reqwest::Body::from("x"),
        )
        .await;
    assert_eq!(s, 401);
}

async fn bad_input_gets_a_4xx_with_a_json_error(store: Store) {
    let im = ImServer::start(store).await;
    let ann = im.user("Ann").await;
    let bob = im.user("Bob").await;
    im.befriend(&ann, &bob).await;
    let cid = format!("u-{}-{}", ann.id.min(bob.id), ann.id.max(bob.id));
    let long = "x".repeat(6000);
    let cases: Vec<(u16, &str, String, Option<Value>)> = vec![
        (
            400,
            "POST",
            "/v1/users".into(),
            Some(json!({"email": "not-an-email", "nickname": "X", "password": "correct horse"})),
        ),
        (
            400,
            "POST",
            "/v1/users".into(),
            Some(json!({"email": "x@example.com", "nickname": "", "password": "correct horse"})),
        ),
        (
            400,
            "POST",
            "/v1/users".into(),
            Some(json!({"email": "x@example.com", "nickname": "X", "password": "short"})),
        ),
        (
            400,
            "POST",
            "/v1/users".into(),
            Some(
                json!({"email": "x@example.com", "nickname": "X", "password": "correct horse", "admin": true}),
            ),
        ),
        (400, "POST", "/v1/users".into(), Some(json!({"email": 5}))),
        (400, "PATCH", "/v1/me".into(), Some(json!({"sex": "robot"}))),
        (
            400,
            "PATCH",
            "/v1/me".into(),
            Some(json!({"birthday": "31/12/1990"})),
        ),
        (
            400,
            "PATCH",
            "/v1/me".into(),
            Some(json!({"avatar": "javascript:alert(1)"})),
        ),
        (
            400,
            "PATCH",
            "/v1/me".into(),
            Some(json!({"nickname": "n".repeat(33)})),
        ),
        (400, "GET", "/v1/users/abc".into(), None),
        (400, "GET", "/v1/users/-1".into(), None),
        (404, "GET", "/v1/users/999999".into(), None),
        (400, "GET", "/v1/conversations/x-1/messages".into(), None),
        (400, "GET", "/v1/conversations/u-2-1/messages".into(), None),
        (
            400,
            "GET",
            format!("/v1/conversations/{cid}/messages?limit=0"),
            None,
        ),
        (
            400,
            "GET",
            format!("/v1/conversations/{cid}/messages?limit=abc"),
            None,
        ),
        (
            400,
            "GET",
            format!("/v1/conversations/{cid}/messages?after_seq=1&before_seq=5"),
            None,
        ),
        (
            400,
            "POST",
            format!("/v1/conversations/{cid}/messages"),
            Some(json!({"content": "no client id"})),
        ),
        (
            400,
            "POST",
            format!("/v1/conversations/{cid}/messages"),
            Some(json!({"client_msg_id": "a", "content": ""})),
        ),
        (
            400,
            "POST",
            format!("/v1/conversations/{cid}/messages"),
            Some(json!({"client_msg_id": "a", "content": "nul \u{0} inside"})),
        ),
        (
            400,
            "POST",
            "/v1/sessions".into(),
            Some(json!({"email": "a\u{0}@example.com", "password": "correct horse"})),
        ),
        (
            400,
            "POST",
            format!("/v1/conversations/{cid}/messages"),
            Some(json!({"client_msg_id": "a", "content": long})),
        ),
        (
            400,
            "POST",
            format!("/v1/conversations/{cid}/messages"),
            Some(json!({"client_msg_id": "a", "type": "video", "content": "x"})),
        ),
        (
            400,
            "POST",
            format!("/v1/conversations/{cid}/messages"),
            Some(json!({"client_msg_id": "a", "type": "image", "content": "file:///etc/passwd"})),
        ),
        (
            400,
            "POST",
            format!("/v1/conversations/{cid}/read"),
            Some(json!({"seq": 99})),
        ),
        (
            400,
            "POST",
            "/v1/friend-requests".into(),
            Some(json!({"to_user_id": ann.id})),
        ),
        (
            404,
            "POST",
            "/v1/friend-requests".into(),
            Some(json!({"to_user_id": 999999})),
        ),
        (
            409,
            "POST",
            "/v1/friend-requests".into(),
            Some(json!({"to_user_id": bob.id})),
        ),
        (
            400,
            "POST",
            "/v1/friend-groups".into(),
            Some(json!({"name": ""})),
        ),
        (
            400,
            "POST",
            "/v1/groups".into(),
            Some(json!({"name": "G", "max_members": 1})),
        ),
        (
            400,
            "POST",
            "/v1/groups".into(),
            Some(json!({"name": "G", "max_members": 1000000})),
        ),
        (400, "POST", "/v1/groups".into(), Some(json!({}))),
        (400, "GET", "/v1/search/users?q=".into(), None),
        (
            400,
            "GET",
            "/v1/search/users?q=a&page_size=1000".into(),
            None,
        ),
        (404, "GET", "/v1/no-such-thing".into(), None),
        (405, "PUT", "/v1/me".into(), None),
    ];
    for (status, method, path, body) in &cases {
        im.refused(*status, method, path, Some(&ann), body.clone())
            .await;
    }
    // Bodies that are not JSON objects.
    for body in ["{not json", "[1,2]", "\"text\""] {
        let (s, v) = im
            .server()
            .request(
                reqwest::Method::POST,
                "/v1/friend-groups",
                Some(&ann.token),
                reqwest::Body::from(body),
            )
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some("invalid_argument")),
            "{body}: {v}"
        );
    }
    // A malformed websocket command is answered, and the connection stays usable.
    let mut ws = im.ws(&ann).await;
    for bad in [
        json!({"cmd": "launch"}),
        json!({"nocmd": 1}),
        json!({"cmd": "send", "conversation_id": "zz"}),
    ] {
        let r = command(&mut ws, bad.clone()).await;
        assert_eq!(r["code"], -400, "{bad}: {r}");
    }
    assert_eq!(command(&mut ws, json!({"cmd": "ping"})).await["code"], 0);
    // Nothing was stored by the refused sends.
    assert_eq!(
        im.ok(
            200,
            "GET",
            &format!("/v1/conversations/{cid}/messages"),
            &ann,
            None
        )
        .await["last_seq"],
        0
    );
    // A full group takes nobody else.
    let g = im
        .ok(
            201,
            "POST",
            "/v1/groups",
            &ann,
            Some(json!({"name": "Pair", "max_members": 2})),
        )
        .await;
    im.ok(
        200,
        "POST",
        &format!("/v1/groups/{}/join", g["id"]),
        &bob,
        None,
    )
    .await;
    let third = im.user("Third").await;
    im.refused(
        409,
        "POST",
        &format!("/v1/groups/{}/join", g["id"]),
        Some(&third),
        None,
    )
    .await;
    // Login attempts are rate limited per email.
    let mut limited = false;
    for _ in 0..12 {
        let (s, _) = im
            .call(
                "POST",
                "/v1/sessions",
                None,
                Some(json!({"email": ann.email, "password": "wrong password"})),
            )
            .await;
        if s == 429 {
            limited = true;
            break;
        }
        assert_eq!(s, 401);
    }
    assert!(limited, "failed logins must be limited");
}

async fn presence_follows_the_first_and_last_connection(store: Store) {
    let im = ImServer::start(store).await;
    let (ann, bob, eve) = (
        im.user("Ann").await,
        im.user("Bob").await,
        im.user("Eve").await,
    );
    im.befriend(&ann, &bob).await;
    let mut ann_ws = im.ws(&ann).await;
    let mut eve_ws = im.ws(&eve).await;
    // Bob's first device: Ann hears he is online; Eve (not a friend) hears nothing.
    let phone = im.ws(&bob).await;
    let p = next_event(&mut ann_ws, "presence").await;
    assert_eq!(
        (p["user_id"].as_i64(), p["online"].as_bool()),
        (Some(bob.id), Some(true))
    );
    // A second device is not news; closing one of two is not either.
    let laptop = im.ws(&bob).await;
    drop(phone);
    no_event(&mut ann_ws, "presence", Duration::from_millis(800)).await;
    let friends = im.ok(200, "GET", "/v1/friends", &ann, None).await;
    assert_eq!(friends["groups"][0]["friends"][0]["online"], true);
    // The last one closing abruptly (no close frame): Ann hears he is offline.
    drop(laptop);
    let p = next_event(&mut ann_ws, "presence").await;
    assert_eq!(
        (p["user_id"].as_i64(), p["online"].as_bool()),
        (Some(bob.id), Some(false))
    );
    let friends = im.ok(200, "GET", "/v1/friends", &ann, None).await;
    assert_eq!(friends["groups"][0]["friends"][0]["online"], false);
    no_event(&mut eve_ws, "presence", Duration::from_millis(300)).await;
}

async fn concurrent_senders_get_gapless_seqs(store: Store) {
    let im = std::sync::Arc::new(ImServer::start(store).await);
    let owner = im.user("Owner").await;
    let g = im
        .ok(
            201,
            "POST",
            "/v1/groups",
            &owner,
            Some(json!({"name": "Busy"})),
        )
        .await;
    let gid = g["id"].as_i64().expect("id");
    let mut senders = vec![owner.clone()];
    for i in 0..3 {
        let u = im.user(&format!("Member{i}")).await;
        im.ok(200, "POST", &format!("/v1/groups/{gid}/join"), &u, None)
            .await;
        senders.push(u);
    }
    let cid = format!("g-{gid}");
    let mut tasks = Vec::new();
    for (n, u) in senders.into_iter().enumerate() {
        let (im, cid) = (im.clone(), cid.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..10 {
                // Every message is sent twice: the resend must not take a seq.
                let m = send(&im, &u, &cid, &format!("{n}-{i}"), &format!("{n}/{i}")).await;
                let (s, again) = im
                    .call(
                        "POST",
                        &format!("/v1/conversations/{cid}/messages"),
                        Some(&u.token),
                        Some(json!({"client_msg_id": format!("{n}-{i}"), "content": "dup"})),
                    )
                    .await;
                assert_eq!((s, &again["seq"]), (200, &m["seq"]));
                mine.push(m["seq"].as_i64().expect("seq"));
            }
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "one sender's seqs increase: {mine:?}"
            );
            mine
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        for s in t.await.expect("sender") {
            assert!(all.insert(s), "seq {s} given twice");
        }
    }
    assert_eq!(
        all,
        (1..=40).collect::<HashSet<i64>>(),
        "seqs are 1..=40 without gaps"
    );
    let page = im
        .ok(
            200,
            "GET",
            &format!("/v1/conversations/{cid}/messages?after_seq=0&limit=200"),
            &owner,
            None,
        )
        .await;
    assert_eq!(seqs(&page), (1..=40).collect::<Vec<i64>>());
}

async fn search_recommendations_uploads_and_the_message_box(store: Store) {
    let im = ImServer::start(store).await;
    let (ann, bob, cat) = (
        im.user("Ann").await,
        im.user("Bobby").await,
        im.user("Cat").await,
    );
    im.befriend(&ann, &bob).await;
    // Users by nickname part, by account number, by exact email.
    let found = im
        .ok(200, "GET", "/v1/search/users?q=obb", &ann, None)
        .await;
    assert_eq!(found["users"][0]["id"].as_i64(), Some(bob.id));
    let cat_no = im.ok(200, "GET", "/v1/me", &cat, None).await["account_no"]
        .as_str()
        .expect("no")
        .to_string();
    let found = im
        .ok(
            200,
            "GET",
            &format!("/v1/search/users?q={cat_no}"),
            &ann,
            None,
        )
        .await;
    assert_eq!(found["users"][0]["id"].as_i64(), Some(cat.id));
    let found = im
        .ok(
            200,
            "GET",
            &format!("/v1/search/users?q={}", cat.email),
            &ann,
            None,
        )
        .await;
    assert_eq!(found["users"][0]["id"].as_i64(), Some(cat.id));
    assert!(
        found["users"][0].get("email").is_none(),
        "search never shows a stranger's email"
    );
    // LIKE wildcards are literal.
    assert!(
        im.ok(200, "GET", "/v1/search/users?q=%25", &ann, None)
            .await["users"]
            .as_array()
            .expect("users")
            .is_empty()
    );
    // Recommendations exclude me and my friends.
    let rec = im
        .ok(200, "GET", "/v1/recommendations/users", &ann, None)
        .await;
    let rec: Vec<i64> = rec["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(rec, vec![cat.id]);
    // Groups by name and number.
    let g = im
        .ok(
            201,
            "POST",
            "/v1/groups",
            &cat,
            Some(json!({"name": "Rust Readers"})),
        )
        .await;
    let found = im
        .ok(200, "GET", "/v1/search/groups?q=readers", &ann, None)
        .await;
    assert_eq!(found["groups"][0]["id"], g["id"]);
    let found = im
        .ok(
            200,
            "GET",
            &format!(
                "/v1/search/groups?q={}",
                g["group_no"].as_str().expect("no")
            ),
            &ann,
            None,
        )
        .await;
    assert_eq!(found["groups"][0]["id"], g["id"]);

    // Uploads: type checked against the content, size limited, served back with its type.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    let client = reqwest::Client::new();
    let up = |ct: &'static str, body: Vec<u8>| {
        client
            .post(format!("{}/v1/uploads", im.server().http))
            .bearer_auth(&ann.token)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let r = up("image/png", png.clone()).await.expect("upload");
    assert_eq!(r.status().as_u16(), 201);
    let u: Value = r.json().await.expect("json");
    let url = u["url"].as_str().expect("url").to_string();
    let got = reqwest::get(format!("{}{url}", im.server().http))
        .await
        .expect("download");
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(got.bytes().await.expect("bytes").to_vec(), png);
    assert_eq!(
        up("image/png", b"GIF89a....".to_vec())
            .await
            .expect("upload")
            .status()
            .as_u16(),
        415
    );
    assert_eq!(
        up("text/html", b"<script>".to_vec())
            .await
            .expect("upload")
            .status()
            .as_u16(),
        415
    );
    assert_eq!(
        up("application/octet-stream", vec![0u8; 4 * 1024 * 1024 + 10])
            .await
            .expect("upload")
            .status()
            .as_u16(),
        413
    );
    // Just under the limit passes through gRPC both ways.
    let big: Vec<u8> = (0..4 * 1024 * 1024 - 64).map(|i| (i % 251) as u8).collect();
    let r = up("application/octet-stream", big.clone())
        .await
        .expect("upload");
    assert_eq!(r.status().as_u16(), 201);
    let big_url = r.json::<Value>().await.expect("json")["url"]
        .as_str()
        .expect("url")
        .to_string();
    let got = reqwest::get(format!("{}{big_url}", im.server().http))
        .await
        .expect("download");
    assert_eq!(got.bytes().await.expect("bytes").to_vec(), big);
    let (s, _) = im.call("POST", "/v1/uploads", None, None).await;
    assert_eq!(s, 401, "uploading needs a login");
    // The avatar may point at the upload; an image message too.
    im.ok(200, "PATCH", "/v1/me", &ann, Some(json!({"avatar": url})))
        .await;
    let cid = format!("u-{}-{}", ann.id.min(bob.id), ann.id.max(bob.id));
    let m = im
        .ok(
            201,
            "POST",
            &format!("/v1/conversations/{cid}/messages"),
            &ann,
            Some(json!({"client_msg_id": "img", "type": "image", "content": url})),
        )
        .await;
    assert_eq!(m["type"], "image");

    // System notices come from trusted backends (the API key), never from a user.
    let (s, v) = im
        .server()
        .request(
            reqwest::Method::POST,
            "/v1/notices",
            Some(common::API_KEY),
            reqwest::Body::from(
                json!({"user_ids": [ann.id, 999999], "title": "Maintenance", "content": "at noon"})
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(
        (s, v["sent"].as_i64(), v["unknown_user_ids"][0].as_i64()),
        (200, Some(1), Some(999999)),
        "{v}"
    );
    let notice = im.ok(200, "GET", "/v1/notifications", &ann, None).await;
    assert_eq!(
        (
            notice["items"][0]["kind"].as_str(),
            notice["items"][0]["payload"]["title"].as_str()
        ),
        (Some("system"), Some("Maintenance"))
    );
    im.refused(
        401,
        "POST",
        "/v1/notices",
        Some(&ann),
        Some(json!({"user_ids": [bob.id], "title": "fake"})),
    )
    .await;
    im.read_all_notifications(&ann).await;
    // Message box: Cat's friend request lands in Ann's box, unread until marked read.
    im.ok(
        201,
        "POST",
        "/v1/friend-requests",
        &cat,
        Some(json!({"to_user_id": ann.id, "note": "hello"})),
    )
    .await;
    let boxed = im.ok(200, "GET", "/v1/notifications", &ann, None).await;
    let unread = boxed["unread"].as_i64().expect("unread");
    assert!(unread >= 1, "{boxed}");
    assert_eq!(boxed["items"][0]["kind"], "friend_request");
    let first = boxed["items"][0]["id"].as_i64().expect("id");
    let after = im
        .ok(
            200,
            "POST",
            "/v1/notifications/read",
            &ann,
            Some(json!({"ids": [first]})),
        )
        .await;
    assert_eq!(after["unread"].as_i64(), Some(unread - 1));
    let after = im
        .ok(200, "POST", "/v1/notifications/read", &ann, None)
        .await;
    assert_eq!(after["unread"].as_i64(), Some(0));

    // The OpenAPI document lists every route.
    let (s, doc) = im.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for r in imcloud_common::im::ROUTES {
        assert!(
            doc["paths"][r.path][r.method.to_lowercase()].is_object(),
            "{} {}",
            r.method,
            r.path
        );
    }
}

async fn one_device_per_platform_policy_closes_the_older_connection(store: Store) {
    let im = ImServer::start_with(store, &[("IMCLOUD_IM_DEVICE_POLICY", "replace")]).await;
    let (ann, bob) = (im.user("Ann").await, im.user("Bob").await);
    im.befriend(&ann, &bob).await;
    let connect = |platform: &'static str| {
        let (url, user) = (im.server().ws_url.clone(), ann.clone());
        async move {
            let mut c = imcloud::client::GoimClient::connect_ws(&url)
                .await
                .expect("connect");
            let body = serde_json::to_vec(
                &json!({"mid": user.id, "key": "", "platform": platform, "token": user.token}),
            )
            .expect("json");
            c.auth(body, common::WAIT).await.expect("auth");
            c
        }
    };
    let mut old_web = connect("web").await;
    let mut android = connect("android").await;
    let mut new_web = connect("web").await;
    let reason = common::expect_closed(&mut old_web).await;
    assert!(reason.contains("belogin"), "{reason}");
    // The other platform and the new connection both stay and receive.
    let cid = format!("u-{}-{}", ann.id.min(bob.id), ann.id.max(bob.id));
    send(&im, &bob, &cid, "after", "still here?").await;
    assert_eq!(
        next_event(&mut new_web, "message").await["content"],
        "still here?"
    );
    assert_eq!(
        next_event(&mut android, "message").await["content"],
        "still here?"
    );
}
