//! A room-recovery client for the tests: op 23 with a position, its op 24 answer, op 25 publications.

use std::time::{Duration, Instant};

use imcloud::client::{GoimClient, auth_body, sign_token};
use imcloud_proto::{Publication, op};
use serde_json::{Value, json};

use super::{SECRET, WAIT};

/// A client's place in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub epoch: u64,
    pub offset: u64,
}

/// Sends op 23 for `room` (with `from`, or as a first join) and returns the op 24 answer.
pub async fn join(c: &mut GoimClient, room: &str, from: Option<Pos>) -> Value {
    let body = match from {
        Some(p) => json!({"room": room, "epoch": p.epoch, "offset": p.offset}),
        None => json!({"room": room}),
    };
    let seq = c
        .send(op::RECOVER, serde_json::to_vec(&body).unwrap())
        .await
        .expect("send op 23");
    loop {
        let f = c.recv_timeout(WAIT).await.expect("op 24 within 10 s");
        match f.op {
            op::HEARTBEAT_REPLY => continue,
            op::RECOVER_REPLY => {
                assert_eq!(f.seq, seq, "op 24 answers the op 23's seq");
                return serde_json::from_slice(&f.body).expect("op 24 is JSON");
            }
            other => panic!(
                "op {other} before the op 24 answer: {:?}",
                String::from_utf8_lossy(&f.body)
            ),
        }
    }
}

/// The position an op 24 answer leaves the client at.
pub fn pos_of(reply: &Value) -> Pos {
    Pos {
        epoch: reply["epoch"].as_u64().expect("epoch"),
        offset: reply["offset"].as_u64().expect("offset"),
    }
}

/// A websocket client of `mid` at `url`, authenticated, in no room.
pub async fn ws_client(url: &str, mid: i64) -> GoimClient {
    let mut c = GoimClient::connect_ws(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let token = sign_token(SECRET, mid, 600).expect("sign");
    c.auth(auth_body(mid, "", "", &[], &token), WAIT)
        .await
        .unwrap_or_else(|e| panic!("auth at {url}: {e}"));
    c
}

/// The next `n` publications of `room` (failing on anything else but heartbeat replies).
pub async fn publications(c: &mut GoimClient, room: &str, n: usize) -> Vec<(Pos, String)> {
    publications_within(c, room, n, WAIT).await
}

/// [`publications`], each within `wait`.
pub async fn publications_within(
    c: &mut GoimClient,
    room: &str,
    n: usize,
    wait: Duration,
) -> Vec<(Pos, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let f = c
            .recv_timeout(wait)
            .await
            .unwrap_or_else(|e| panic!("publication {} of {n}: {e}", out.len() + 1));
        if f.op == op::HEARTBEAT_REPLY {
            continue;
        }
        assert_eq!(
            f.op,
            op::PUBLICATION,
            "expected op 25, got {:?}",
            String::from_utf8_lossy(&f.body)
        );
        let p = Publication::parse(&f.body).expect("an op 25 body");
        assert_eq!(p.room, room);
        assert_eq!(p.op, 1000);
        out.push((
            Pos {
                epoch: p.epoch,
                offset: p.offset,
            },
            String::from_utf8_lossy(&p.body).into_owned(),
        ));
    }
    out
}

/// Asserts nothing arrives for `quiet` (what a client sees after the expected messages).
pub async fn nothing_more(c: &mut GoimClient, quiet: Duration) {
    let end = Instant::now() + quiet;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match c.recv_timeout(left).await {
            Ok(f) if f.op == op::HEARTBEAT_REPLY => {}
            Ok(f) => panic!(
                "unexpected op {} {:?}",
                f.op,
                String::from_utf8_lossy(&f.body)
            ),
            Err(_) => return,
        }
    }
}
