//! The real binary on the real engines: standalone with etcd as its registry and Redis as its session store
//! (unique prefixes): every role registered with a lease, a mids push delivered over websocket and TCP,
//! sessions written back by the next heartbeat after the Redis keys are deleted, nothing left in etcd after
//! SIGTERM. Needs both engines (`IMCLOUD_TEST_ETCD_ENDPOINTS`, `IMCLOUD_TEST_REDIS_URL`).

mod common;

use std::time::{Duration, Instant};

use common::cluster::{etcd_endpoints, kafka_brokers, redis_url};
use common::*;
use imcloud_common::test_name::unique_test_name;
use imcloud_proto::op;

async fn etcd_entries(client: &mut etcd_client::Client, prefix: &str) -> Vec<(String, i64)> {
    let resp = client
        .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .expect("etcd get");
    resp.kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap_or_default().to_string(), kv.lease()))
        .collect()
}

async fn flush_redis(prefix: &str) -> usize {
    use redis::AsyncCommands;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    let keys: Vec<String> = conn.keys(format!("{prefix}*")).await.unwrap();
    if !keys.is_empty() {
        let _: () = conn.del(&keys).await.unwrap();
    }
    keys.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_on_etcd_and_redis_delivers_and_recovers_from_a_redis_flush() {
    let etcd_prefix = format!("/{}/nodes/", unique_test_name("imcloud-it"));
    let redis_prefix = format!("{}:", unique_test_name("imcloud-it"));
    let mut etcd = etcd_client::Client::connect([etcd_endpoints()], None)
        .await
        .unwrap_or_else(|e| panic!("etcd at {} is needed for this test: {e}", etcd_endpoints()));
    let mut s = Standalone::start_with(&[
        ("IMCLOUD_ETCD_ENDPOINTS", &etcd_endpoints()),
        ("IMCLOUD_ETCD_PREFIX", &etcd_prefix),
        ("IMCLOUD_REDIS_URL", &redis_url()),
        ("IMCLOUD_REDIS_PREFIX", &redis_prefix),
        ("IMCLOUD_HEARTBEAT_SECS", "1"),
        ("IMCLOUD_SESSION_TTL_SECS", "30"),
    ])
    .await;

    // Every role registers in etcd under the prefix, each with a lease (the api may answer a moment before
    // the last role has registered, so wait for all four).
    let deadline = Instant::now() + WAIT;
    loop {
        let entries = etcd_entries(&mut etcd, &etcd_prefix).await;
        let leased = |role: &str| {
            entries
                .iter()
                .any(|(k, lease)| k.starts_with(&format!("{etcd_prefix}{role}/")) && *lease != 0)
        };
        if ["comet", "logic", "job", "api"].into_iter().all(leased) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every role registered with a lease: {entries:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut a = s.ws(1, "engine-a", "", &[]).await;
    let mut b = s.tcp(2, "engine-b", "").await;
    let (status, v) = s.push("mids", "operation=1000&mids=1,2", "via redis").await;
    assert_eq!(
        (status, v["data"]["queued"].as_i64()),
        (200, Some(1)),
        "{v}"
    );
    expect_msg(&mut a, 1000, b"via redis").await;
    expect_msg(&mut b, 1000, b"via redis").await;

    // Redis loses every session (as after a restart without persistence) while the clients stay connected.
    assert!(
        flush_redis(&redis_prefix).await >= 4,
        "sessions were in Redis under the prefix"
    );
    let (_, v) = s.push("keys", "operation=1000&keys=engine-a", "lost").await;
    assert_eq!(
        v["data"]["queued"].as_i64(),
        Some(0),
        "no session, nothing queued: {v}"
    );
    // The next heartbeat writes the session back.
    tokio::time::sleep(Duration::from_millis(600)).await;
    a.send(op::HEARTBEAT, Vec::new()).await.unwrap();
    assert_eq!(a.recv_timeout(WAIT).await.unwrap().op, op::HEARTBEAT_REPLY);
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, v) = s.push("keys", "operation=1000&keys=engine-a", "back").await;
        if v["data"]["queued"].as_i64() == Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "session never came back after a heartbeat: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    expect_msg(&mut a, 1000, b"back").await;

    // A graceful stop deregisters every node at once.
    assert!(tokio::task::block_in_place(|| s.terminate()));
    let left = etcd_entries(&mut etcd, &etcd_prefix).await;
    assert!(
        left.is_empty(),
        "nodes still registered after shutdown: {left:?}"
    );
    flush_redis(&redis_prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_on_kafka_delivers_every_push_kind_through_the_topic() {
    let brokers = kafka_brokers();
    let topic = unique_test_name("imcloud-it");
    let s = Standalone::start_with(&[
        ("IMCLOUD_KAFKA_BROKERS", &brokers),
        ("IMCLOUD_KAFKA_TOPIC", &topic),
        ("IMCLOUD_KAFKA_GROUP", &topic),
        ("IMCLOUD_KAFKA_PARTITIONS", "2"),
        ("IMCLOUD_KAFKA_SESSION_TIMEOUT_MS", "6000"),
    ])
    .await;
    let mut a = s.ws(1, "kafka-a", "live://7", &[]).await;
    for (path, query, body) in [
        ("keys", "operation=1000&keys=kafka-a", "by key"),
        ("mids", "operation=1000&mids=1", "by mid"),
        ("room", "operation=1000&type=live&room=7", "by room"),
        ("all", "operation=1000", "to all"),
    ] {
        let (status, v) = s.push(path, query, body).await;
        assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");
        // The first push waits for the job to join its consumer group.
        let f = loop {
            let f = a
                .recv_timeout(Duration::from_secs(30))
                .await
                .unwrap_or_else(|e| panic!("{path} push through Kafka: {e}"));
            if f.op != op::HEARTBEAT_REPLY {
                break f;
            }
        };
        assert_eq!((f.op, &f.body[..]), (1000, body.as_bytes()));
    }
}
