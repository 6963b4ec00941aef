//! Pushes through the real binary reach exactly the connections they address, as op 9 batches: keys, mids,
//! room and all; rooms and op filters; the gRPC push API needs the API key.

mod common;

use common::*;
use imcloud::client::GoimClient;
use imcloud_proto::frame::split_raw_batch;
use imcloud_proto::op;

/// Pushes a marker to everyone and checks it is the next thing each client sees (so nothing else came first).
async fn nothing_else_for(s: &Standalone, clients: &mut [&mut GoimClient], marker: &str) {
    let (status, _) = s.push("all", "operation=1999", marker.to_string()).await;
    assert_eq!(status, 200);
    for c in clients.iter_mut() {
        expect_msg(c, 1999, marker.as_bytes()).await;
    }
}

#[tokio::test]
async fn push_keys_reaches_exactly_those_keys() {
    let s = Standalone::start().await;
    let mut a = s.ws(1, "ka", "", &[]).await;
    let mut b = s.tcp(2, "kb", "").await;
    let mut c = s.ws(3, "kc", "", &[]).await;
    let (status, v) = s
        .push("keys", "operation=1000&keys=ka&keys=kb", "hello keys")
        .await;
    assert_eq!(
        (status, v["code"].as_i64(), v["data"]["queued"].as_i64()),
        (200, Some(0), Some(1)),
        "{v}"
    );
    expect_msg(&mut a, 1000, b"hello keys").await;
    expect_msg(&mut b, 1000, b"hello keys").await;
    nothing_else_for(&s, &mut [&mut c], "after-keys").await;

    // Comma-separated lists work too, and binary bodies arrive unchanged.
    let body: Vec<u8> = (0..=255u8).collect();
    let (status, _) = s
        .push("keys", "operation=1003&keys=kc,absent", body.clone())
        .await;
    assert_eq!(status, 200);
    expect_msg(&mut c, 1003, &body).await;
}

#[tokio::test]
async fn push_mids_reaches_every_connection_of_those_users() {
    let s = Standalone::start().await;
    let mut u1a = s.ws(1, "", "", &[]).await;
    let mut u1b = s.tcp(1, "", "").await;
    let mut u2 = s.ws(2, "", "", &[]).await;
    let mut u3 = s.ws(3, "", "", &[]).await;
    let (status, v) = s
        .push("mids", "operation=1001&mids=1,2", "hello mids")
        .await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");
    for c in [&mut u1a, &mut u1b, &mut u2] {
        expect_msg(c, 1001, b"hello mids").await;
    }
    nothing_else_for(&s, &mut [&mut u3], "after-mids").await;
}

#[tokio::test]
async fn push_room_reaches_members_on_both_transports_only() {
    let s = Standalone::start().await;
    let mut ws_member = s.ws(1, "", "live://100", &[]).await;
    let mut tcp_member = s.tcp(2, "", "live://100").await;
    let mut other_room = s.ws(3, "", "live://200", &[]).await;
    let mut no_room = s.ws(4, "", "", &[]).await;
    let (status, v) = s
        .push("room", "operation=1002&type=live&room=100", "hello room")
        .await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");
    expect_msg(&mut ws_member, 1002, b"hello room").await;
    expect_msg(&mut tcp_member, 1002, b"hello room").await;
    nothing_else_for(&s, &mut [&mut other_room, &mut no_room], "after-room").await;
}

#[tokio::test]
async fn room_messages_arrive_complete_in_order_as_op9_batches() {
    let s = Standalone::start().await;
    let mut member = s.ws(1, "", "live://burst", &[]).await;
    const N: usize = 40;
    let pushes = (0..N).map(|i| {
        let s = &s;
        async move {
            s.push(
                "room",
                "operation=1000&type=live&room=burst",
                format!("m{i:02}"),
            )
            .await
        }
    });
    // Pushed one after another so their queue order is known.
    for p in pushes {
        assert_eq!(p.await.0, 200);
    }
    let mut got = Vec::new();
    let mut batches = 0;
    while got.len() < N {
        let outer = tokio::time::timeout(WAIT, member.recv_unsplit())
            .await
            .expect("batch within 10 s")
            .expect("frame");
        assert_eq!(outer.op, op::RAW, "pushes arrive as op 9");
        batches += 1;
        for inner in split_raw_batch(&outer.body, 1 << 20).expect("complete inner frames") {
            assert_eq!(inner.op, 1000);
            got.push(String::from_utf8(inner.body.to_vec()).unwrap());
        }
    }
    let want: Vec<String> = (0..N).map(|i| format!("m{i:02}")).collect();
    assert_eq!(got, want, "every message once, in order");
    assert!(batches <= N);
    println!("{N} room messages arrived in {batches} op 9 frames");
}

#[tokio::test]
async fn push_all_reaches_everyone() {
    let s = Standalone::start().await;
    let mut clients = vec![
        s.ws(1, "", "", &[]).await,
        s.tcp(2, "", "").await,
        s.ws(3, "", "live://x", &[]).await,
    ];
    let (status, v) = s.push("all", "operation=1004&speed=0", "hello all").await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");
    for c in &mut clients {
        expect_msg(c, 1004, b"hello all").await;
    }
    // With a speed limit it still reaches everyone.
    let (status, _) = s.push("all", "operation=1004&speed=1000", "paced").await;
    assert_eq!(status, 200);
    for c in &mut clients {
        expect_msg(c, 1004, b"paced").await;
    }
}

#[tokio::test]
async fn change_room_and_extra_rooms() {
    let s = Standalone::start().await;
    let mut c = s.ws(1, "", "live://a", &[]).await;
    let mut watcher = s.ws(2, "", "", &[]).await;

    // op 12 moves the auth room.
    let seq = c.send(op::CHANGE_ROOM, b"live://b".to_vec()).await.unwrap();
    let f = c.recv_timeout(WAIT).await.unwrap();
    assert_eq!(
        (f.op, f.seq, &f.body[..]),
        (op::CHANGE_ROOM_REPLY, seq, &b"live://b"[..])
    );
    s.push("room", "operation=1000&type=live&room=a", "to a")
        .await;
    s.push("room", "operation=1000&type=live&room=b", "to b")
        .await;
    expect_msg(&mut c, 1000, b"to b").await;

    // op 18 joins extra rooms; op 20 leaves one.
    for room in ["live://c", "live://d"] {
        c.send(op::JOIN_ROOM, room.as_bytes().to_vec())
            .await
            .unwrap();
        let f = c.recv_timeout(WAIT).await.unwrap();
        assert_eq!(f.op, op::JOIN_ROOM_REPLY);
        let v: serde_json::Value = serde_json::from_slice(&f.body).unwrap();
        assert_eq!(v["code"].as_i64(), Some(0), "{v}");
    }
    for room in ["b", "c", "d"] {
        s.push(
            "room",
            &format!("operation=1000&type=live&room={room}"),
            format!("to {room}"),
        )
        .await;
    }
    // Each room keeps its own order; messages to different rooms have no order between them.
    let mut got = Vec::new();
    for _ in 0..3 {
        let f = next_msg(&mut c).await;
        assert_eq!(f.op, 1000);
        got.push(String::from_utf8(f.body.to_vec()).unwrap());
    }
    got.sort();
    assert_eq!(got, vec!["to b", "to c", "to d"]);
    c.send(op::LEAVE_ROOM, b"live://c".to_vec()).await.unwrap();
    let f = c.recv_timeout(WAIT).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&f.body).unwrap();
    assert_eq!(
        (f.op, v["rooms"].clone()),
        (
            op::LEAVE_ROOM_REPLY,
            serde_json::json!(["live://b", "live://d"])
        )
    );
    s.push("room", "operation=1000&type=live&room=c", "to c again")
        .await;
    s.push("room", "operation=1000&type=live&room=d", "to d again")
        .await;
    expect_msg(&mut c, 1000, b"to d again").await;
    nothing_else_for(&s, &mut [&mut c, &mut watcher], "after-rooms").await;

    // An empty room id is refused politely; the connection stays.
    c.send(op::JOIN_ROOM, Vec::new()).await.unwrap();
    let f = c.recv_timeout(WAIT).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&f.body).unwrap();
    assert_eq!(v["code"].as_i64(), Some(-400), "{v}");
}

#[tokio::test]
async fn accepts_and_sub_unsub_filter_ops() {
    let s = Standalone::start().await;
    let mut only_1001 = s.ws(1, "f1", "", &[1001]).await;
    let mut everything = s.ws(2, "f2", "", &[]).await;

    s.push("keys", "operation=1000&keys=f1,f2", "op1000").await;
    s.push("keys", "operation=1001&keys=f1,f2", "op1001").await;
    expect_msg(&mut only_1001, 1001, b"op1001").await;
    expect_msg(&mut everything, 1000, b"op1000").await;
    expect_msg(&mut everything, 1001, b"op1001").await;

    // op 14 adds 1000 to the first; op 16 drops 1001 from the second.
    let seq = only_1001.send(op::SUB, b"1000".to_vec()).await.unwrap();
    let f = only_1001.recv_timeout(WAIT).await.unwrap();
    assert_eq!((f.op, f.seq), (op::SUB_REPLY, seq));
    everything.send(op::UNSUB, b"1001".to_vec()).await.unwrap();
    assert_eq!(
        everything.recv_timeout(WAIT).await.unwrap().op,
        op::UNSUB_REPLY
    );

    s.push("keys", "operation=1001&keys=f1,f2", "second 1001")
        .await;
    s.push("keys", "operation=1000&keys=f1,f2", "second 1000")
        .await;
    expect_msg(&mut only_1001, 1001, b"second 1001").await;
    expect_msg(&mut only_1001, 1000, b"second 1000").await;
    expect_msg(&mut everything, 1000, b"second 1000").await;
    // Room pushes honour the filter as well.
    let mut in_room = s.ws(3, "f3", "live://f", &[1005]).await;
    s.push("room", "operation=1006&type=live&room=f", "filtered out")
        .await;
    s.push("room", "operation=1005&type=live&room=f", "let through")
        .await;
    expect_msg(&mut in_room, 1005, b"let through").await;
}

#[tokio::test]
async fn grpc_push_on_logic_needs_the_api_key() {
    use imcloud_proto::logic::PushKeysReq;
    use imcloud_proto::logic::logic_client::LogicClient;

    let s = Standalone::start().await;
    let mut c = s.ws(1, "grpc", "", &[]).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.logic_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut logic = LogicClient::new(channel);
    let req = || PushKeysReq {
        op: 1000,
        keys: vec!["grpc".into()],
        msg: b"over grpc".to_vec(),
    };

    let err = logic.push_keys(req()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let mut authed = tonic::Request::new(req());
    authed.metadata_mut().insert(
        "authorization",
        format!("Bearer {API_KEY}").parse().unwrap(),
    );
    assert_eq!(
        logic.push_keys(authed).await.unwrap().into_inner().queued,
        1
    );
    expect_msg(&mut c, 1000, b"over grpc").await;
}

/// Pushes that queue up for one comet go out together in `PushMsgs` calls: every one arrives once, and
/// each sender's pushes in the order it sent them.
#[tokio::test]
async fn a_burst_of_mids_pushes_arrives_complete_and_in_order() {
    let s = Standalone::start().await;
    let mut c = s.ws(1, "", "", &[]).await;
    const SENDERS: usize = 8;
    const EACH: usize = 50;
    let senders = (0..SENDERS).map(|k| {
        let s = &s;
        async move {
            for i in 0..EACH {
                let (status, _) = s
                    .push("mids", "operation=1000&mids=1", format!("{k}-{i}"))
                    .await;
                assert_eq!(status, 200);
            }
        }
    });
    futures_util::future::join_all(senders).await;
    let mut next = [0usize; SENDERS];
    for _ in 0..SENDERS * EACH {
        let f = next_msg(&mut c).await;
        let body = String::from_utf8(f.body.to_vec()).unwrap();
        let (k, i) = body.split_once('-').unwrap();
        let (k, i): (usize, usize) = (k.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[k], "sender {k}'s pushes out of order or repeated");
        next[k] += 1;
    }
    // The batched path was taken (the pushes were sent faster than one call per push could carry them).
    let calls: f64 = s
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("imcloud_comet_push_msgs_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(calls >= 1.0, "no PushMsgs call: {calls}");
    println!("{} pushes arrived; {calls} PushMsgs calls", SENDERS * EACH);
}
