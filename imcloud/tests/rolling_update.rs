//! A rolling update under load, the way a Deployment rollout does it (one pod at a time, the new one ready
//! before the old one gets SIGTERM): 3 comets, 2 jobs, 2 logics and an api on etcd, Kafka and Redis, with
//! clients in one room, steady mids and room pushes, and IM messages sent through the JSON API. Every comet
//! is rolled, then every job, then every logic. Measured and checked:
//!
//! - the peak reconnect rate stays near (clients per comet) / drain window, not all of them at once;
//! - the longest time any client was without a connection;
//! - pushes to clients that stayed connected: none lost ("stayed connected" for a push = connected from
//!   before it was sent until [`SETTLE`] after the api accepted it);
//! - IM messages: none lost (every acknowledged send is in the conversation, once, seqs gapless).
//!
//! Sized by `IMCLOUD_ROLLING_CLIENTS` (default 300) and `IMCLOUD_ROLLING_WINDOW_SECS` (the comets' drain
//! window, default 6): CI runs the defaults; docs/operations.md has the figures of a full run
//! (3,000 clients, 30 s). The figures are printed as one `rolling update:` line.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, ClusterSpec};
use common::im::ImApi;
use common::{SECRET, WAIT};
use imcloud::client::{GoimClient, auth_body, reconnect_delay, sign_token};
use imcloud_proto::op;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// How long after the api accepted a push a connected client must have it.
const SETTLE: Duration = Duration::from_secs(3);
const HEARTBEAT_SECS: u64 = 10;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one client lived through.
#[derive(Default)]
struct Log {
    /// Connection intervals: (authenticated, closed) — closed `None` while still open.
    up: Vec<(Instant, Option<Instant>)>,
    /// Closes that came with a reconnect hint, and without one.
    hinted: u32,
    unhinted: u32,
    /// Application message bodies received, with how often.
    got: HashMap<String, u32>,
}

impl Log {
    /// Whether the client was connected over all of [from, to].
    fn connected_over(&self, from: Instant, to: Instant) -> bool {
        self.up
            .iter()
            .any(|(a, b)| *a <= from && b.is_none_or(|b| b >= to))
    }
}

async fn client(
    mid: i64,
    mut url: String,
    room: String,
    log: Arc<Mutex<Log>>,
    stop: CancellationToken,
) {
    let token = sign_token(SECRET, mid, 3600).expect("token");
    let key = format!("k{mid}");
    let mut failures = 0u32;
    loop {
        let connected = async {
            let mut c = GoimClient::connect_ws(&url).await?;
            c.auth(auth_body(mid, &key, &room, &[], &token), WAIT)
                .await?;
            Ok::<_, imcloud::client::ClientError>(c)
        };
        let mut c = tokio::select! {
            _ = stop.cancelled() => return,
            r = connected => match r {
                Ok(c) => c,
                Err(e) => {
                    failures += 1;
                    assert!(failures < 50, "client {mid} cannot connect to {url}: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        failures = 0;
        log.lock().unwrap().up.push((Instant::now(), None));
        let mut hb = tokio::time::interval(Duration::from_secs(HEARTBEAT_SECS));
        hb.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = hb.tick() => { if c.send(op::HEARTBEAT, Vec::new()).await.is_err() { break } }
                f = c.recv() => match f {
                    Ok(f) if f.op >= op::APP_MIN => {
                        let body = String::from_utf8_lossy(&f.body).into_owned();
                        *log.lock().unwrap().got.entry(body).or_default() += 1;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                },
            }
        }
        let closed = Instant::now();
        let hint = c.reconnect_hint().cloned();
        {
            let mut l = log.lock().unwrap();
            if let Some(last) = l.up.last_mut() {
                last.1 = Some(closed);
            }
            if hint.is_some() {
                l.hinted += 1;
            } else {
                l.unhinted += 1;
            }
        }
        let wait = match &hint {
            Some(h) => {
                if let Some(u) = &h.url {
                    url = u.clone();
                }
                reconnect_delay(h)
            }
            None => Duration::from_secs(1),
        };
        tokio::time::sleep(wait).await;
    }
}

/// A push as the publisher made it: its body, the mid it was for (room pushes: none), when the request
/// was sent and when the api answered 200.
struct Sent {
    body: String,
    mid: Option<i64>,
    sent: Instant,
    accepted: Instant,
}

async fn publisher(
    api: String,
    clients: i64,
    sent: Arc<Mutex<Vec<Sent>>>,
    failures: Arc<Mutex<u32>>,
    stop: CancellationToken,
) {
    let http = reqwest::Client::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for n in 0u64.. {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Nine mids pushes to one client each, then one room push, every second.
        let (path, body, mid) = if n % 10 == 9 {
            (
                "room?operation=1000&type=live&room=roll".to_string(),
                format!("r:{n}"),
                None,
            )
        } else {
            let mid = (n.wrapping_mul(7919) % clients as u64) as i64 + 1;
            (
                format!("mids?operation=1000&mids={mid}"),
                format!("m:{n}"),
                Some(mid),
            )
        };
        let t0 = Instant::now();
        // A push the api refuses (503 while a logic leaves) is sent again; it counts from the success.
        for _ in 0..20 {
            let r = http
                .post(format!("{api}/goim/push/{path}"))
                .bearer_auth(common::API_KEY)
                .body(body.clone())
                .timeout(Duration::from_secs(15))
                .send()
                .await;
            if r.as_ref().is_ok_and(|r| r.status().is_success()) {
                sent.lock().unwrap().push(Sent {
                    body: body.clone(),
                    mid,
                    sent: t0,
                    accepted: Instant::now(),
                });
                break;
            }
            *failures.lock().unwrap() += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// IM sends from ann to bob, each retried with its client_msg_id until acknowledged.
async fn im_sender(
    api: String,
    token: String,
    cid: String,
    acked: Arc<Mutex<Vec<String>>>,
    failures: Arc<Mutex<u32>>,
    stop: CancellationToken,
) {
    let im = ImApi::new(&api);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    for n in 0u64.. {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let id = format!("im-{n}");
        for _ in 0..50 {
            let (status, _) = im
                .call(
                    "POST",
                    &format!("/v1/conversations/{cid}/messages"),
                    Some(&token),
                    Some(json!({"client_msg_id": id, "type": "text", "content": id})),
                )
                .await;
            if status == 201 || status == 200 {
                acked.lock().unwrap().push(id.clone());
                break;
            }
            *failures.lock().unwrap() += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Starts a new node of `role` (the rollout's surge pod), waits until it is registered and ready, then
/// SIGTERMs `old` and waits for it to exit cleanly.
async fn roll(c: &mut Cluster, role: &str, old: &str, new: &str, grace: Duration) -> Duration {
    match role {
        "comet" => c.spawn_comet(new),
        "job" => c.spawn_job(new),
        _ => c.spawn_logic(new),
    }
    c.wait_registered_one(new).await;
    c.wait_ready(new, Duration::from_secs(60)).await;
    let started = Instant::now();
    let status = c.terminate(old, grace).await;
    assert!(status.success(), "{old} exited with {status} after SIGTERM");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_moves_every_client_without_a_storm_or_a_lost_push() {
    let n = env_or("IMCLOUD_ROLLING_CLIENTS", 300) as i64;
    let window = env_or("IMCLOUD_ROLLING_WINDOW_SECS", 6);
    let hint_delay_ms = 500;
    let env: Vec<(String, String)> = [
        ("IMCLOUD_DRAIN_WINDOW_SECS", window.to_string()),
        ("IMCLOUD_DRAIN_HINT_DELAY_MS", hint_delay_ms.to_string()),
        ("IMCLOUD_DRAIN_DELAY_MS", "1500".to_string()),
        ("IMCLOUD_READINESS_CHECK_SECS", "1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut c = Cluster::start(ClusterSpec {
        comets: 3,
        jobs: 2,
        logics: 2,
        heartbeat_secs: HEARTBEAT_SECS,
        env,
        ..ClusterSpec::default()
    })
    .await;
    for name in [
        "comet1", "comet2", "comet3", "job1", "job2", "logic1", "logic2",
    ] {
        c.wait_ready(name, Duration::from_secs(60)).await;
    }

    // The clients, spread over the three comets, all in one room.
    let stop = CancellationToken::new();
    let urls: Vec<String> = ["comet1", "comet2", "comet3"]
        .iter()
        .map(|n| c.nodes[*n].ws_url.clone().expect("ws url"))
        .collect();
    let logs: Vec<Arc<Mutex<Log>>> = (0..n).map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for mid in 1..=n {
        let url = urls[(mid as usize) % urls.len()].clone();
        tasks.push(tokio::spawn(client(
            mid,
            url,
            "live://roll".into(),
            logs[(mid - 1) as usize].clone(),
            stop.clone(),
        )));
        if mid % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while logs.iter().any(|l| l.lock().unwrap().up.is_empty()) {
        assert!(
            Instant::now() < deadline,
            "not every client connected within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // IM: two friends; ann sends to bob throughout.
    let im = ImApi::new(&c.http);
    let ann = im.user("Ann").await;
    let bob = im.user("Bob").await;
    im.befriend(&ann, &bob).await;
    let cid = format!("u-{}-{}", ann.id.min(bob.id), ann.id.max(bob.id));

    // Until the consumer group has formed, pushes wait; start measuring once one push arrives.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, v) = c.push("mids", "operation=1000&mids=1", "warm-up").await;
        assert_eq!(status, 200, "{v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        if logs[0].lock().unwrap().got.contains_key("warm-up") {
            break;
        }
        assert!(Instant::now() < deadline, "no push arrived within 60 s");
    }

    let sent = Arc::new(Mutex::new(Vec::new()));
    let push_failures = Arc::new(Mutex::new(0u32));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let im_failures = Arc::new(Mutex::new(0u32));
    let load_stop = CancellationToken::new();
    let pub_task = tokio::spawn(publisher(
        c.http.clone(),
        n,
        sent.clone(),
        push_failures.clone(),
        load_stop.clone(),
    ));
    let im_task = tokio::spawn(im_sender(
        c.http.clone(),
        ann.token.clone(),
        cid.clone(),
        acked.clone(),
        im_failures.clone(),
        load_stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;

    let rolled_at = Instant::now();
    let comet_grace = Duration::from_secs(window + 40);
    let mut drains = BTreeMap::new();
    for (old, new) in [
        ("comet1", "comet4"),
        ("comet2", "comet5"),
        ("comet3", "comet6"),
    ] {
        drains.insert(old, roll(&mut c, "comet", old, new, comet_grace).await);
    }
    for (old, new) in [("job1", "job3"), ("job2", "job4")] {
        drains.insert(
            old,
            roll(&mut c, "job", old, new, Duration::from_secs(40)).await,
        );
    }
    for (old, new) in [("logic1", "logic3"), ("logic2", "logic4")] {
        drains.insert(
            old,
            roll(&mut c, "logic", old, new, Duration::from_secs(40)).await,
        );
    }
    let rolled = rolled_at.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    load_stop.cancel();
    let _ = pub_task.await;
    let _ = im_task.await;
    // Deliveries still in flight arrive.
    tokio::time::sleep(SETTLE).await;
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    c.check_alive();

    // Reconnects per second during the rollout, and the longest gap any client had.
    let logs: Vec<Log> = logs
        .iter()
        .map(|l| std::mem::take(&mut *l.lock().unwrap()))
        .collect();
    let mut per_second: BTreeMap<u64, u32> = BTreeMap::new();
    let mut longest_gap = Duration::ZERO;
    for l in &logs {
        for pair in l.up.windows(2) {
            let (closed, reopened) = (pair[0].1.expect("closed before reopening"), pair[1].0);
            longest_gap = longest_gap.max(reopened - closed);
            if reopened >= rolled_at {
                *per_second
                    .entry((reopened - rolled_at).as_secs())
                    .or_default() += 1;
            }
        }
    }
    let reconnects: u32 = per_second.values().sum();
    let peak = per_second.values().copied().max().unwrap_or(0);
    let unhinted: u32 = logs.iter().map(|l| l.unhinted).sum();
    let per_comet = n as f64 / 3.0;
    let expected_rate = per_comet / window as f64;

    // Pushes to clients that stayed connected: each must have arrived.
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let (mut expected, mut lost, mut missed_while_moving, mut duplicates) =
        (0u64, 0u64, 0u64, 0u64);
    let mut lost_examples = Vec::new();
    for s in sent.iter() {
        let targets: Vec<usize> = match s.mid {
            Some(mid) => vec![(mid - 1) as usize],
            None => (0..logs.len()).collect(),
        };
        for i in targets {
            let l = &logs[i];
            let count = l.got.get(&s.body).copied().unwrap_or(0);
            duplicates += u64::from(count.saturating_sub(1));
            if l.connected_over(s.sent, s.accepted + SETTLE) {
                expected += 1;
                if count == 0 {
                    lost += 1;
                    if lost_examples.len() < 5 {
                        lost_examples.push(format!("{} to mid {}", s.body, i + 1));
                    }
                }
            } else if count == 0 {
                missed_while_moving += 1;
            }
        }
    }

    // IM: every acknowledged message is in the conversation once, with gapless seqs.
    let acked = acked.lock().unwrap().clone();
    let mut messages: Vec<serde_json::Value> = Vec::new();
    loop {
        let after = messages.last().and_then(|m| m["seq"].as_i64()).unwrap_or(0);
        let page = im
            .ok(
                200,
                "GET",
                &format!("/v1/conversations/{cid}/messages?after_seq={after}&limit=200"),
                &bob,
                None,
            )
            .await;
        let got = page["messages"].as_array().cloned().unwrap_or_default();
        let more = page["has_more"].as_bool().unwrap_or(false) && !got.is_empty();
        messages.extend(got);
        if !more {
            break;
        }
    }
    let stored: Vec<String> = messages
        .iter()
        .filter_map(|m| m["client_msg_id"].as_str().map(str::to_string))
        .collect();
    let stored_set: HashSet<&String> = stored.iter().collect();
    let im_lost: Vec<&String> = acked.iter().filter(|id| !stored_set.contains(id)).collect();
    let mut seqs: Vec<i64> = messages.iter().filter_map(|m| m["seq"].as_i64()).collect();
    seqs.sort_unstable();
    let gapless = seqs.windows(2).all(|w| w[1] == w[0] + 1);

    println!(
        "rolling update: {n} clients, drain window {window} s, rolled 3 comets + 2 jobs + 2 logics in {:.0} s; \
         reconnects {reconnects} (every one after a hint: {}), peak {peak}/s (N/window per comet = {expected_rate:.1}/s), \
         longest without a connection {:.2} s; pushes {} ({expected} deliveries to clients that stayed connected, \
         {lost} lost; {missed_while_moving} missed while moving; {duplicates} duplicates; {} push retries); \
         IM {} acknowledged, {} lost, seqs gapless: {gapless} ({} send retries); drains {:?}",
        rolled.as_secs_f64(),
        unhinted == 0,
        longest_gap.as_secs_f64(),
        sent.len(),
        *push_failures.lock().unwrap(),
        acked.len(),
        im_lost.len(),
        *im_failures.lock().unwrap(),
        drains
            .iter()
            .map(|(k, v)| format!("{k} {:.1}s", v.as_secs_f64()))
            .collect::<Vec<_>>(),
    );
    assert_eq!(unhinted, 0, "clients closed without a reconnect hint");
    assert!(
        reconnects as i64 >= n,
        "every client was moved at least once ({reconnects} reconnects for {n} clients)"
    );
    assert!(
        f64::from(peak) <= (4.0 * expected_rate).max(expected_rate + 20.0),
        "peak reconnect rate {peak}/s, against {expected_rate:.1}/s spread over the window"
    );
    assert!(
        longest_gap < Duration::from_millis(hint_delay_ms) + Duration::from_secs(5),
        "a client was without a connection for {longest_gap:?}"
    );
    assert_eq!(
        lost, 0,
        "pushes lost to connected clients, e.g. {lost_examples:?}"
    );
    assert!(!acked.is_empty(), "no IM message was acknowledged");
    assert!(
        im_lost.is_empty(),
        "acknowledged IM messages lost: {im_lost:?}"
    );
    assert!(gapless, "IM seqs with gaps: {seqs:?}");
    assert_eq!(stored.len(), stored_set.len(), "an IM message stored twice");
}
