//! Connection behaviour of the real binary: auth, heartbeats, deadlines, bad input, same-key replacement, a
//! key of another user refused, op 4.

mod common;

use std::time::Duration;

use common::*;
use imcloud::client::{ClientError, GoimClient, auth_body, sign_token};
use imcloud_proto::frame::HEADER_LEN;
use imcloud_proto::{Frame, op};
use serde_json::Value;

async fn refused(s: &Standalone, body: Vec<u8>) -> String {
    let mut c = GoimClient::connect_ws(&s.ws_url).await.expect("connect");
    match c.auth(body, WAIT).await {
        Ok(f) => panic!("auth should fail, got op {}", f.op),
        Err(ClientError::Closed(reason)) => reason,
        Err(e) => panic!("expected a close, got {e}"),
    }
}

#[tokio::test]
async fn good_tokens_authenticate_and_bad_ones_close_the_connection() {
    let s = Standalone::start().await;
    let good = sign_token(SECRET, 7, 60).unwrap();
    let mut c = GoimClient::connect_ws(&s.ws_url).await.unwrap();
    assert_eq!(
        c.auth(auth_body(7, "", "", &[], &good), WAIT)
            .await
            .unwrap()
            .op,
        op::AUTH_REPLY
    );

    let wrong_secret = sign_token("not-the-secret", 7, 60).unwrap();
    let reason = refused(&s, auth_body(7, "", "", &[], &wrong_secret)).await;
    assert!(
        reason.contains("auth failed") && reason.contains("invalid token"),
        "{reason}"
    );

    let reason = refused(&s, auth_body(8, "", "", &[], &good)).await;
    assert!(reason.contains("another user"), "wrong mid: {reason}");

    let expired = expired_token(7);
    let reason = refused(&s, auth_body(7, "", "", &[], &expired)).await;
    assert!(reason.contains("expired"), "{reason}");

    let reason = refused(&s, auth_body(7, "", "", &[], "")).await;
    assert!(reason.contains("missing token"), "{reason}");

    let reason = refused(&s, b"not json".to_vec()).await;
    assert!(reason.contains("bad auth body"), "{reason}");

    // The first frame must be op 7.
    let mut c2 = GoimClient::connect_ws(&s.ws_url).await.unwrap();
    c2.send(op::HEARTBEAT, Vec::new()).await.unwrap();
    assert!(
        expect_closed(&mut c2)
            .await
            .contains("first frame must be op 7")
    );

    // The good connection was never disturbed.
    c.send(op::HEARTBEAT, Vec::new()).await.unwrap();
    assert_eq!(c.recv_timeout(WAIT).await.unwrap().op, op::HEARTBEAT_REPLY);
}

/// A token whose `exp` passed a minute ago, signed with the right secret.
fn expired_token(mid: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({"sub": mid.to_string(), "exp": now - 60});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

#[tokio::test]
async fn heartbeat_is_answered_with_the_room_online_count() {
    let s = Standalone::start().await;
    let mut a = s.ws(1, "a", "live://hb", &[]).await;
    let _b = s.tcp(2, "b", "live://hb").await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let seq = a.send(op::HEARTBEAT, Vec::new()).await.unwrap();
        let f = a.recv_timeout(WAIT).await.unwrap();
        assert_eq!((f.op, f.seq), (op::HEARTBEAT_REPLY, seq));
        assert_eq!(f.body.len(), 4, "op 3 body is an i32");
        let online = i32::from_be_bytes([f.body[0], f.body[1], f.body[2], f.body[3]]);
        if online == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "room online count never reached 2 (last {online})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn missed_heartbeats_and_silent_handshakes_are_closed() {
    let s = Standalone::start_with(&[
        ("IMCLOUD_HEARTBEAT_SECS", "1"),
        ("IMCLOUD_HEARTBEAT_MAX_MISSES", "2"),
        ("IMCLOUD_HANDSHAKE_TIMEOUT_MS", "500"),
    ])
    .await;
    let mut silent = s.ws(1, "silent", "", &[]).await;
    let mut alive = s.ws(2, "alive", "", &[]).await;
    let beat = tokio::spawn(async move {
        for _ in 0..8 {
            alive
                .send(op::HEARTBEAT, Vec::new())
                .await
                .expect("heartbeat");
            let f = alive.recv_timeout(WAIT).await.expect("heartbeat reply");
            assert_eq!(f.op, op::HEARTBEAT_REPLY);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let started = std::time::Instant::now();
    assert_eq!(expect_closed(&mut silent).await, "heartbeat timeout");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
    beat.await
        .expect("a heartbeating connection stays open past the deadline");

    // A connection that never authenticates is closed after the handshake timeout.
    let mut mute = GoimClient::connect_ws(&s.ws_url).await.unwrap();
    assert!(expect_closed(&mut mute).await.contains("handshake timeout"));
}

#[tokio::test]
async fn bad_frames_close_only_their_connection() {
    let s = Standalone::start().await;
    let mut bystander = s.ws(1, "bystander", "", &[]).await;
    let mut tcp_bystander = s.tcp(2, "tcp-bystander", "").await;

    let mut wrong_header = Frame::new(op::HEARTBEAT, 1, Vec::new()).encode().to_vec();
    wrong_header[4..6].copy_from_slice(&20i16.to_be_bytes());
    let oversize = Frame::new(op::SEND_MSG, 1, vec![b'x'; 5000])
        .encode()
        .to_vec();
    let mut short = Frame::new(op::HEARTBEAT, 1, b"abcdef".to_vec())
        .encode()
        .to_vec();
    short.truncate(HEADER_LEN + 2);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("wrong header length", wrong_header, "bad header length"),
        ("oversize frame", oversize, "too large"),
        (
            "garbage",
            b"\x00\x01garbage bytes".to_vec(),
            "protocol error",
        ),
        ("truncated frame", short, "truncated"),
        (
            "unknown op",
            Frame::new(77, 1, Vec::new()).encode().to_vec(),
            "unsupported op 77",
        ),
        (
            "bad op list",
            Frame::new(op::SUB, 1, b"10x".to_vec()).encode().to_vec(),
            "bad op",
        ),
    ];
    for (i, (name, bytes, want)) in cases.into_iter().enumerate() {
        let mut c = s.ws(10 + i as i64, &format!("bad-{i}"), "", &[]).await;
        c.send_raw(bytes).await.unwrap();
        let reason = expect_closed(&mut c).await;
        assert!(
            reason.contains(want),
            "{name}: reason {reason:?} lacks {want:?}"
        );
    }
    // A text message over the websocket is refused too.
    let mut text = s.ws(30, "text", "", &[]).await;
    let mut raw = tokio_tungstenite::connect_async(&s.ws_url).await.unwrap().0;
    use futures_util::SinkExt;
    raw.send(tokio_tungstenite::tungstenite::Message::Text(
        "hello".into(),
    ))
    .await
    .unwrap();
    drop(raw);
    text.send_raw(b"garbage".to_vec()).await.unwrap();
    assert!(expect_closed(&mut text).await.contains("protocol error"));

    // Garbage on goim TCP closes that TCP connection only.
    let mut bad_tcp = s.tcp(40, "bad-tcp", "").await;
    bad_tcp.send_raw(vec![0xff; 32]).await.unwrap();
    expect_closed(&mut bad_tcp).await;

    let (status, v) = s.push("all", "operation=1000", "still here").await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");
    expect_msg(&mut bystander, 1000, b"still here").await;
    expect_msg(&mut tcp_bystander, 1000, b"still here").await;
}

#[tokio::test]
async fn a_second_connection_with_the_same_key_replaces_the_first() {
    let s = Standalone::start().await;
    let mut first = s.ws(5, "dup", "", &[]).await;
    let mut second = s.ws(5, "dup", "", &[]).await;
    assert!(expect_closed(&mut first).await.contains("replaced"));
    // The replaced connection's cleanup must not remove the new session.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, v) = s
        .push("keys", "operation=1000&keys=dup", "to the new one")
        .await;
    assert_eq!(
        (status, v["data"]["queued"].as_i64()),
        (200, Some(1)),
        "{v}"
    );
    expect_msg(&mut second, 1000, b"to the new one").await;
}

#[tokio::test]
async fn op4_is_answered_by_logic_with_op5_and_the_same_seq() {
    let s = Standalone::start().await;
    let mut c = s.ws(9, "k9", "", &[]).await;
    let seq = c
        .send(op::SEND_MSG, br#"{"cmd":"ping"}"#.to_vec())
        .await
        .unwrap();
    let f = c.recv_timeout(WAIT).await.unwrap();
    assert_eq!((f.op, f.seq), (op::SEND_MSG_REPLY, seq));
    let v: Value = serde_json::from_slice(&f.body).unwrap();
    assert_eq!(
        (
            v["code"].as_i64(),
            v["data"]["mid"].as_i64(),
            v["data"]["key"].as_str()
        ),
        (Some(0), Some(9), Some("k9"))
    );

    let seq = c
        .send(op::SEND_MSG, b"not a command".to_vec())
        .await
        .unwrap();
    let f = c.recv_timeout(WAIT).await.unwrap();
    assert_eq!((f.op, f.seq), (op::SEND_MSG_REPLY, seq));
    assert_eq!(
        serde_json::from_slice::<Value>(&f.body).unwrap()["code"].as_i64(),
        Some(-400)
    );
}

#[tokio::test]
async fn a_key_in_use_by_another_user_is_refused() {
    let s = Standalone::start().await;
    let mut owner = s.ws(1, "shared-key", "", &[]).await;
    let token = sign_token(SECRET, 2, 60).unwrap();
    let reason = refused(&s, auth_body(2, "shared-key", "", &[], &token)).await;
    assert!(reason.contains("another user"), "{reason}");
    // The owner keeps its connection and its pushes.
    let (status, _) = s
        .push("keys", "operation=1000&keys=shared-key", "still yours")
        .await;
    assert_eq!(status, 200);
    expect_msg(&mut owner, 1000, b"still yours").await;
}

/// 12,000 clients dropping at once make the comet send as many Disconnect calls to logic together.
/// h2 used to close that connection ("too_many_data_frames"), failing every call on it, including the
/// auths of clients connecting at that moment; the gRPC servers now cap concurrent streams.
#[tokio::test]
async fn a_mass_disconnect_does_not_break_new_connections() {
    use futures_util::StreamExt;
    let s = Standalone::start().await;
    let open = |first: i64, n: i64| {
        futures_util::stream::iter(first..first + n)
            .map(|mid| s.ws(mid, "", "", &[]))
            .buffer_unordered(200)
            .collect::<Vec<_>>()
    };
    let crowd = open(1, 12_000).await;
    drop(crowd);
    // Connect while the 12,000 Disconnect calls are in flight: each auth is a logic call on the same channel.
    let late = open(10_000, 300).await;
    assert_eq!(late.len(), 300);
    s.wait_online(300).await;
}
