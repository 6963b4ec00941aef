//! The IM tier's first edition through the real HTTP API and real websocket clients: one named test per
//! behaviour (accounts and logins, friends, private chat and sync, groups, authorization, bad input,
//! presence, concurrent senders, the device policy, search, uploads and the message box), each run
//! once on SQLite and once on PostgreSQL (`sqlite::…` and `postgres::…`: the stores' conformance
//! suite). Each test starts its own server and sets up only what it checks, through the helpers in
//! `common/im.rs`.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::im::{
    ImServer, Store, TestUser, cid, command, ids, next_event, no_event, on_both_stores, seqs,
};
use serde_json::{Value, json};

on_both_stores!(
    // Accounts and logins
    registration_lower_cases_the_email_and_never_returns_the_password,
    an_email_can_be_registered_only_once_whatever_its_case,
    registration_creates_a_default_friend_group,
    a_wrong_password_gets_the_same_401_as_an_unknown_email,
    a_profile_update_is_stored_and_read_back,
    a_password_change_needs_the_current_password_and_ends_the_other_logins,
    a_users_email_is_shown_to_friends_only,
    logout_ends_the_token_and_closes_that_logins_connections,
    // Friends
    a_friend_request_reaches_the_addressee_live_and_both_request_lists,
    a_friend_request_accepted_makes_both_users_friends,
    users_who_are_not_friends_cannot_chat_privately,
    a_remark_is_kept_and_a_deleted_friend_group_moves_its_friends_to_the_default,
    deleting_a_friend_removes_both_sides_but_keeps_the_history,
    // Private chat and sync
    private_messages_arrive_live_in_order_on_both_sides,
    a_send_over_op_4_is_answered_with_the_stored_message_even_when_resent,
    a_resend_over_http_returns_the_stored_message_with_200,
    an_offline_device_syncs_exactly_what_it_missed_in_order,
    history_pages_backwards_over_http_and_op_4,
    a_read_sends_a_receipt_to_the_peer_and_never_moves_back,
    // Groups
    creating_a_group_makes_the_creator_its_owner,
    a_join_request_waits_for_an_owner_or_admin_to_accept_it,
    a_refused_join_request_is_reported_to_the_requester,
    a_new_member_does_not_see_what_was_said_before_joining,
    turning_approval_off_lets_users_join_directly,
    a_group_message_reaches_every_member,
    only_the_owner_promotes_and_an_admin_mutes_members_but_not_the_owner,
    a_muted_member_cannot_send_to_the_group,
    a_muted_group_lets_only_the_owner_and_admins_speak,
    a_kicked_member_is_told_and_can_no_longer_read_or_post,
    the_owner_cannot_leave_but_can_hand_the_group_over_and_then_leave,
    only_the_owner_dismisses_a_group_and_a_dismissed_group_is_gone,
    a_full_group_takes_nobody_else,
    // Authorization
    private_routes_refuse_a_missing_forged_or_backend_token,
    a_stranger_can_neither_read_nor_write_a_private_conversation,
    a_non_member_can_neither_read_nor_write_a_group,
    only_the_owner_or_an_admin_manages_a_group,
    others_friend_requests_friend_groups_and_friendships_are_not_found,
    the_default_friend_group_cannot_be_deleted,
    another_users_profile_and_message_box_stay_private,
    the_push_api_refuses_a_login_token,
    // Bad input
    bad_input_gets_a_4xx_with_a_json_error_and_stores_nothing,
    a_body_that_is_not_a_json_object_is_refused,
    a_malformed_websocket_command_is_answered_and_the_connection_stays_usable,
    failed_logins_for_one_email_are_rate_limited,
    // Presence, concurrency, devices
    presence_follows_the_first_and_last_connection,
    concurrent_senders_get_gapless_seqs,
    one_device_per_platform_policy_closes_the_older_connection,
    // Search, uploads and the message box
    users_are_found_by_nickname_part_account_number_or_email,
    recommendations_leave_out_me_and_my_friends,
    groups_are_found_by_name_or_number,
    an_upload_is_served_back_with_its_type_and_usable_as_avatar_and_image,
    an_upload_must_match_its_type_and_fit_the_limit,
    system_notices_come_only_from_trusted_backends,
    the_message_box_counts_unread_until_items_are_marked_read,
    the_openapi_document_lists_every_route,
);

const PASSWORD: &str = "correct horse";

// ---------------------------------------------------------------------------------------------
// Accounts and logins

async fn registration_lower_cases_the_email_and_never_returns_the_password(store: Store) {
    let im = ImServer::shared(store).await;
    let (s, v) = im
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"email": "Ann@Example.com", "nickname": "Ann", "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["email"], "ann@example.com");
    assert!(v.get("password_hash").is_none() && v.get("password").is_none());
    assert!(v["account_no"].as_str().is_some_and(|n| n.len() == 9));
}

async fn an_email_can_be_registered_only_once_whatever_its_case(store: Store) {
    let im = ImServer::shared(store).await;
    let ann = im.user("Ann").await;
    let (s, v) = im
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"email": ann.email.to_uppercase(), "nickname": "Ann2", "password": PASSWORD})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{v}"
    );
}

async fn registration_creates_a_default_friend_group(store: Store) {
    let im = ImServer::shared(store).await;
    let ann = im.user("Ann").await;
    let groups = im.ok(200, "GET", "/v1/friend-groups", &ann, None).await;
    assert_eq!(groups["friend_groups"][0]["is_default"], 1, "{groups}");
}

async fn a_wrong_password_gets_the_same_401_as_an_unknown_email(store: Store) {
    let im = ImServer::shared(store).await;
    let ann = im.user("Ann").await;
    let (s, v) = im
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"email": ann.email, "password": "wrong password"})),
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
}

async fn a_profile_update_is_stored_and_read_back(store: Store) {
    let im = ImServer::shared(store).await;
    let ann = im.user("Ann").await;
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
}

async fn a_password_change_needs_the_current_password_and_ends_the_other_logins(store: Store) {
    let im = ImServer::shared(store).await;
    let ann = im.user("Ann").await;
    let other_login = im.login(&ann.email, ann.id).await;
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
        Some(json!({"password": "new password!", "current_password": PASSWORD})),
    )
    .await;
    let (s, _) = im
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"email": ann.email, "password": "new password!"})),
        )
        .await;
    assert_eq!(s, 200, "the new password logs in");
    im.refused(401, "GET", "/v1/me", Some(&other_login), None)
        .await;
    let reason = common::expect_closed(&mut other_ws).await;
    assert!(reason.contains("password changed"), "{reason}");
    im.ok(200, "GET", "/v1/me", &ann, None).await;
}

async fn a_users_email_is_shown_to_friends_only(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = (im.user("Ann").await, im.user("Bob").await);
    let path = format!("/v1/users/{}", ann.id);
    let seen = im.ok(200, "GET", &path, &bob, None).await;
    assert_eq!(seen["nickname"], "Ann");
    assert!(seen.get("email").is_none(), "{seen}");
    im.befriend(&bob, &ann).await;
    let seen = im.ok(200, "GET", &path, &bob, None).await;
    assert_eq!(seen["email"].as_str(), Some(ann.email.as_str()));
}

async fn logout_ends_the_token_and_closes_that_logins_connections(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = (im.user("Ann").await, im.user("Bob").await);
    // The login token opens a websocket; after logout it opens neither /v1 nor a websocket.
    let mut c = im.ws(&ann).await;
    assert_eq!(command(&mut c, json!({"cmd": "ping"})).await["code"], 0);
    im.ok(200, "DELETE", "/v1/sessions/current", &ann, None)
        .await;
    assert_eq!(
        im.refused(401, "GET", "/v1/me", Some(&ann), None).await,
        "unauthenticated"
    );
    let reason = common::expect_closed(&mut c).await;
    assert!(reason.contains("logged out"), "{reason}");
    assert!(
        im.try_ws(&ann).await.is_err(),
        "a logged-out token must not open a websocket"
    );
    // Another user's login is unaffected.
    im.ok(200, "GET", "/v1/me", &bob, None).await;
}

// ---------------------------------------------------------------------------------------------
// Friends

async fn a_friend_request_reaches_the_addressee_live_and_both_request_lists(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = (im.user("Ann").await, im.user("Bob").await);
    let mut bob_ws = im.ws(&bob).await;
    let req = im
        .ok(
            201,
            "POST",
            "/v1/friend-requests",
            &ann,
            Some(json!({"to_user_id": bob.id, "note": "it's Ann"})),
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
}

async fn a_friend_request_accepted_makes_both_users_friends(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = (im.user("Ann").await, im.user("Bob").await);
    let mut ann_ws = im.ws(&ann).await;
    let _bob_ws = im.ws(&bob).await;
    // Ann files Bob under a friend group of her own.
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
            Some(json!({"to_user_id": bob.id, "friend_group_id": close["id"]})),
        )
        .await;
    let accept = format!("/v1/friend-requests/{}/accept", req["id"]);
    im.ok(200, "POST", &accept, &bob, None).await;
    let result = next_event(&mut ann_ws, "notification").await;
    assert_eq!(
        (
            result["kind"].as_str(),
            result["payload"]["status"].as_str()
        ),
        (Some("friend_request_result"), Some("accepted"))
    );
    next_event(&mut ann_ws, "friend").await;
    im.refused(409, "POST", &accept, Some(&bob), None).await;
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
}

async fn users_who_are_not_friends_cannot_chat_privately(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = (im.user("Ann").await, im.user("Bob").await);
    im.refused(
        403,
        "POST",
        &format!("/v1/conversations/{}/messages", cid(&ann, &bob)),
        Some(&ann),
        Some(json!({"client_msg_id": "x", "content": "hi"})),
    )
    .await;
}

async fn a_remark_is_kept_and_a_deleted_friend_group_moves_its_friends_to_the_default(
    store: Store,
) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = (im.user("Ann").await, im.user("Bob").await);
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
            Some(json!({"to_user_id": bob.id, "friend_group_id": close["id"]})),
        )
        .await;
    im.ok(
        200,
        "POST",
        &format!("/v1/friend-requests/{}/accept", req["id"]),
        &bob,
        None,
    )
    .await;
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
}

async fn deleting_a_friend_removes_both_sides_but_keeps_the_history(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let c = cid(&ann, &bob);
    im.send(&ann, &c, "before", "hello").await;
    let mut bob_ws = im.ws(&bob).await;
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
        &format!("/v1/conversations/{c}/messages"),
        Some(&bob),
        Some(json!({"client_msg_id": "late", "content": "hi"})),
    )
    .await;
    // The history stays readable to both.
    for u in [&ann, &bob] {
        assert_eq!(seqs(&im.history(u, &c, 0).await), vec![1]);
    }
}

// ---------------------------------------------------------------------------------------------
// Private chat and sync

async fn private_messages_arrive_live_in_order_on_both_sides(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let c = cid(&ann, &bob);
    let mut bob_ws = im.ws(&bob).await;
    let mut ann_ws = im.ws(&ann).await;
    for i in 1..=3 {
        im.send(&ann, &c, &format!("live-{i}"), &format!("hello {i}"))
            .await;
    }
    for i in 1..=3 {
        let m = next_event(&mut bob_ws, "message").await;
        assert_eq!(
            (m["seq"].as_i64(), m["content"].as_str()),
            (Some(i), Some(format!("hello {i}").as_str()))
        );
        assert_eq!(
            next_event(&mut ann_ws, "message").await["seq"].as_i64(),
            Some(i),
            "the sender's own connection hears it too"
        );
    }
}

async fn a_send_over_op_4_is_answered_with_the_stored_message_even_when_resent(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let c = cid(&ann, &bob);
    im.send(&ann, &c, "first", "over http").await;
    let mut bob_ws = im.ws(&bob).await;
    let mut ann_ws = im.ws(&ann).await;
    let send =
        json!({"cmd": "send", "conversation_id": c, "client_msg_id": "ws-1", "content": "from ws"});
    let reply = command(&mut bob_ws, send.clone()).await;
    assert_eq!(
        (reply["code"].as_i64(), reply["data"]["seq"].as_i64()),
        (Some(0), Some(2)),
        "{reply}"
    );
    assert_eq!(
        next_event(&mut ann_ws, "message").await["content"],
        "from ws"
    );
    let again = command(&mut bob_ws, send).await;
    assert_eq!(again["data"]["id"], reply["data"]["id"]);
    no_event(&mut ann_ws, "message", Duration::from_millis(300)).await;
}

async fn a_resend_over_http_returns_the_stored_message_with_200(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let c = cid(&ann, &bob);
    let first = im.send(&ann, &c, "once", "only once").await;
    let (s, dup) = im
        .call(
            "POST",
            &format!("/v1/conversations/{c}/messages"),
            Some(&ann.token),
            Some(json!({"client_msg_id": "once", "content": "only once"})),
        )
        .await;
    assert_eq!(
        (s, &dup["id"]),
        (200, &first["id"]),
        "a resend returns the stored message: {dup}"
    );
    assert_eq!(im.history(&bob, &c, 0).await["last_seq"], 1, "no seq used");
}

async fn an_offline_device_syncs_exactly_what_it_missed_in_order(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let c = cid(&ann, &bob);
    for i in 1..=3 {
        im.send(&ann, &c, &format!("seen-{i}"), "seen").await;
    }
    // Bob's own message marks everything before it read.
    im.send(&bob, &c, "mine", "from Bob").await;
    let last_seen = 4;
    // Bob is offline; Ann sends five more, one of them twice.
    let mut sent = Vec::new();
    for i in 1..=5 {
        let m = im
            .send(
                &ann,
                &c,
                &format!("offline-{i}"),
                &format!("while away {i}"),
            )
            .await;
        sent.push(m["id"].as_i64().expect("id"));
    }
    let (s, _) = im
        .call(
            "POST",
            &format!("/v1/conversations/{c}/messages"),
            Some(&ann.token),
            Some(json!({"client_msg_id": "offline-3", "content": "while away 3"})),
        )
        .await;
    assert_eq!(s, 200);
    // Bob reconnects: the list shows the unread count; syncing from his last seq gives exactly what he
    // missed, once each, in order.
    let _bob_ws = im.ws(&bob).await;
    let conv = im.conversation(&bob, &c).await;
    assert_eq!(conv["last_seq"].as_i64(), Some(9), "{conv}");
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
                &format!("/v1/conversations/{c}/messages?after_seq={after}&limit=2"),
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
}

async fn history_pages_backwards_over_http_and_op_4(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let c = cid(&ann, &bob);
    for i in 1..=9 {
        im.send(&ann, &c, &format!("m{i}"), &format!("message {i}"))
            .await;
    }
    let newest = im
        .ok(
            200,
            "GET",
            &format!("/v1/conversations/{c}/messages?limit=4"),
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
            &format!("/v1/conversations/{c}/messages?before_seq=6&limit=10"),
            &bob,
            None,
        )
        .await;
    assert_eq!(
        (seqs(&older), older["has_more"].as_bool()),
        (vec![1, 2, 3, 4, 5], Some(false))
    );
    let mut bob_ws = im.ws(&bob).await;
    let h = command(
        &mut bob_ws,
        json!({"cmd": "history", "conversation_id": c, "after_seq": 7}),
    )
    .await;
    assert_eq!(seqs(&h["data"]), vec![8, 9]);
}

async fn a_read_sends_a_receipt_to_the_peer_and_never_moves_back(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let c = cid(&ann, &bob);
    for i in 1..=3 {
        im.send(&ann, &c, &format!("m{i}"), "unread").await;
    }
    let mut ann_ws = im.ws(&ann).await;
    let read = im
        .ok(
            200,
            "POST",
            &format!("/v1/conversations/{c}/read"),
            &bob,
            Some(json!({"seq": 3})),
        )
        .await;
    assert_eq!(
        (read["read_seq"].as_i64(), read["unread"].as_i64()),
        (Some(3), Some(0))
    );
    let receipt = next_event(&mut ann_ws, "read").await;
    assert_eq!(
        (receipt["user_id"].as_i64(), receipt["seq"].as_i64()),
        (Some(bob.id), Some(3))
    );
    assert_eq!(im.conversation(&bob, &c).await["unread"], 0);
    // Reading backwards never lowers the read mark.
    let read = im
        .ok(
            200,
            "POST",
            &format!("/v1/conversations/{c}/read"),
            &bob,
            Some(json!({"seq": 1})),
        )
        .await;
    assert_eq!(read["read_seq"].as_i64(), Some(3));
}

// ---------------------------------------------------------------------------------------------
// Groups

/// A group needing approval, owned by `owner`, with a message from before anyone joined; its id.
async fn approval_group(im: &ImServer, owner: &TestUser) -> i64 {
    let g = im
        .ok(201, "POST", "/v1/groups", owner, Some(json!({"name": "Climbers", "description": "weekends", "max_members": 10, "need_approval": true})))
        .await;
    let gid = g["id"].as_i64().expect("group id");
    im.send(owner, &format!("g-{gid}"), "before", "before anyone joined")
        .await;
    gid
}

/// `user` asks to join `gid` (which needs approval); the request id.
async fn ask_to_join(im: &ImServer, gid: i64, user: &TestUser) -> i64 {
    let (s, pending) = im
        .call(
            "POST",
            &format!("/v1/groups/{gid}/join"),
            Some(&user.token),
            Some(json!({"note": "let me in"})),
        )
        .await;
    assert_eq!(
        (s, pending["status"].as_str()),
        (202, Some("pending")),
        "{pending}"
    );
    pending["request"]["id"].as_i64().expect("request id")
}

/// Ann owns a group that Bob and Cat joined; Bob is an admin when `bob_admin`. Returns them and the id.
async fn ann_bob_and_cat_in_a_group(
    im: &ImServer,
    bob_admin: bool,
) -> (TestUser, TestUser, TestUser, i64) {
    let (ann, bob, cat) = (
        im.user("Ann").await,
        im.user("Bob").await,
        im.user("Cat").await,
    );
    let gid = im.group(&ann, "Climbers", &[&bob, &cat]).await;
    if bob_admin {
        im.ok(
            200,
            "PATCH",
            &format!("/v1/groups/{gid}/members/{}", bob.id),
            &ann,
            Some(json!({"role": "admin"})),
        )
        .await;
    }
    (ann, bob, cat, gid)
}

async fn creating_a_group_makes_the_creator_its_owner(store: Store) {
    let im = ImServer::shared(store).await;
    let ann = im.user("Ann").await;
    let g = im
        .ok(201, "POST", "/v1/groups", &ann, Some(json!({"name": "Climbers", "description": "weekends", "max_members": 10, "need_approval": true})))
        .await;
    let cid = format!("g-{}", g["id"]);
    assert_eq!(
        (
            g["my_role"].as_str(),
            g["member_count"].as_i64(),
            g["conversation_id"].as_str()
        ),
        (Some("owner"), Some(1), Some(cid.as_str()))
    );
}

async fn a_join_request_waits_for_an_owner_or_admin_to_accept_it(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob, cat) = (
        im.user("Ann").await,
        im.user("Bob").await,
        im.user("Cat").await,
    );
    let gid = approval_group(&im, &ann).await;
    let mut ann_ws = im.ws(&ann).await;
    let mut bob_ws = im.ws(&bob).await;
    let rid = ask_to_join(&im, gid, &bob).await;
    assert_eq!(
        next_event(&mut ann_ws, "notification").await["kind"],
        "group_join_request"
    );
    // One pending request per user; a non-member decides nothing and sees no requests.
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
}

async fn a_refused_join_request_is_reported_to_the_requester(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, cat) = (im.user("Ann").await, im.user("Cat").await);
    let gid = approval_group(&im, &ann).await;
    let mut cat_ws = im.ws(&cat).await;
    let rid = ask_to_join(&im, gid, &cat).await;
    im.ok(
        200,
        "POST",
        &format!("/v1/groups/{gid}/join-requests/{rid}/refuse"),
        &ann,
        None,
    )
    .await;
    assert_eq!(
        next_event(&mut cat_ws, "notification").await["payload"]["status"],
        "refused"
    );
}

async fn a_new_member_does_not_see_what_was_said_before_joining(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = (im.user("Ann").await, im.user("Bob").await);
    let gid = approval_group(&im, &ann).await;
    let cid = format!("g-{gid}");
    let rid = ask_to_join(&im, gid, &bob).await;
    im.ok(
        200,
        "POST",
        &format!("/v1/groups/{gid}/join-requests/{rid}/accept"),
        &ann,
        None,
    )
    .await;
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
    let group_conv = im.conversation(&bob, &cid).await;
    assert!(group_conv["last_message"].is_null(), "{group_conv}");
    assert_eq!(group_conv["unread"], 0, "{group_conv}");
}

async fn turning_approval_off_lets_users_join_directly(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob, cat) = (
        im.user("Ann").await,
        im.user("Bob").await,
        im.user("Cat").await,
    );
    let gid = approval_group(&im, &ann).await;
    let rid = ask_to_join(&im, gid, &bob).await;
    im.ok(
        200,
        "POST",
        &format!("/v1/groups/{gid}/join-requests/{rid}/accept"),
        &ann,
        None,
    )
    .await;
    let mut ann_ws = im.ws(&ann).await;
    let _bob_ws = im.ws(&bob).await;
    let _cat_ws = im.ws(&cat).await;
    // A member may not change the setting; the owner may.
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
    assert_eq!(next_event(&mut ann_ws, "group").await["change"], "updated");
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
            .all(|m| m["online"] == true),
        "{members}"
    );
}

async fn a_group_message_reaches_every_member(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob, cat, gid) = ann_bob_and_cat_in_a_group(&im, false).await;
    let mut ann_ws = im.ws(&ann).await;
    let mut bob_ws = im.ws(&bob).await;
    let mut cat_ws = im.ws(&cat).await;
    im.send(&cat, &format!("g-{gid}"), "c1", "hi all").await;
    for ws in [&mut ann_ws, &mut bob_ws, &mut cat_ws] {
        assert_eq!(next_event(ws, "message").await["content"], "hi all");
    }
}

async fn only_the_owner_promotes_and_an_admin_mutes_members_but_not_the_owner(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob, cat, gid) = ann_bob_and_cat_in_a_group(&im, false).await;
    let member = |u: &TestUser| format!("/v1/groups/{gid}/members/{}", u.id);
    im.refused(
        403,
        "PATCH",
        &member(&cat),
        Some(&bob),
        Some(json!({"role": "admin"})),
    )
    .await;
    im.ok(
        200,
        "PATCH",
        &member(&bob),
        &ann,
        Some(json!({"role": "admin"})),
    )
    .await;
    im.refused(
        403,
        "PATCH",
        &member(&ann),
        Some(&bob),
        Some(json!({"muted_until": 4102444800000i64})),
    )
    .await;
    im.ok(
        200,
        "PATCH",
        &member(&cat),
        &bob,
        Some(json!({"muted_until": 4102444800000i64})),
    )
    .await;
}

async fn a_muted_member_cannot_send_to_the_group(store: Store) {
    let im = ImServer::shared(store).await;
    let (_ann, bob, cat, gid) = ann_bob_and_cat_in_a_group(&im, true).await;
    let cid = format!("g-{gid}");
    let cat_member = format!("/v1/groups/{gid}/members/{}", cat.id);
    im.ok(
        200,
        "PATCH",
        &cat_member,
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
        &cat_member,
        &bob,
        Some(json!({"muted_until": 0})),
    )
    .await;
    im.send(&cat, &cid, "c2", "unmuted").await;
}

async fn a_muted_group_lets_only_the_owner_and_admins_speak(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob, cat, gid) = ann_bob_and_cat_in_a_group(&im, true).await;
    let cid = format!("g-{gid}");
    let group = format!("/v1/groups/{gid}");
    let mute = |on: bool| im.ok(200, "PATCH", &group, &ann, Some(json!({"all_muted": on})));
    mute(true).await;
    im.refused(
        403,
        "POST",
        &format!("/v1/conversations/{cid}/messages"),
        Some(&cat),
        Some(json!({"client_msg_id": "c3", "content": "muted"})),
    )
    .await;
    im.send(&bob, &cid, "b1", "admins may speak").await;
    im.send(&ann, &cid, "a1", "so may the owner").await;
    mute(false).await;
    im.send(&cat, &cid, "c4", "members again").await;
}

async fn a_kicked_member_is_told_and_can_no_longer_read_or_post(store: Store) {
    let im = ImServer::shared(store).await;
    let (_ann, bob, cat, gid) = ann_bob_and_cat_in_a_group(&im, true).await;
    let cid = format!("g-{gid}");
    let mut cat_ws = im.ws(&cat).await;
    // A member cannot kick an admin; an admin kicks a member.
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
}

async fn the_owner_cannot_leave_but_can_hand_the_group_over_and_then_leave(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob, _cat, gid) = ann_bob_and_cat_in_a_group(&im, true).await;
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
}

async fn only_the_owner_dismisses_a_group_and_a_dismissed_group_is_gone(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob, _cat, gid) = ann_bob_and_cat_in_a_group(&im, true).await;
    let cid = format!("g-{gid}");
    // An admin may not dismiss, and neither may a former owner who left.
    im.refused(
        403,
        "DELETE",
        &format!("/v1/groups/{gid}"),
        Some(&bob),
        None,
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

async fn a_full_group_takes_nobody_else(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob, third) = (
        im.user("Ann").await,
        im.user("Bob").await,
        im.user("Third").await,
    );
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
    im.refused(
        409,
        "POST",
        &format!("/v1/groups/{}/join", g["id"]),
        Some(&third),
        None,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Authorization

async fn private_routes_refuse_a_missing_forged_or_backend_token(store: Store) {
    let im = ImServer::shared(store).await;
    let ann = im.user("Ann").await;
    let forged = TestUser {
        token: format!("{}x", ann.token),
        ..ann.clone()
    };
    let backend = TestUser {
        token: imcloud::client::sign_token(common::SECRET, ann.id, 600).expect("sign"),
        ..ann.clone()
    };
    for (method, path) in [
        ("GET", "/v1/me"),
        ("GET", "/v1/friends"),
        ("GET", "/v1/conversations"),
        ("POST", "/v1/groups"),
    ] {
        im.refused(401, method, path, None, Some(json!({}))).await;
        im.refused(401, method, path, Some(&forged), Some(json!({})))
            .await;
        im.refused(401, method, path, Some(&backend), Some(json!({})))
            .await;
    }
}

async fn a_stranger_can_neither_read_nor_write_a_private_conversation(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let eve = im.user("Eve").await;
    let c = cid(&ann, &bob);
    im.send(&ann, &c, "secret", "just for Bob").await;
    im.refused(
        404,
        "GET",
        &format!("/v1/conversations/{c}/messages"),
        Some(&eve),
        None,
    )
    .await;
    im.refused(
        404,
        "POST",
        &format!("/v1/conversations/{c}/messages"),
        Some(&eve),
        Some(json!({"client_msg_id": "e", "content": "x"})),
    )
    .await;
    im.refused(
        404,
        "POST",
        &format!("/v1/conversations/{c}/read"),
        Some(&eve),
        Some(json!({"seq": 1})),
    )
    .await;
    let eve_ws = &mut im.ws(&eve).await;
    let r = command(eve_ws, json!({"cmd": "history", "conversation_id": c})).await;
    assert_eq!(r["code"], -404, "{r}");
    assert!(r.get("data").is_none());
}

async fn a_non_member_can_neither_read_nor_write_a_group(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, eve) = (im.user("Ann").await, im.user("Eve").await);
    let gid = im.group(&ann, "Private", &[]).await;
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
}

async fn only_the_owner_or_an_admin_manages_a_group(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, eve) = (im.user("Ann").await, im.user("Eve").await);
    let gid = im.group(&ann, "Private", &[]).await;
    let refusals: [(&str, String, Option<Value>); 5] = [
        (
            "PATCH",
            format!("/v1/groups/{gid}"),
            Some(json!({"name": "Mine"})),
        ),
        ("DELETE", format!("/v1/groups/{gid}"), None),
        (
            "DELETE",
            format!("/v1/groups/{gid}/members/{}", ann.id),
            None,
        ),
        (
            "PATCH",
            format!("/v1/groups/{gid}/members/{}", ann.id),
            Some(json!({"role": "admin"})),
        ),
        (
            "POST",
            format!("/v1/groups/{gid}/transfer"),
            Some(json!({"user_id": eve.id})),
        ),
    ];
    for (method, path, body) in refusals {
        im.refused(403, method, &path, Some(&eve), body).await;
    }
}

async fn others_friend_requests_friend_groups_and_friendships_are_not_found(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let eve = im.user("Eve").await;
    let r = im
        .ok(
            201,
            "POST",
            "/v1/friend-requests",
            &eve,
            Some(json!({"to_user_id": bob.id})),
        )
        .await;
    // Only the addressee accepts: a third user and the sender get 404.
    for u in [&ann, &eve] {
        im.refused(
            404,
            "POST",
            &format!("/v1/friend-requests/{}/accept", r["id"]),
            Some(u),
            None,
        )
        .await;
    }
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
}

async fn the_default_friend_group_cannot_be_deleted(store: Store) {
    let im = ImServer::shared(store).await;
    let ann = im.user("Ann").await;
    let groups = im.ok(200, "GET", "/v1/friend-groups", &ann, None).await;
    let default = groups["friend_groups"][0]["id"].as_i64().expect("id");
    im.refused(
        409,
        "DELETE",
        &format!("/v1/friend-groups/{default}"),
        Some(&ann),
        None,
    )
    .await;
}

async fn another_users_profile_and_message_box_stay_private(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, eve) = (im.user("Ann").await, im.user("Eve").await);
    // Ann has an item in her box; Eve's box is hers alone, and empty.
    im.ok(
        201,
        "POST",
        "/v1/friend-requests",
        &eve,
        Some(json!({"to_user_id": ann.id})),
    )
    .await;
    let seen = im
        .ok(200, "GET", &format!("/v1/users/{}", ann.id), &eve, None)
        .await;
    assert!(
        seen.get("email").is_none() && seen.get("password_hash").is_none(),
        "{seen}"
    );
    assert_eq!(
        im.ok(200, "GET", "/v1/notifications", &eve, None).await["items"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
}

async fn the_push_api_refuses_a_login_token(store: Store) {
    let im = ImServer::shared(store).await;
    let ann = im.user("Ann").await;
    let (s, _) = im
        .raw(
            "POST",
            "/goim/push/mids?operation=1000&mids=1",
            Some(&ann.token),
            "x",
        )
        .await;
    assert_eq!(s, 401);
}

// ---------------------------------------------------------------------------------------------
// Bad input

async fn bad_input_gets_a_4xx_with_a_json_error_and_stores_nothing(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let cid = cid(&ann, &bob);
    let long = "x".repeat(6000);
    let cases: Vec<(u16, &str, String, Option<Value>)> = vec![
        (
            400,
            "POST",
            "/v1/users".into(),
            Some(json!({"email": "not-an-email", "nickname": "X", "password": PASSWORD})),
        ),
        (
            400,
            "POST",
            "/v1/users".into(),
            Some(json!({"email": "x@example.com", "nickname": "", "password": PASSWORD})),
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
                json!({"email": "x@example.com", "nickname": "X", "password": PASSWORD, "admin": true}),
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
            Some(json!({"email": "a\u{0}@example.com", "password": PASSWORD})),
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
    // Nothing was stored by the refused sends.
    assert_eq!(im.history(&ann, &cid, 0).await["last_seq"], 0);
}

async fn a_body_that_is_not_a_json_object_is_refused(store: Store) {
    let im = ImServer::shared(store).await;
    let ann = im.user("Ann").await;
    for body in ["{not json", "[1,2]", "\"text\""] {
        let (s, v) = im
            .raw("POST", "/v1/friend-groups", Some(&ann.token), body)
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some("invalid_argument")),
            "{body}: {v}"
        );
    }
}

async fn a_malformed_websocket_command_is_answered_and_the_connection_stays_usable(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let mut ws = im.ws(&ann).await;
    for bad in [
        json!({"cmd": "launch"}),
        json!({"nocmd": 1}),
        json!({"cmd": "send", "conversation_id": "zz"}),
        json!({"cmd": "send", "conversation_id": cid(&ann, &bob)}),
    ] {
        let r = command(&mut ws, bad.clone()).await;
        assert_eq!(r["code"], -400, "{bad}: {r}");
    }
    assert_eq!(command(&mut ws, json!({"cmd": "ping"})).await["code"], 0);
    assert_eq!(im.history(&ann, &cid(&ann, &bob), 0).await["last_seq"], 0);
}

async fn failed_logins_for_one_email_are_rate_limited(store: Store) {
    let im = ImServer::shared(store).await;
    let ann = im.user("Ann").await;
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

// ---------------------------------------------------------------------------------------------
// Presence, concurrency, devices

async fn presence_follows_the_first_and_last_connection(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let eve = im.user("Eve").await;
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
    let im = std::sync::Arc::new(ImServer::shared(store).await);
    let owner = im.user("Owner").await;
    let gid = im.group(&owner, "Busy", &[]).await;
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
                let m = im
                    .send(&u, &cid, &format!("{n}-{i}"), &format!("{n}/{i}"))
                    .await;
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

async fn one_device_per_platform_policy_closes_the_older_connection(store: Store) {
    let im = ImServer::start_with(store, &[("IMCLOUD_IM_DEVICE_POLICY", "replace")]).await;
    let (ann, bob) = im.friends().await;
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
    im.send(&bob, &cid(&ann, &bob), "after", "still here?")
        .await;
    assert_eq!(
        next_event(&mut new_web, "message").await["content"],
        "still here?"
    );
    assert_eq!(
        next_event(&mut android, "message").await["content"],
        "still here?"
    );
}

// ---------------------------------------------------------------------------------------------
// Search, uploads and the message box

async fn users_are_found_by_nickname_part_account_number_or_email(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob, cat) = (
        im.user("Ann").await,
        im.user("Bobby").await,
        im.user("Cat").await,
    );
    im.befriend(&ann, &bob).await;
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
}

async fn recommendations_leave_out_me_and_my_friends(store: Store) {
    // Its own server: recommendations are drawn from every user.
    let im = ImServer::start(store).await;
    let (ann, bob) = im.friends().await;
    let cat = im.user("Cat").await;
    let rec = im
        .ok(200, "GET", "/v1/recommendations/users", &ann, None)
        .await;
    let rec: Vec<i64> = rec["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(rec, vec![cat.id], "not Ann, not her friend Bob {}", bob.id);
}

async fn groups_are_found_by_name_or_number(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, cat) = (im.user("Ann").await, im.user("Cat").await);
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
}

/// Uploads `body` as `content_type` for `user`.
async fn upload(
    im: &ImServer,
    user: &TestUser,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/uploads", im.base()))
        .bearer_auth(&user.token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("upload")
}

async fn an_upload_is_served_back_with_its_type_and_usable_as_avatar_and_image(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    let r = upload(&im, &ann, "image/png", png.clone()).await;
    assert_eq!(r.status().as_u16(), 201);
    let u: Value = r.json().await.expect("json");
    let url = u["url"].as_str().expect("url").to_string();
    let got = reqwest::get(format!("{}{url}", im.base()))
        .await
        .expect("download");
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(got.bytes().await.expect("bytes").to_vec(), png);
    let (s, _) = im.call("POST", "/v1/uploads", None, None).await;
    assert_eq!(s, 401, "uploading needs a login");
    // The avatar may point at the upload; an image message too.
    im.ok(200, "PATCH", "/v1/me", &ann, Some(json!({"avatar": url})))
        .await;
    let m = im
        .ok(
            201,
            "POST",
            &format!("/v1/conversations/{}/messages", cid(&ann, &bob)),
            &ann,
            Some(json!({"client_msg_id": "img", "type": "image", "content": url})),
        )
        .await;
    assert_eq!(m["type"], "image");
}

async fn an_upload_must_match_its_type_and_fit_the_limit(store: Store) {
    let im = ImServer::shared(store).await;
    let ann = im.user("Ann").await;
    for (content_type, body) in [
        ("image/png", &b"GIF89a...."[..]),
        ("text/html", b"<script>"),
    ] {
        assert_eq!(
            upload(&im, &ann, content_type, body.to_vec())
                .await
                .status()
                .as_u16(),
            415,
            "{content_type}"
        );
    }
    assert_eq!(
        upload(
            &im,
            &ann,
            "application/octet-stream",
            vec![0u8; 4 * 1024 * 1024 + 10]
        )
        .await
        .status()
        .as_u16(),
        413
    );
    // Just under the limit passes through gRPC both ways.
    let big: Vec<u8> = (0..4 * 1024 * 1024 - 64).map(|i| (i % 251) as u8).collect();
    let r = upload(&im, &ann, "application/octet-stream", big.clone()).await;
    assert_eq!(r.status().as_u16(), 201);
    let big_url = r.json::<Value>().await.expect("json")["url"]
        .as_str()
        .expect("url")
        .to_string();
    let got = reqwest::get(format!("{}{big_url}", im.base()))
        .await
        .expect("download");
    assert_eq!(got.bytes().await.expect("bytes").to_vec(), big);
}

async fn system_notices_come_only_from_trusted_backends(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = (im.user("Ann").await, im.user("Bob").await);
    let (s, v) = im
        .raw(
            "POST",
            "/v1/notices",
            Some(common::API_KEY),
            json!({"user_ids": [ann.id, 999999], "title": "Maintenance", "content": "at noon"})
                .to_string(),
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
}

async fn the_message_box_counts_unread_until_items_are_marked_read(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob, cat) = (
        im.user("Ann").await,
        im.user("Bob").await,
        im.user("Cat").await,
    );
    for from in [&bob, &cat] {
        im.ok(
            201,
            "POST",
            "/v1/friend-requests",
            from,
            Some(json!({"to_user_id": ann.id, "note": "hello"})),
        )
        .await;
    }
    let boxed = im.ok(200, "GET", "/v1/notifications", &ann, None).await;
    assert_eq!(boxed["unread"].as_i64(), Some(2), "{boxed}");
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
    assert_eq!(after["unread"].as_i64(), Some(1));
    let after = im
        .ok(200, "POST", "/v1/notifications/read", &ann, None)
        .await;
    assert_eq!(after["unread"].as_i64(), Some(0));
}

async fn the_openapi_document_lists_every_route(store: Store) {
    let im = ImServer::shared(store).await;
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
