//! Faults in the engines, one at a time, each healed, with the invariants checked after it (issue 13's
//! fault suite, the part CI runs): the API answers at once with a readable 503 while an engine it needs is
//! down, comets keep their connections, readiness names the engine, and after healing every node is back
//! in the registry within one lease TTL and deliveries carry on. Each test owns the engine it breaks
//! (`common/own_engines.rs`), so the engines the other tests share are never touched.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, ClusterSpec};
use common::im::ImApi;
use common::own_engines::{OwnEtcd, OwnKafka, OwnPostgres, OwnRedis};
use common::*;
use serde_json::json;

/// Polls `/readyz` through `get` (a standalone's or a cluster api's) until its status is `want`; returns
/// the report.
async fn readyz_until<F, Fut>(get: F, want: u16, within: Duration) -> serde_json::Value
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (u16, serde_json::Value)>,
{
    let deadline = Instant::now() + within;
    loop {
        let (status, report) = get().await;
        if status == want {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered {want}: {status} {report}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_turns_readyz_503_fails_pushes_at_once_and_sessions_return_after_it() {
    let mut redis = OwnRedis::start();
    let url = redis.url();
    let s = Standalone::start_with(&[
        ("IMCLOUD_REDIS_URL", &url),
        ("IMCLOUD_READINESS_CHECK_SECS", "1"),
        ("IMCLOUD_HEARTBEAT_SECS", "2"),
    ])
    .await;
    readyz_until(|| s.get("/readyz"), 200, Duration::from_secs(15)).await;
    let mut c = s.ws(41, "", "live://outage", &[]).await;
    let (status, _) = s.push("mids", "operation=1000&mids=41", "before").await;
    assert_eq!(status, 200);
    expect_msg(&mut c, 1000, b"before").await;

    redis.kill();
    let down = Instant::now();
    // Readiness names the engine that is down, and only it.
    let report = readyz_until(|| s.get("/readyz"), 503, Duration::from_secs(10)).await;
    eprintln!("readyz 503 {:?} after the kill: {report}", down.elapsed());
    assert_eq!(report["ready"], false, "{report}");
    assert_ne!(report["checks"]["sessions"], "ok", "{report}");
    assert_eq!(report["checks"]["database"], "ok", "{report}");
    // A push that needs the session store is refused at once with a readable JSON error: not a hang,
    // not a silent 200.
    let started = Instant::now();
    let (status, body) = s.push("mids", "operation=1000&mids=41", "during").await;
    let took = started.elapsed();
    eprintln!("push by mid with Redis down: {status} in {took:?}: {body}");
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    // The comet keeps its connections: a room push, which needs no session, still arrives.
    let (status, body) = s
        .push(
            "room",
            "operation=1000&type=live&room=outage",
            "room during",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    expect_msg(&mut c, 1000, b"room during").await;

    // Redis comes back empty: ready again, and the connection's session is written again on its next
    // heartbeat, so pushes by mid reach it without a reconnect.
    redis.restart();
    let healed = Instant::now();
    readyz_until(|| s.get("/readyz"), 200, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        c.send(imcloud_proto::op::HEARTBEAT, bytes::Bytes::new())
            .await
            .expect("heartbeat");
        let (status, body) = s.push("mids", "operation=1000&mids=41", "after").await;
        assert!(status == 200 || status == 503, "{status} {body}");
        if let Ok(f) = c.recv_timeout(Duration::from_millis(500)).await
            && f.op == 1000
        {
            assert_eq!(&f.body[..], b"after");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pushes by mid never reached the connection after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "pushes by mid delivered again {:?} after Redis restarted",
        healed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_keeps_deliveries_going_and_afterwards_etcd_lists_exactly_the_live_nodes() {
    let mut etcd = OwnEtcd::start();
    let ttl = 5;
    let mut c = Cluster::start(ClusterSpec {
        comets: 2,
        jobs: 1,
        lease_ttl_secs: ttl,
        env: vec![
            ("IMCLOUD_ETCD_ENDPOINTS".into(), etcd.endpoints()),
            ("IMCLOUD_READINESS_CHECK_SECS".into(), "1".into()),
        ],
        ..ClusterSpec::default()
    })
    .await;
    let mut a = c.client("comet1", 61, "etcd-a", "").await;
    c.push_until_delivered(&mut a, "before", Duration::from_secs(60))
        .await;
    let all: Vec<String> = c.nodes.keys().cloned().collect();

    etcd.kill();
    // The api cannot see the registry: not ready, and says so.
    let report = readyz_until(|| c.get("/readyz"), 503, Duration::from_secs(10)).await;
    assert_ne!(report["checks"]["registry"], "ok", "{report}");
    // Every role works on the membership it last saw: pushes are still delivered.
    let took = c
        .push_until_delivered(&mut a, "during", Duration::from_secs(10))
        .await;
    eprintln!("push delivered with etcd down in {took:?}");
    // A comet dies while nobody can see it go.
    c.kill("comet2");
    tokio::time::sleep(Duration::from_secs(2)).await;

    etcd.restart();
    let healed = Instant::now();
    let live: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|n| *n != "comet2")
        .collect();
    // Within one lease TTL (plus the nodes' reconnect backoff), etcd lists the live nodes and only them.
    let took = c
        .wait_registry_lists_exactly(&live, healed, Duration::from_secs(ttl + 5))
        .await;
    eprintln!("etcd listed exactly the live nodes {took:?} after its restart");
    readyz_until(|| c.get("/readyz"), 200, Duration::from_secs(10)).await;
    c.push_until_delivered(&mut a, "after", Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_crash_refuses_sends_at_once_and_every_acknowledged_message_survives_it() {
    let mut pg = OwnPostgres::start();
    let url = pg.url();
    let s = Standalone::start_with(&[
        ("IMCLOUD_DATABASE_URL", &url),
        ("IMCLOUD_READINESS_CHECK_SECS", "1"),
    ])
    .await;
    let im = ImApi::new(&s.http);
    let ann = im.user("Ann").await;
    let bob = im.user("Bob").await;
    im.befriend(&ann, &bob).await;
    let cid = format!("u-{}-{}", ann.id.min(bob.id), ann.id.max(bob.id));
    let path = format!("/v1/conversations/{cid}/messages");
    let send = |n: usize| {
        let (im, ann, path) = (&im, &ann, &path);
        async move {
            let body = json!({"client_msg_id": format!("pg-crash-{n}"), "type": "text", "content": format!("m{n}")});
            im.call("POST", path, Some(&ann.token), Some(body)).await
        }
    };
    let mut acknowledged = Vec::new();
    for n in 0..5 {
        let (status, v) = send(n).await;
        assert_eq!(status, 201, "{v}");
        acknowledged.push(format!("m{n}"));
    }

    pg.stop();
    let down = Instant::now();
    let report = readyz_until(|| s.get("/readyz"), 503, Duration::from_secs(10)).await;
    eprintln!("readyz 503 {:?} after the crash: {report}", down.elapsed());
    assert_ne!(report["checks"]["database"], "ok", "{report}");
    // Sends are refused at once with a readable JSON error; none is acknowledged and then lost.
    for n in 5..8 {
        let started = Instant::now();
        let (status, v) = send(n).await;
        let took = started.elapsed();
        eprintln!("send with PostgreSQL down: {status} in {took:?}: {v}");
        assert_eq!(status, 503, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        assert!(took < Duration::from_secs(5), "answered after {took:?}");
    }

    pg.resume();
    let healed = Instant::now();
    readyz_until(|| s.get("/readyz"), 200, Duration::from_secs(15)).await;
    // The first sends after the restart may still meet connections the crash broke; each gets a 503 at
    // most, and a client retrying with the same client_msg_id gets its message stored exactly once.
    for n in 5..10 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, v) = send(n).await;
            if status == 201 {
                break;
            }
            assert_eq!(status, 503, "{v}");
            assert!(Instant::now() < deadline, "send m{n} still refused: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        acknowledged.push(format!("m{n}"));
    }
    eprintln!(
        "sends acknowledged again {:?} after PostgreSQL restarted",
        healed.elapsed()
    );
    // Invariant 1: every acknowledged message is in the recipient's history exactly once, in seq order.
    let history = im
        .ok(
            200,
            "GET",
            &format!("{path}?after_seq=0&limit=100"),
            &bob,
            None,
        )
        .await;
    let messages = history["messages"].as_array().expect("messages");
    let contents: Vec<String> = messages
        .iter()
        .filter(|m| m["type"] == "text")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(contents, acknowledged, "{history}");
    let seqs: Vec<i64> = messages
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs {seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_broker_restart_loses_no_acknowledged_push() {
    let mut kafka = tokio::task::block_in_place(OwnKafka::start);
    let c = Cluster::start(ClusterSpec {
        comets: 1,
        jobs: 1,
        env: vec![("IMCLOUD_KAFKA_BROKERS".into(), kafka.brokers())],
        ..ClusterSpec::default()
    })
    .await;
    let mut client = c.client("comet1", 81, "kafka-restart", "").await;
    c.push_until_delivered(&mut client, "warm-up", Duration::from_secs(60))
        .await;

    // Pushes every 100 ms from before the broker dies until after it is back. Each one is either
    // acknowledged (200) or refused with a readable 503: never a 200 for a push that is then lost, and
    // never a hang (librdkafka alone would fail a push queued for a dead broker only 8 to 10 s in).
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let pusher = {
        let http = c.http.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut answers: Vec<(String, u16, Duration, Instant)> = Vec::new();
            let mut i = 0;
            loop {
                if stop_rx.try_recv().is_ok() {
                    return answers;
                }
                let body = format!("k{i}");
                let sent = Instant::now();
                let req = client
                    .post(format!("{http}/goim/push/mids?operation=1000&mids=81"))
                    .bearer_auth(API_KEY)
                    .body(body.clone())
                    .timeout(Duration::from_secs(30));
                let (status, v) = send_for_json(req, "/goim/push/mids").await;
                assert!(
                    status == 200
                        || (status == 503 && v["message"].as_str().is_some_and(|m| !m.is_empty())),
                    "push {body}: {status} {v}"
                );
                answers.push((body, status, sent.elapsed(), sent));
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    kafka.kill();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| kafka.restart());
    let back = Instant::now();
    // Long enough for every push sent while the broker was down to be answered and for the producer and
    // the consumer to have reconnected.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let _ = stop_tx.send(());
    let answers = pusher.await.expect("pusher");
    let acked: Vec<&(String, u16, Duration, Instant)> =
        answers.iter().filter(|a| a.1 == 200).collect();
    let refused = answers.len() - acked.len();
    let slowest = answers.iter().map(|a| a.2).max().unwrap_or_default();
    let slow: Vec<String> = answers
        .iter()
        .filter(|a| a.2 > Duration::from_secs(1))
        .map(|a| {
            format!(
                "{} {} after {:.2} s, sent {:.2} s after the kill",
                a.0,
                a.1,
                a.2.as_secs_f64(),
                a.3.saturating_duration_since(killed).as_secs_f64()
            )
        })
        .collect();
    // Refused at once, the push in flight at the kill included: librdkafka reports every broker down
    // and the producer stops waiting (a metadata probe takes at most 1 s).
    assert!(
        slowest < Duration::from_secs(3),
        "a push answered after {slowest:?}; the slow ones: {slow:#?}"
    );
    assert!(
        acked.iter().any(|a| a.3 > back),
        "no push sent after the broker's return was acknowledged"
    );
    // Every acknowledged push arrives (at least once).
    let want: Vec<String> = acked.iter().map(|a| a.0.clone()).collect();
    let mut seen = client.collect(&want, Duration::from_secs(60)).await;
    assert!(
        seen.missing(&want).is_empty() && seen.closed.is_none(),
        "acknowledged pushes never arrived: {:?} (closed {:?})",
        seen.missing(&want),
        seen.closed
    );
    for b in client.drain(Duration::from_millis(500)).await {
        *seen.counts.entry(b).or_default() += 1;
    }
    let duplicates = seen.duplicates();
    println!(
        "Kafka broker down {:.1} s (SIGKILL to started again): {} pushes, {} acknowledged and all \
         delivered, {refused} refused with 503, slowest answer {:.2} s, {duplicates} duplicates",
        (back - killed).as_secs_f64(),
        answers.len(),
        acked.len(),
        slowest.as_secs_f64()
    );
}
