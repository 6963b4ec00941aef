//! Room history and recovery through the real binary (standalone): persistent pushes missed while away are
//! recovered exactly once, in order, before live ones; an overflowed history and a new epoch are told
//! plainly; goim clients that never ask see exactly what they saw before.

mod common;

use std::time::Duration;

use common::recovery::{Pos, join, nothing_more, pos_of, publications};
use common::*;
use imcloud_proto::op;

const ROOM: &str = "live://rec";

async fn push_persistent(s: &Standalone, body: &str) {
    let (status, v) = s
        .push(
            "room",
            "operation=1000&type=live&room=rec&persistent=true",
            body.to_string(),
        )
        .await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");
}

/// Waits until a plain member of the room (a goim client) has received these messages: then job has
/// appended them to the history (it appends before it delivers). An HTTP 200 only means queued.
async fn delivered(observer: &mut imcloud::client::GoimClient, want: &[String]) {
    for b in want {
        expect_msg(observer, 1000, b.as_bytes()).await;
    }
}

fn bodies(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i:03}")).collect()
}

/// Joins, receives one message live, leaves, misses 100, comes back with its position and gets the 100
/// once, in order, then live messages.
async fn away_for_100(s: &Standalone) {
    let mut observer = s.ws(9, "", ROOM, &[]).await;
    let mut a = s.ws(1, "", "", &[]).await;
    let first = join(&mut a, ROOM, None).await;
    assert_eq!(
        (first["code"].as_i64(), first["recovered"].as_bool()),
        (Some(0), Some(true)),
        "{first}"
    );
    assert_eq!(first["rooms"], serde_json::json!([ROOM]));
    push_persistent(s, "before").await;
    let got = publications(&mut a, ROOM, 1).await;
    let at = got[0].0;
    assert_eq!(at.epoch, pos_of(&first).epoch, "the epoch the join told");
    assert_eq!(at.offset, pos_of(&first).offset + 1);
    drop(a);

    let want = bodies(100);
    for b in &want {
        push_persistent(s, b).await;
    }
    expect_msg(&mut observer, 1000, b"before").await;
    delivered(&mut observer, &want).await;
    let mut b = s.ws(1, "", "", &[]).await;
    let reply = join(&mut b, ROOM, Some(at)).await;
    assert_eq!(
        (
            reply["recovered"].as_bool(),
            reply["publications"].as_u64(),
            reply["reason"].is_null()
        ),
        (Some(true), Some(100), true),
        "{reply}"
    );
    assert_eq!(
        pos_of(&reply),
        Pos {
            epoch: at.epoch,
            offset: at.offset + 100
        }
    );
    let got = publications(&mut b, ROOM, 100).await;
    let offsets: Vec<u64> = got.iter().map(|(p, _)| p.offset).collect();
    assert_eq!(
        offsets,
        (at.offset + 1..=at.offset + 100).collect::<Vec<_>>()
    );
    let texts: Vec<String> = got.into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, want, "all 100, once, in order");
    push_persistent(s, "live").await;
    let live = publications(&mut b, ROOM, 1).await;
    assert_eq!(
        (live[0].0.offset, live[0].1.as_str()),
        (at.offset + 101, "live")
    );
    nothing_more(&mut b, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_client_away_while_100_persistent_messages_are_pushed_recovers_all_100_once_in_order() {
    let s = Standalone::start().await;
    away_for_100(&s).await;
}

#[tokio::test]
async fn the_same_on_the_redis_history() {
    let prefix = format!(
        "{}:",
        imcloud_common::test_name::unique_test_name("imcloud-test-rec")
    );
    let s = Standalone::start_with(&[
        ("IMCLOUD_REDIS_URL", &cluster::redis_url()),
        ("IMCLOUD_REDIS_PREFIX", &prefix),
    ])
    .await;
    away_for_100(&s).await;
}

/// The seam: pushes go on while the client rejoins; it sees every offset once, in order, whatever part of
/// them came from the history and whatever part live.
#[tokio::test]
async fn pushes_racing_a_rejoin_arrive_once_in_order() {
    let s = Standalone::start().await;
    let mut observer = s.ws(9, "", ROOM, &[]).await;
    let mut a = s.ws(1, "", "", &[]).await;
    let at = pos_of(&join(&mut a, ROOM, None).await);
    drop(a);
    let want = bodies(200);
    for b in &want[..100] {
        push_persistent(&s, b).await;
    }
    delivered(&mut observer, &want[..100]).await;
    let mut b = s.ws(1, "", "", &[]).await;
    let (_, (reply, got)) = tokio::join!(
        async {
            for body in &want[100..] {
                push_persistent(&s, body).await;
            }
        },
        async {
            let reply = join(&mut b, ROOM, Some(at)).await;
            let got = publications(&mut b, ROOM, 200).await;
            (reply, got)
        }
    );
    assert_eq!(reply["recovered"].as_bool(), Some(true), "{reply}");
    let n = reply["publications"].as_u64().unwrap();
    assert!((100..=200).contains(&n), "{n} recovered");
    let offsets: Vec<u64> = got.iter().map(|(p, _)| p.offset).collect();
    assert_eq!(
        offsets,
        (1..=200).map(|i| at.offset + i).collect::<Vec<_>>()
    );
    let texts: Vec<String> = got.into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, want);
    nothing_more(&mut b, Duration::from_millis(300)).await;
    println!("{n} of 200 recovered from the history, the rest live");
}

#[tokio::test]
async fn an_overflowed_history_says_the_gap_is_not_covered() {
    let s = Standalone::start_with(&[("IMCLOUD_ROOM_HISTORY_SIZE", "10")]).await;
    let mut observer = s.ws(9, "", ROOM, &[]).await;
    let mut a = s.ws(1, "", "", &[]).await;
    let at = pos_of(&join(&mut a, ROOM, None).await);
    drop(a);
    for b in bodies(20) {
        push_persistent(&s, &b).await;
    }
    delivered(&mut observer, &bodies(20)).await;
    let mut b = s.ws(1, "", "", &[]).await;
    let reply = join(&mut b, ROOM, Some(at)).await;
    assert_eq!(
        (
            reply["code"].as_i64(),
            reply["recovered"].as_bool(),
            reply["reason"].as_str(),
            reply["publications"].as_u64()
        ),
        (Some(0), Some(false), Some("history_gap"), Some(0)),
        "{reply}"
    );
    assert_eq!(
        pos_of(&reply),
        Pos {
            epoch: at.epoch,
            offset: at.offset + 20
        },
        "the client is at the room's newest message; the app syncs the rest"
    );
    // Still in the room, live from there.
    push_persistent(&s, "next").await;
    let got = publications(&mut b, ROOM, 1).await;
    assert_eq!(
        (got[0].0.offset, got[0].1.as_str()),
        (at.offset + 21, "next")
    );
    // A client 10 behind is still covered.
    let mut c = s.ws(2, "", "", &[]).await;
    let reply = join(
        &mut c,
        ROOM,
        Some(Pos {
            epoch: at.epoch,
            offset: at.offset + 11,
        }),
    )
    .await;
    assert_eq!(reply["recovered"].as_bool(), Some(true), "{reply}");
    assert_eq!(publications(&mut c, ROOM, 10).await.len(), 10);
}

#[tokio::test]
async fn a_lost_history_says_the_epoch_changed() {
    let s = Standalone::start_with(&[("IMCLOUD_ROOM_HISTORY_TTL_SECS", "1")]).await;
    let mut a = s.ws(1, "", "", &[]).await;
    join(&mut a, ROOM, None).await;
    push_persistent(&s, "one").await;
    let at = publications(&mut a, ROOM, 1).await[0].0;
    drop(a);
    // No persistent push for longer than the TTL: the room's history is gone.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut b = s.ws(1, "", "", &[]).await;
    let reply = join(&mut b, ROOM, Some(at)).await;
    assert_eq!(
        (
            reply["recovered"].as_bool(),
            reply["reason"].as_str(),
            reply["offset"].as_u64()
        ),
        (Some(false), Some("epoch_changed"), Some(0)),
        "{reply}"
    );
    let epoch = pos_of(&reply).epoch;
    assert_ne!(epoch, at.epoch);
    push_persistent(&s, "two").await;
    let got = publications(&mut b, ROOM, 1).await;
    assert_eq!(
        got[0].0,
        Pos { epoch, offset: 1 },
        "the new epoch counts from 1"
    );
}

/// goim clients never send op 23: persistent pushes reach them as the plain application frames every push
/// is, on both transports, exactly as non-persistent ones.
#[tokio::test]
async fn goim_clients_that_never_ask_see_what_they_saw_before() {
    let s = Standalone::start().await;
    let mut ws = s.ws(1, "", ROOM, &[]).await;
    let mut tcp = s.tcp(2, "", ROOM).await;
    // A recovering client in the same room does not change what the others get.
    let mut rec = s.ws(3, "", "", &[]).await;
    join(&mut rec, ROOM, None).await;
    push_persistent(&s, "kept").await;
    let (status, _) = s
        .push("room", "operation=1001&type=live&room=rec", "not kept")
        .await;
    assert_eq!(status, 200);
    for c in [&mut ws, &mut tcp] {
        expect_msg(c, 1000, b"kept").await;
        expect_msg(c, 1001, b"not kept").await;
        nothing_more(c, Duration::from_millis(200)).await;
    }
    // The recovering client: the persistent one with its position, the other as it is.
    let got = publications(&mut rec, ROOM, 1).await;
    assert_eq!(got[0].1, "kept");
    expect_msg(&mut rec, 1001, b"not kept").await;
    // A bad persistent flag is refused.
    let (status, v) = s
        .push(
            "room",
            "operation=1000&type=live&room=rec&persistent=yes",
            "x",
        )
        .await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test]
async fn a_bad_op_23_is_answered_not_closed() {
    let s = Standalone::start().await;
    let mut c = s.ws(1, "", "", &[]).await;
    let seq = c.send(op::RECOVER, "not json").await.unwrap();
    let f = next_msg(&mut c).await;
    assert_eq!((f.op, f.seq), (op::RECOVER_REPLY, seq));
    let v: serde_json::Value = serde_json::from_slice(&f.body).unwrap();
    assert_eq!(v["code"].as_i64(), Some(-400), "{v}");
    let v = join(&mut c, "", None).await;
    assert_eq!(
        (v["code"].as_i64(), v["message"].as_str()),
        (Some(-400), Some("empty room id"))
    );
    // The connection still works.
    let v = join(&mut c, ROOM, None).await;
    assert_eq!(v["code"].as_i64(), Some(0), "{v}");
}
