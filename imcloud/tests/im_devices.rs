//! The second-edition IM features over websocket op 4 and across devices: each feature's command sent
//! upstream on a goim connection (op 4, answered by op 5), its live event reaching every connected
//! device of every participant (the actor's other devices included where the event goes to them), and
//! a device that was offline learning of it when it reconnects and syncs (history by seq, the lists).
//! Typing is never stored, so a returning device has nothing to learn of it; search has no event.
//! Blocking, account deletion (which closes the issuing connection too), read receipts and the
//! friends, members and message-box lists are op 4 commands as well, each refused where HTTP refuses.
//! Each test runs on SQLite and on PostgreSQL.

mod common;

use std::time::Duration;

use common::im::{
    ImServer, Store, TestUser, cid, closed, command, command_then_closed, next_event, no_event,
    on_both_stores, seqs,
};
use imcloud::client::GoimClient;
use serde_json::{Value, json};

on_both_stores!(
    an_edit_over_op_4_reaches_every_device_and_a_returning_device_through_sync,
    a_recall_over_op_4_reaches_every_device_and_a_returning_device_through_sync,
    reactions_over_op_4_reach_every_device_and_a_returning_device_through_sync,
    a_group_read_over_op_4_reaches_the_senders_and_the_readers_devices_and_history,
    typing_over_op_4_reaches_every_device_of_the_other_participants_and_is_throttled,
    a_block_over_op_4_reaches_my_other_devices_and_a_returning_device_and_refuses_messages,
    an_account_deletion_over_op_4_closes_every_device_and_friends_learn_live_or_on_reconnect,
    friends_and_members_lists_page_over_op_4_and_follow_live_changes,
    read_receipts_over_op_4_count_and_list_the_readers,
    conversations_and_history_page_over_op_4,
    a_read_on_one_device_reaches_the_others_and_a_returning_device_through_sync,
    message_search_over_op_4_finds_only_what_i_can_read,
);

/// An op 4 command that must succeed; its `data`.
async fn ok(c: &mut GoimClient, cmd: Value) -> Value {
    let r = command(c, cmd.clone()).await;
    assert_eq!(r["code"], 0, "{cmd}: {r}");
    r["data"].clone()
}

/// An op 4 command that must fail with `-status`; the error code.
async fn refused(c: &mut GoimClient, status: i64, cmd: Value) -> String {
    let r = command(c, cmd.clone()).await;
    assert_eq!(r["code"].as_i64(), Some(-status), "{cmd}: {r}");
    r["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code: {r}"))
        .to_string()
}

/// The live `message` event of the message `stored` (the reply that stored it) on `c`; other
/// messages before it are skipped. Its content must be the stored one.
async fn expect_live(c: &mut GoimClient, stored: &Value) -> Value {
    loop {
        let m = next_event(c, "message").await;
        if m["id"] == stored["id"] {
            assert_eq!(m, *stored, "the live event is the stored message");
            return m;
        }
    }
}

/// The user ids of a friends page, under every friend group.
fn friend_ids(page: &Value) -> Vec<i64> {
    page["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["friends"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f["user"]["id"].as_i64())
        .collect()
}

/// The user ids of a members page, in its order.
fn member_ids(page: &Value) -> Vec<i64> {
    page["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["user"]["id"].as_i64())
        .collect()
}

/// What a device that held everything up to `held` learns when it syncs `cid`: the messages after it.
async fn sync(im: &ImServer, user: &TestUser, cid: &str, held: i64) -> Vec<Value> {
    im.history(user, cid, held).await["messages"]
        .as_array()
        .expect("messages")
        .clone()
}

async fn an_edit_over_op_4_reaches_every_device_and_a_returning_device_through_sync(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let c = cid(&ann, &bob);
    im.send(&ann, &c, "e1", "helo").await;
    let mut ann_phone = im.ws(&ann).await;
    let mut ann_laptop = im.ws(&ann).await;
    let mut bob_phone = im.ws(&bob).await;
    let mut bob_laptop = im.ws(&bob).await;
    // Bob's tablet held seq 1 and is offline.
    let edit = ok(
        &mut ann_phone,
        json!({"cmd": "edit", "conversation_id": c, "seq": 1, "content": "hello"}),
    )
    .await;
    assert_eq!(
        (
            edit["type"].as_str(),
            edit["ref_seq"].as_i64(),
            edit["seq"].as_i64()
        ),
        (Some("edit"), Some(1), Some(2)),
        "{edit}"
    );
    for device in [&mut ann_laptop, &mut bob_phone, &mut bob_laptop] {
        assert_eq!(expect_live(device, &edit).await["content"], "hello");
    }
    let tablet = sync(&im, &bob, &c, 1).await;
    assert_eq!(tablet.len(), 1, "{tablet:?}");
    assert_eq!(
        (tablet[0]["type"].as_str(), tablet[0]["ref_seq"].as_i64()),
        (Some("edit"), Some(1))
    );
    let h = im.history(&bob, &c, 0).await;
    assert_eq!(h["messages"][0]["content"], "hello", "{h}");
    assert!(h["messages"][0]["edited_at"].as_i64().is_some(), "{h}");
    // The op 4 edit follows the HTTP rules: only the author, only a text message.
    assert_eq!(
        refused(
            &mut bob_phone,
            403,
            json!({"cmd": "edit", "conversation_id": c, "seq": 1, "content": "x"})
        )
        .await,
        "forbidden"
    );
    assert_eq!(
        refused(
            &mut ann_phone,
            409,
            json!({"cmd": "edit", "conversation_id": c, "seq": 2, "content": "x"})
        )
        .await,
        "conflict"
    );
}

async fn a_recall_over_op_4_reaches_every_device_and_a_returning_device_through_sync(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let carl = im.user("Carl").await;
    let c = cid(&ann, &bob);
    im.send(&ann, &c, "r1", "oops").await;
    let mut ann_phone = im.ws(&ann).await;
    let mut ann_laptop = im.ws(&ann).await;
    let mut bob_phone = im.ws(&bob).await;
    let mut bob_laptop = im.ws(&bob).await;
    assert_eq!(
        refused(
            &mut bob_phone,
            403,
            json!({"cmd": "recall", "conversation_id": c, "seq": 1})
        )
        .await,
        "forbidden"
    );
    let recall = ok(
        &mut ann_phone,
        json!({"cmd": "recall", "conversation_id": c, "seq": 1}),
    )
    .await;
    assert_eq!(
        (recall["type"].as_str(), recall["ref_seq"].as_i64()),
        (Some("recall"), Some(1)),
        "{recall}"
    );
    for device in [&mut ann_laptop, &mut bob_phone, &mut bob_laptop] {
        expect_live(device, &recall).await;
    }
    assert_eq!(
        refused(
            &mut ann_phone,
            409,
            json!({"cmd": "recall", "conversation_id": c, "seq": 1})
        )
        .await,
        "conflict"
    );
    // A device offline since seq 1 learns of the recall, and the history shows it withdrawn.
    let tablet = sync(&im, &bob, &c, 1).await;
    assert_eq!(
        tablet.iter().map(|m| m["type"].clone()).collect::<Vec<_>>(),
        vec![json!("recall")]
    );
    let h = im.history(&bob, &c, 0).await;
    assert_eq!(
        (
            h["messages"][0]["recalled"].as_bool(),
            h["messages"][0]["content"].as_str()
        ),
        (Some(true), Some("")),
        "{h}"
    );
    // In a group, an admin recalls a member's message over op 4; every member's devices hear it.
    let g = im.group(&ann, "team", &[&bob, &carl]).await;
    let gc = format!("g-{g}");
    im.ok(
        200,
        "PATCH",
        &format!("/v1/groups/{g}/members/{}", bob.id),
        &ann,
        Some(json!({"role": "admin"})),
    )
    .await;
    let mut carl_phone = im.ws(&carl).await;
    let spam = im.send(&carl, &gc, "c1", "spam").await;
    let recall = ok(
        &mut bob_laptop,
        json!({"cmd": "recall", "conversation_id": gc, "seq": spam["seq"]}),
    )
    .await;
    assert_eq!(
        (recall["sender_id"].as_i64(), recall["ref_seq"].clone()),
        (Some(bob.id), spam["seq"].clone())
    );
    for device in [
        &mut carl_phone,
        &mut ann_phone,
        &mut ann_laptop,
        &mut bob_phone,
    ] {
        expect_live(device, &recall).await;
    }
}

async fn reactions_over_op_4_reach_every_device_and_a_returning_device_through_sync(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let c = cid(&ann, &bob);
    im.send(&ann, &c, "x1", "lunch?").await;
    let mut ann_phone = im.ws(&ann).await;
    let mut ann_laptop = im.ws(&ann).await;
    let mut bob_phone = im.ws(&bob).await;
    let mut bob_laptop = im.ws(&bob).await;
    let react = json!({"cmd": "react", "conversation_id": c, "seq": 1, "emoji": "👍"});
    let r = ok(&mut bob_phone, react.clone()).await;
    assert_eq!(
        (
            r["type"].as_str(),
            r["content"].as_str(),
            r["ref_seq"].as_i64()
        ),
        (Some("react"), Some("👍"), Some(1))
    );
    for device in [&mut ann_phone, &mut ann_laptop, &mut bob_laptop] {
        expect_live(device, &r).await;
    }
    assert_eq!(refused(&mut bob_laptop, 409, react).await, "conflict");
    // Ann's tablet, offline since seq 1, learns of the reaction and sees it counted.
    let tablet = sync(&im, &ann, &c, 1).await;
    assert_eq!(
        tablet.iter().map(|m| m["type"].clone()).collect::<Vec<_>>(),
        vec![json!("react")]
    );
    let h = im.history(&ann, &c, 0).await;
    let counted = &h["messages"][0]["reactions"][0];
    assert_eq!(
        (
            counted["emoji"].as_str(),
            counted["count"].as_i64(),
            counted["me"].as_bool()
        ),
        (Some("👍"), Some(1), Some(false)),
        "{h}"
    );
    // Unreact over op 4: live everywhere, then the count is gone on sync.
    let unreact = json!({"cmd": "unreact", "conversation_id": c, "seq": 1, "emoji": "👍"});
    let u = ok(&mut bob_laptop, unreact.clone()).await;
    assert_eq!(u["type"], "unreact");
    for device in [&mut ann_phone, &mut ann_laptop, &mut bob_phone] {
        expect_live(device, &u).await;
    }
    assert_eq!(refused(&mut bob_laptop, 404, unreact).await, "not_found");
    let tablet = sync(&im, &ann, &c, 2).await;
    assert_eq!(
        tablet.iter().map(|m| m["type"].clone()).collect::<Vec<_>>(),
        vec![json!("unreact")]
    );
    let h = im.history(&ann, &c, 0).await;
    assert!(
        h["messages"][0]["reactions"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "no reactions left (an empty list is left out): {h}"
    );
    // Reactions do not count as unread.
    assert_eq!(im.conversation(&ann, &c).await["unread"], 0);
}

async fn a_group_read_over_op_4_reaches_the_senders_and_the_readers_devices_and_history(
    store: Store,
) {
    let im = ImServer::shared(store).await;
    let (ann, bob, carl) = (
        im.user("Ann").await,
        im.user("Bob").await,
        im.user("Carl").await,
    );
    let g = im.group(&ann, "team", &[&bob, &carl]).await;
    let gc = format!("g-{g}");
    im.send(&ann, &gc, "g1", "read me").await;
    let mut ann_phone = im.ws(&ann).await;
    let mut ann_laptop = im.ws(&ann).await;
    let mut bob_phone = im.ws(&bob).await;
    let mut bob_laptop = im.ws(&bob).await;
    let mut carl_phone = im.ws(&carl).await;
    let read = ok(
        &mut bob_phone,
        json!({"cmd": "read", "conversation_id": gc, "seq": 1}),
    )
    .await;
    assert_eq!(
        (read["read_seq"].as_i64(), read["unread"].as_i64()),
        (Some(1), Some(0)),
        "{read}"
    );
    // The sender's devices hear the receipt; the reader's other device hears the new unread count.
    for device in [&mut ann_phone, &mut ann_laptop] {
        let receipt = next_event(device, "read").await;
        assert_eq!(
            (
                receipt["user_id"].as_i64(),
                receipt["seq"].as_i64(),
                receipt.get("unread")
            ),
            (Some(bob.id), Some(1), None),
            "{receipt}"
        );
    }
    let mine = next_event(&mut bob_laptop, "read").await;
    assert_eq!(
        (mine["seq"].as_i64(), mine["unread"].as_i64()),
        (Some(1), Some(0)),
        "{mine}"
    );
    // A member whose read count did not change hears nothing.
    no_event(&mut carl_phone, "read", Duration::from_millis(300)).await;
    // A device of the sender that was offline learns the count from history, over op 4 as over HTTP.
    let h = ok(
        &mut carl_phone,
        json!({"cmd": "history", "conversation_id": gc, "after_seq": 0}),
    )
    .await;
    assert_eq!(
        (
            h["messages"][0]["read_by"].as_i64(),
            h["member_count"].as_i64()
        ),
        (Some(1), Some(3)),
        "{h}"
    );
    let readers = im
        .ok(
            200,
            "GET",
            &format!("/v1/conversations/{gc}/messages/1/readers"),
            &ann,
            None,
        )
        .await;
    assert_eq!(readers["readers"], json!([bob.id]), "{readers}");
    // Bob's other device finds the group read in his list.
    let conv = ok(&mut bob_laptop, json!({"cmd": "conversations"})).await;
    let group_conv = conv["conversations"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == gc.as_str()).cloned())
        .expect("the group in Bob's list");
    assert_eq!(
        (
            group_conv["read_seq"].as_i64(),
            group_conv["unread"].as_i64()
        ),
        (Some(1), Some(0)),
        "{group_conv}"
    );
}

async fn typing_over_op_4_reaches_every_device_of_the_other_participants_and_is_throttled(
    store: Store,
) {
    let im = ImServer::start_with(store, &[("IMCLOUD_IM_TYPING_INTERVAL_MS", "60000")]).await;
    let (ann, bob) = im.friends().await;
    let carl = im.user("Carl").await;
    let c = cid(&ann, &bob);
    let mut ann_phone = im.ws(&ann).await;
    let mut ann_laptop = im.ws(&ann).await;
    let mut bob_phone = im.ws(&bob).await;
    let mut bob_laptop = im.ws(&bob).await;
    let typing = json!({"cmd": "typing", "conversation_id": c, "typing": true});
    assert_eq!(ok(&mut ann_phone, typing.clone()).await["sent"], true);
    for device in [&mut bob_phone, &mut bob_laptop] {
        let t = next_event(device, "typing").await;
        assert_eq!(
            (
                t["conversation_id"].as_str(),
                t["user_id"].as_i64(),
                t["typing"].as_bool()
            ),
            (Some(c.as_str()), Some(ann.id), Some(true))
        );
    }
    // Not to the typist's own devices; within the interval nothing is sent.
    no_event(&mut ann_laptop, "typing", Duration::from_millis(300)).await;
    assert_eq!(ok(&mut ann_laptop, typing).await["sent"], false);
    no_event(&mut bob_phone, "typing", Duration::from_millis(300)).await;
    // In a group, every device of every other member.
    let g = im.group(&carl, "team", &[&ann, &bob]).await;
    let gc = format!("g-{g}");
    let mut carl_phone = im.ws(&carl).await;
    assert_eq!(
        ok(
            &mut bob_laptop,
            json!({"cmd": "typing", "conversation_id": gc})
        )
        .await["sent"],
        true
    );
    for device in [&mut carl_phone, &mut ann_phone, &mut ann_laptop] {
        let t = next_event(device, "typing").await;
        assert_eq!(
            (t["conversation_id"].as_str(), t["user_id"].as_i64()),
            (Some(gc.as_str()), Some(bob.id))
        );
    }
    // Never stored: a returning device has nothing to learn.
    assert_eq!(im.history(&bob, &c, 0).await["last_seq"], 0);
    assert_eq!(im.history(&ann, &gc, 0).await["last_seq"], 0);
    // Typing needs the right to post.
    assert_eq!(
        refused(
            &mut carl_phone,
            403,
            json!({"cmd": "typing", "conversation_id": cid(&ann, &carl)})
        )
        .await,
        "forbidden"
    );
}

async fn a_block_over_op_4_reaches_my_other_devices_and_a_returning_device_and_refuses_messages(
    store: Store,
) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let c = cid(&ann, &bob);
    im.send(&bob, &c, "b0", "hi").await;
    let mut ann_phone = im.ws(&ann).await;
    let mut ann_laptop = im.ws(&ann).await;
    let mut bob_phone = im.ws(&bob).await;
    let blocked = ok(&mut ann_phone, json!({"cmd": "block", "user_id": bob.id})).await;
    assert_eq!(blocked, json!({"user_id": bob.id, "blocked": true}));
    // The phone has the reply (`command` skips the frames before it); my other device hears it.
    let b = next_event(&mut ann_laptop, "block").await;
    assert_eq!(
        (b["user_id"].as_i64(), b["blocked"].as_bool()),
        (Some(bob.id), Some(true))
    );
    no_event(&mut bob_phone, "block", Duration::from_millis(300)).await;
    // A device of Ann's that was offline learns of the block from the list, over op 4.
    let mut ann_tablet = im.ws(&ann).await;
    let list = ok(&mut ann_tablet, json!({"cmd": "blocks"})).await;
    assert_eq!(
        list["blocked"][0]["user"]["id"].as_i64(),
        Some(bob.id),
        "{list}"
    );
    // Over op 4, neither side may message, react or type in the private chat.
    for (device, id) in [(&mut bob_phone, "b1"), (&mut ann_phone, "a1")] {
        assert_eq!(
            refused(
                device,
                403,
                json!({"cmd": "send", "conversation_id": c, "client_msg_id": id, "content": "hi"})
            )
            .await,
            "forbidden"
        );
    }
    assert_eq!(
        refused(
            &mut bob_phone,
            403,
            json!({"cmd": "react", "conversation_id": c, "seq": 1, "emoji": "👍"})
        )
        .await,
        "forbidden"
    );
    assert_eq!(
        refused(
            &mut bob_phone,
            403,
            json!({"cmd": "typing", "conversation_id": c})
        )
        .await,
        "forbidden"
    );
    assert_eq!(
        im.history(&ann, &c, 0).await["last_seq"],
        1,
        "nothing stored"
    );
    // The HTTP rules: not myself, not a user who does not exist, and only a block that stands is lifted.
    assert_eq!(
        refused(
            &mut ann_phone,
            400,
            json!({"cmd": "block", "user_id": ann.id})
        )
        .await,
        "invalid_argument"
    );
    assert_eq!(
        refused(
            &mut ann_phone,
            404,
            json!({"cmd": "block", "user_id": i64::MAX})
        )
        .await,
        "not_found"
    );
    assert_eq!(
        refused(
            &mut bob_phone,
            404,
            json!({"cmd": "unblock", "user_id": ann.id})
        )
        .await,
        "not_found"
    );
    assert_eq!(
        refused(&mut ann_phone, 400, json!({"cmd": "block"})).await,
        "invalid_argument"
    );
    // Unblocking from another device reaches all of Ann's, and op 4 sends work again.
    let unblocked = ok(
        &mut ann_laptop,
        json!({"cmd": "unblock", "user_id": bob.id}),
    )
    .await;
    assert_eq!(unblocked, json!({"user_id": bob.id, "blocked": false}));
    for device in [&mut ann_phone, &mut ann_tablet] {
        let b = next_event(device, "block").await;
        assert_eq!(
            (b["user_id"].as_i64(), b["blocked"].as_bool()),
            (Some(bob.id), Some(false))
        );
    }
    ok(
        &mut bob_phone,
        json!({"cmd": "send", "conversation_id": c, "client_msg_id": "b2", "content": "friends again"}),
    )
    .await;
    assert_eq!(
        ok(&mut ann_tablet, json!({"cmd": "blocks"})).await["blocked"],
        json!([])
    );
}

async fn an_account_deletion_over_op_4_closes_every_device_and_friends_learn_live_or_on_reconnect(
    store: Store,
) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let carl = im.user("Carl").await;
    im.befriend(&ann, &carl).await;
    let c = cid(&ann, &bob);
    im.send(&ann, &c, "d1", "bye").await;
    let g = im.group(&ann, "team", &[&bob, &carl]).await;
    let mut ann_phone = im.ws(&ann).await;
    let mut ann_laptop = im.ws(&ann).await;
    let mut bob_phone = im.ws(&bob).await;
    let mut bob_laptop = im.ws(&bob).await;
    // Carl is offline. The password confirms the deletion, as over HTTP; a wrong one changes nothing.
    assert_eq!(
        refused(
            &mut ann_phone,
            403,
            json!({"cmd": "delete_account", "password": "wrong horse"})
        )
        .await,
        "forbidden"
    );
    assert_eq!(
        refused(&mut ann_phone, 400, json!({"cmd": "delete_account"})).await,
        "invalid_argument"
    );
    assert_eq!(
        ok(&mut ann_laptop, json!({"cmd": "ping"})).await["mid"],
        ann.id
    );
    let (reply, reason) = command_then_closed(
        &mut ann_phone,
        json!({"cmd": "delete_account", "password": "correct horse"}),
    )
    .await;
    assert!(reason.contains("account deleted"), "{reason}");
    // The reply comes before the close: the comet waits for the connection's commands to be answered.
    let reply = reply.expect("the op 5 reply before the close");
    assert_eq!(
        (reply["code"].as_i64(), reply["data"]["deleted"].as_i64()),
        (Some(0), Some(ann.id)),
        "{reply}"
    );
    let reason = closed(&mut ann_laptop).await;
    assert!(reason.contains("account deleted"), "{reason}");
    // Her login ended with the account: no device of hers connects again.
    assert!(
        im.try_ws(&ann).await.is_err(),
        "a deleted account connected"
    );
    // The group passed to Bob, the senior member, and Ann left it; Bob's devices hear both, then that
    // she is no longer his friend (the events come in that order).
    for device in [&mut bob_phone, &mut bob_laptop] {
        let e = next_event(device, "group").await;
        assert_eq!(
            (
                e["change"].as_str(),
                e["user_id"].as_i64(),
                e["previous_owner"].as_i64()
            ),
            (Some("owner"), Some(bob.id), Some(ann.id)),
            "{e}"
        );
        let e = next_event(device, "group").await;
        assert_eq!(
            (e["change"].as_str(), e["user_id"].as_i64()),
            (Some("left"), Some(ann.id)),
            "{e}"
        );
        let f = next_event(device, "friend").await;
        assert_eq!(
            (f["user_id"].as_i64(), f["change"].as_str()),
            (Some(ann.id), Some("removed"))
        );
    }
    // Carl reconnects: Ann is gone from his friends, the group is Bob's, and he cannot message her.
    let mut carl_phone = im.ws(&carl).await;
    let friends = ok(&mut carl_phone, json!({"cmd": "friends"})).await;
    assert!(friend_ids(&friends).is_empty(), "{friends}");
    let members = ok(&mut carl_phone, json!({"cmd": "members", "group_id": g})).await;
    assert_eq!(member_ids(&members), vec![bob.id, carl.id], "{members}");
    let grp = im
        .ok(200, "GET", &format!("/v1/groups/{g}"), &carl, None)
        .await;
    assert_eq!(
        (grp["owner_id"].as_i64(), grp["member_count"].as_i64()),
        (Some(bob.id), Some(2)),
        "{grp}"
    );
    assert_eq!(
        refused(
            &mut carl_phone,
            404,
            json!({"cmd": "send", "conversation_id": cid(&ann, &carl), "client_msg_id": "c1", "content": "hi?"})
        )
        .await,
        "not_found"
    );
    // Bob's history keeps her message, from the deleted user.
    let h = ok(
        &mut bob_phone,
        json!({"cmd": "history", "conversation_id": c}),
    )
    .await;
    assert_eq!(h["messages"][0]["sender_id"].as_i64(), Some(ann.id), "{h}");
    let conv = im.conversation(&bob, &c).await;
    assert_eq!(conv["peer"]["deleted"], true, "{conv}");
}

async fn conversations_and_history_page_over_op_4(store: Store) {
    let im = ImServer::shared(store).await;
    let ann = im.user("Ann").await;
    let mut others = Vec::new();
    for i in 0..3 {
        let u = im.user(&format!("U{i}")).await;
        im.befriend(&ann, &u).await;
        im.send(&u, &cid(&ann, &u), "p", "hi").await;
        others.push(u);
    }
    let mut ws = im.ws(&ann).await;
    let p1 = ok(&mut ws, json!({"cmd": "conversations", "limit": 2})).await;
    assert_eq!(
        p1["conversations"].as_array().map(Vec::len),
        Some(2),
        "{p1}"
    );
    let next = p1["next_cursor"].as_str().expect("a next page").to_string();
    let p2 = ok(
        &mut ws,
        json!({"cmd": "conversations", "limit": "2", "cursor": next}),
    )
    .await;
    assert_eq!(
        p2["conversations"].as_array().map(Vec::len),
        Some(1),
        "{p2}"
    );
    assert!(p2["next_cursor"].is_null(), "{p2}");
    let mut seen: Vec<String> = p1["conversations"]
        .as_array()
        .into_iter()
        .chain(p2["conversations"].as_array())
        .flatten()
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect();
    seen.sort();
    let mut all: Vec<String> = others.iter().map(|u| cid(&ann, u)).collect();
    all.sort();
    assert_eq!(seen, all, "every conversation once");
    assert_eq!(
        refused(
            &mut ws,
            400,
            json!({"cmd": "conversations", "cursor": "zz"})
        )
        .await,
        "invalid_argument"
    );
    // History pages backwards and forwards over op 4.
    let c = cid(&ann, &others[0]);
    for i in 2..=5 {
        im.send(&ann, &c, &format!("m{i}"), "more").await;
    }
    let newest = ok(
        &mut ws,
        json!({"cmd": "history", "conversation_id": c, "limit": 2}),
    )
    .await;
    assert_eq!(
        (seqs(&newest), newest["has_more"].as_bool()),
        (vec![4, 5], Some(true))
    );
    let older = ok(
        &mut ws,
        json!({"cmd": "history", "conversation_id": c, "before_seq": "4", "limit": 10}),
    )
    .await;
    assert_eq!(
        (seqs(&older), older["has_more"].as_bool()),
        (vec![1, 2, 3], Some(false))
    );
    let forward = ok(
        &mut ws,
        json!({"cmd": "history", "conversation_id": c, "after_seq": 1, "limit": 2}),
    )
    .await;
    assert_eq!(
        (seqs(&forward), forward["has_more"].as_bool()),
        (vec![2, 3], Some(true))
    );
    assert_eq!(
        refused(
            &mut ws,
            400,
            json!({"cmd": "history", "conversation_id": c, "limit": 0})
        )
        .await,
        "invalid_argument"
    );
}

async fn a_read_on_one_device_reaches_the_others_and_a_returning_device_through_sync(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let c = cid(&ann, &bob);
    im.send(&ann, &c, "m1", "one").await;
    im.send(&ann, &c, "m2", "two").await;
    let mut ann_phone = im.ws(&ann).await;
    let mut ann_laptop = im.ws(&ann).await;
    let mut bob_phone = im.ws(&bob).await;
    let mut bob_laptop = im.ws(&bob).await;
    let r = ok(
        &mut bob_phone,
        json!({"cmd": "read", "conversation_id": c, "seq": 2}),
    )
    .await;
    assert_eq!(
        (r["read_seq"].as_i64(), r["unread"].as_i64()),
        (Some(2), Some(0)),
        "{r}"
    );
    let e = next_event(&mut bob_laptop, "read").await;
    assert_eq!(
        (
            e["user_id"].as_i64(),
            e["seq"].as_i64(),
            e["unread"].as_i64()
        ),
        (Some(bob.id), Some(2), Some(0)),
        "{e}"
    );
    // The peer's devices hear the receipt, without Bob's unread count.
    for device in [&mut ann_phone, &mut ann_laptop] {
        let receipt = next_event(device, "read").await;
        assert_eq!(
            (
                receipt["user_id"].as_i64(),
                receipt["seq"].as_i64(),
                receipt.get("unread")
            ),
            (Some(bob.id), Some(2), None),
            "{receipt}"
        );
    }
    // Bob's tablet, offline during the read, reconnects and lists the conversation as read.
    let mut bob_tablet = im.ws(&bob).await;
    let list = ok(&mut bob_tablet, json!({"cmd": "conversations"})).await;
    assert_eq!(
        (
            list["conversations"][0]["read_seq"].as_i64(),
            list["conversations"][0]["unread"].as_i64()
        ),
        (Some(2), Some(0)),
        "{list}"
    );
    // The message box too: read on one device, live on another, and in the box on reconnect.
    let carl = im.user("Carl").await;
    im.ok(
        201,
        "POST",
        "/v1/friend-requests",
        &carl,
        Some(json!({"to_user_id": bob.id})),
    )
    .await;
    for device in [&mut bob_phone, &mut bob_laptop, &mut bob_tablet] {
        next_event(device, "notification").await;
    }
    drop(bob_tablet);
    let live = ok(&mut bob_laptop, json!({"cmd": "notifications"})).await;
    assert_eq!(
        (
            live["items"][0]["payload"]["from_user_id"].as_i64(),
            live["items"][0]["read"].as_bool()
        ),
        (Some(carl.id), Some(false)),
        "{live}"
    );
    let too_many: Vec<i64> = (1..=501).collect();
    assert_eq!(
        refused(
            &mut bob_phone,
            400,
            json!({"cmd": "read_notifications", "ids": too_many})
        )
        .await,
        "invalid_argument"
    );
    let marked = ok(&mut bob_phone, json!({"cmd": "read_notifications"})).await;
    assert_eq!(marked["unread"], 0, "{marked}");
    assert_eq!(
        next_event(&mut bob_laptop, "notifications_read").await["unread"],
        0
    );
    let mut bob_tablet = im.ws(&bob).await;
    let boxed = ok(
        &mut bob_tablet,
        json!({"cmd": "notifications", "page_size": 10}),
    )
    .await;
    assert_eq!(
        (
            boxed["unread"].as_i64(),
            boxed["items"][0]["read"].as_bool()
        ),
        (Some(0), Some(true)),
        "{boxed}"
    );
}

async fn message_search_over_op_4_finds_only_what_i_can_read(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob) = im.friends().await;
    let carl = im.user("Carl").await;
    im.befriend(&bob, &carl).await;
    let (ab, bc) = (cid(&ann, &bob), cid(&bob, &carl));
    im.send(&ann, &ab, "s1", "the quarterly report is ready")
        .await;
    im.send(&bob, &bc, "s2", "secret report for Carl").await;
    let mut ann_ws = im.ws(&ann).await;
    let mut bob_ws = im.ws(&bob).await;
    let r = ok(&mut ann_ws, json!({"cmd": "search", "q": "report"})).await;
    let hits = r["hits"].as_array().cloned().unwrap_or_default();
    assert_eq!(hits.len(), 1, "Ann sees only her conversation: {r}");
    assert_eq!(
        hits[0]["message"]["conversation_id"].as_str(),
        Some(ab.as_str())
    );
    let snippet = hits[0]["snippet"].as_str().unwrap_or("");
    let (s, e) = (
        hits[0]["highlights"][0]["start"].as_u64().unwrap_or(0) as usize,
        hits[0]["highlights"][0]["end"].as_u64().unwrap_or(0) as usize,
    );
    let marked: String = snippet.chars().skip(s).take(e - s).collect();
    assert_eq!(marked.to_lowercase(), "report", "{r}");
    // Bob reads both, or one conversation when he names it, a page at a time.
    let all = ok(&mut bob_ws, json!({"cmd": "search", "q": "report"})).await;
    assert_eq!(all["hits"].as_array().map(Vec::len), Some(2), "{all}");
    let one = ok(
        &mut bob_ws,
        json!({"cmd": "search", "q": "report", "conversation_id": bc}),
    )
    .await;
    assert_eq!(one["hits"].as_array().map(Vec::len), Some(1), "{one}");
    let paged = ok(
        &mut bob_ws,
        json!({"cmd": "search", "q": "report", "page": 2, "page_size": "1"}),
    )
    .await;
    assert_eq!(paged["hits"].as_array().map(Vec::len), Some(1), "{paged}");
    // The HTTP rules: a conversation I am not in, and a query without words.
    assert_eq!(
        refused(
            &mut ann_ws,
            404,
            json!({"cmd": "search", "q": "report", "conversation_id": bc})
        )
        .await,
        "not_found"
    );
    assert_eq!(
        refused(&mut ann_ws, 400, json!({"cmd": "search", "q": "\"*"})).await,
        "invalid_argument"
    );
}

async fn friends_and_members_lists_page_over_op_4_and_follow_live_changes(store: Store) {
    let im = ImServer::shared(store).await;
    let ann = im.user("Ann").await;
    let mut others = Vec::new();
    for i in 0..3 {
        let u = im.user(&format!("Friend{i}")).await;
        im.befriend(&ann, &u).await;
        others.push(u);
    }
    let mut ann_phone = im.ws(&ann).await;
    let mut ann_laptop = im.ws(&ann).await;
    // My friends a page at a time (by nickname), every friend once.
    let p1 = ok(&mut ann_phone, json!({"cmd": "friends", "limit": 2})).await;
    assert_eq!(friend_ids(&p1).len(), 2, "{p1}");
    let next = p1["next_cursor"].as_str().expect("a next page").to_string();
    let p2 = ok(
        &mut ann_phone,
        json!({"cmd": "friends", "limit": "2", "cursor": next}),
    )
    .await;
    assert!(p2["next_cursor"].is_null(), "{p2}");
    let mut seen = [friend_ids(&p1), friend_ids(&p2)].concat();
    seen.sort();
    let all: Vec<i64> = others.iter().map(|u| u.id).collect();
    assert_eq!(seen, all, "every friend once");
    for bad in [
        json!({"cmd": "friends", "cursor": "zz"}),
        json!({"cmd": "friends", "limit": 501}),
    ] {
        assert_eq!(refused(&mut ann_phone, 400, bad).await, "invalid_argument");
    }
    // A new friend reaches both of my devices live, and the list over op 4 has them.
    let dave = im.user("Dave").await;
    im.befriend(&dave, &ann).await;
    for device in [&mut ann_phone, &mut ann_laptop] {
        let f = next_event(device, "friend").await;
        assert_eq!(
            (f["user_id"].as_i64(), f["change"].as_str()),
            (Some(dave.id), Some("added")),
            "{f}"
        );
    }
    let list = ok(&mut ann_laptop, json!({"cmd": "friends"})).await;
    assert!(friend_ids(&list).contains(&dave.id), "{list}");
    // A group's members a page at a time: the owner first, then by join time.
    let g = im
        .group(&ann, "team", &[&others[0], &others[1], &others[2]])
        .await;
    let m1 = ok(
        &mut ann_phone,
        json!({"cmd": "members", "group_id": g, "limit": 3}),
    )
    .await;
    assert_eq!(
        member_ids(&m1),
        vec![ann.id, others[0].id, others[1].id],
        "{m1}"
    );
    assert_eq!(m1["members"][0]["role"], "owner", "{m1}");
    let next = m1["next_cursor"].as_str().expect("a next page").to_string();
    let mut member_phone = im.ws(&others[2]).await;
    let m2 = ok(
        &mut member_phone,
        json!({"cmd": "members", "group_id": g.to_string(), "limit": 3, "cursor": next}),
    )
    .await;
    assert_eq!(member_ids(&m2), vec![others[2].id], "{m2}");
    assert!(m2["next_cursor"].is_null(), "{m2}");
    // Dave joins: every member's devices hear it, and the list over op 4 has him last.
    im.ok(200, "POST", &format!("/v1/groups/{g}/join"), &dave, None)
        .await;
    for device in [&mut ann_phone, &mut ann_laptop, &mut member_phone] {
        // Ann's devices heard the others join first.
        let e = loop {
            let e = next_event(device, "group").await;
            if e["user_id"] == dave.id {
                break e;
            }
        };
        assert_eq!(e["change"], "joined", "{e}");
    }
    let m = ok(&mut member_phone, json!({"cmd": "members", "group_id": g})).await;
    assert_eq!(member_ids(&m).last(), Some(&dave.id), "{m}");
    assert_eq!(member_ids(&m).len(), 5, "{m}");
    // The HTTP rules: members only, a group that exists, a valid id.
    let erin = im.user("Erin").await;
    let mut erin_phone = im.ws(&erin).await;
    assert_eq!(
        refused(
            &mut erin_phone,
            403,
            json!({"cmd": "members", "group_id": g})
        )
        .await,
        "forbidden"
    );
    assert_eq!(
        refused(
            &mut erin_phone,
            404,
            json!({"cmd": "members", "group_id": i64::MAX})
        )
        .await,
        "not_found"
    );
    assert_eq!(
        refused(
            &mut erin_phone,
            400,
            json!({"cmd": "members", "group_id": "g-1"})
        )
        .await,
        "invalid_argument"
    );
}

async fn read_receipts_over_op_4_count_and_list_the_readers(store: Store) {
    let im = ImServer::shared(store).await;
    let (ann, bob, carl, dave) = (
        im.user("Ann").await,
        im.user("Bob").await,
        im.user("Carl").await,
        im.user("Dave").await,
    );
    let g = im.group(&ann, "team", &[&bob, &carl, &dave]).await;
    let gc = format!("g-{g}");
    im.send(&ann, &gc, "r1", "one").await;
    im.send(&ann, &gc, "r2", "two").await;
    let mut ann_phone = im.ws(&ann).await;
    let mut ann_laptop = im.ws(&ann).await;
    let mut bob_phone = im.ws(&bob).await;
    let mut carl_phone = im.ws(&carl).await;
    let mut dave_phone = im.ws(&dave).await;
    ok(
        &mut bob_phone,
        json!({"cmd": "read", "conversation_id": gc, "seq": 2}),
    )
    .await;
    ok(
        &mut carl_phone,
        json!({"cmd": "read", "conversation_id": gc, "seq": 1}),
    )
    .await;
    // "Read by N of M" and who, per message; the sender is not counted.
    let readers = |seq: i64| json!({"cmd": "readers", "conversation_id": gc, "seq": seq});
    let r1 = ok(&mut ann_phone, readers(1)).await;
    assert_eq!(
        (r1["read_by"].as_i64(), r1["of"].as_i64(), &r1["readers"]),
        (Some(2), Some(3), &json!([bob.id, carl.id])),
        "{r1}"
    );
    let r2 = ok(&mut dave_phone, readers(2)).await;
    assert_eq!(
        (r2["read_by"].as_i64(), r2["of"].as_i64(), &r2["readers"]),
        (Some(1), Some(3), &json!([bob.id])),
        "{r2}"
    );
    // The readers a page at a time.
    let page = ok(
        &mut ann_phone,
        json!({"cmd": "readers", "conversation_id": gc, "seq": "1", "limit": 1}),
    )
    .await;
    assert_eq!(page["readers"], json!([bob.id]), "{page}");
    let next = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let page = ok(
        &mut ann_phone,
        json!({"cmd": "readers", "conversation_id": gc, "seq": 1, "limit": 1, "cursor": next}),
    )
    .await;
    assert_eq!(
        (&page["readers"], page["read_by"].as_i64()),
        (&json!([carl.id]), Some(2)),
        "{page}"
    );
    assert!(page["next_cursor"].is_null(), "{page}");
    // Everyone's read seq (the sender's own messages count as read).
    let reads = ok(
        &mut carl_phone,
        json!({"cmd": "reads", "conversation_id": gc}),
    )
    .await;
    assert_eq!(
        reads["reads"],
        json!([
            {"user_id": ann.id, "read_seq": 2},
            {"user_id": bob.id, "read_seq": 2},
            {"user_id": carl.id, "read_seq": 1},
            {"user_id": dave.id, "read_seq": 0},
        ]),
        "{reads}"
    );
    // Dave reads on his phone: the sender's devices hear it live, and the count is 3 of 3.
    ok(
        &mut dave_phone,
        json!({"cmd": "read", "conversation_id": gc, "seq": 2}),
    )
    .await;
    for device in [&mut ann_phone, &mut ann_laptop] {
        // Bob's and Carl's receipts came first.
        let receipt = loop {
            let r = next_event(device, "read").await;
            if r["user_id"] == dave.id {
                break r;
            }
        };
        assert_eq!(receipt["seq"], 2, "{receipt}");
    }
    let r1 = ok(&mut ann_laptop, readers(1)).await;
    assert_eq!(
        (r1["read_by"].as_i64(), r1["of"].as_i64()),
        (Some(3), Some(3)),
        "{r1}"
    );
    // In a private chat: the peer, once read.
    let (eve, fay) = im.friends().await;
    let pc = cid(&eve, &fay);
    im.send(&eve, &pc, "p1", "hi").await;
    let mut eve_phone = im.ws(&eve).await;
    let mut fay_phone = im.ws(&fay).await;
    let unread = ok(
        &mut eve_phone,
        json!({"cmd": "readers", "conversation_id": pc, "seq": 1}),
    )
    .await;
    assert_eq!(
        (unread["read_by"].as_i64(), unread["of"].as_i64()),
        (Some(0), Some(1)),
        "{unread}"
    );
    ok(
        &mut fay_phone,
        json!({"cmd": "read", "conversation_id": pc, "seq": 1}),
    )
    .await;
    let read = ok(
        &mut eve_phone,
        json!({"cmd": "readers", "conversation_id": pc, "seq": 1}),
    )
    .await;
    assert_eq!(read["readers"], json!([fay.id]), "{read}");
    // The HTTP rules: a group I am not in, a chat I am not in, a message that does not exist.
    for cmd in [readers(1), json!({"cmd": "reads", "conversation_id": gc})] {
        assert_eq!(refused(&mut eve_phone, 403, cmd).await, "forbidden");
    }
    assert_eq!(
        refused(
            &mut ann_phone,
            404,
            json!({"cmd": "reads", "conversation_id": pc})
        )
        .await,
        "not_found"
    );
    assert_eq!(refused(&mut ann_phone, 404, readers(9)).await, "not_found");
    assert_eq!(
        refused(&mut ann_phone, 400, readers(0)).await,
        "invalid_argument"
    );
}
