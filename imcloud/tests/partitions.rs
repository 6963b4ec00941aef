//! Network faults on one path at a time (issue 13's fault suite), made by the fault proxy of
//! `common/fault_proxy.rs`: a partition between a role and an engine (logic and Redis, a comet and etcd)
//! and between two roles (job and a comet, through the comet's advertised gRPC address), and a slow comet.
//! After each is healed: (3) every push acknowledged while its target stayed connected reaches it at least
//! once, in order; (4) etcd lists exactly the live nodes; (5) nothing leaks; (6) while the path is cut
//! the API answers with a readable 503 within seconds, and the comets keep their connections.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, ClusterSpec};
use common::fault_proxy::{Fault, FaultProxy};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut b = [0u8; 64];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 || s.write_all(&b[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn round_trip(s: &mut TcpStream, within: Duration) -> std::io::Result<Vec<u8>> {
    s.write_all(b"ping").await?;
    let mut b = [0u8; 4];
    tokio::time::timeout(within, s.read_exact(&mut b))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    Ok(b.to_vec())
}

#[tokio::test]
async fn the_fault_proxy_holds_bytes_in_a_partition_and_resets_on_demand() {
    let proxy = FaultProxy::start(&echo_server().await).await;
    let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
    assert_eq!(
        round_trip(&mut s, Duration::from_secs(5))
            .await
            .expect("pass"),
        b"ping"
    );

    proxy.set(Fault::Partition);
    let err = round_trip(&mut s, Duration::from_millis(300))
        .await
        .expect_err("held");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    proxy.set(Fault::None);
    // The held ping, then this one.
    let mut b = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b))
        .await
        .expect("the held bytes arrive after healing")
        .expect("read");
    assert_eq!(&b, b"ping");
    assert_eq!(
        round_trip(&mut s, Duration::from_secs(5))
            .await
            .expect("pass"),
        b"ping"
    );

    proxy.set(Fault::Reset);
    assert!(round_trip(&mut s, Duration::from_secs(5)).await.is_err());
    let mut fresh = TcpStream::connect(proxy.addr()).await.expect("accepted");
    assert!(
        round_trip(&mut fresh, Duration::from_secs(5))
            .await
            .is_err()
    );
}

fn redis_host_port() -> String {
    let url = std::env::var("IMCLOUD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    url.trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_between_logic_and_redis_fails_pushes_by_mid_within_seconds_and_heals() {
    let proxy = FaultProxy::start(&redis_host_port()).await;
    let url = format!("redis://{}/", proxy.addr());
    let prefix = format!(
        "{}:",
        imcloud_common::test_name::unique_test_name("imcloud-redis-cut")
    );
    let s = Standalone::start_with(&[
        ("IMCLOUD_REDIS_URL", &url),
        ("IMCLOUD_REDIS_PREFIX", &prefix),
        ("IMCLOUD_READINESS_CHECK_SECS", "1"),
        ("IMCLOUD_HEARTBEAT_SECS", "2"),
    ])
    .await;
    let mut c = s.ws(111, "", "live://cut", &[]).await;
    let (status, _) = s.push("mids", "operation=1000&mids=111", "before").await;
    assert_eq!(status, 200);
    expect_msg(&mut c, 1000, b"before").await;

    // Redis stops answering without closing anything: only timeouts can tell.
    proxy.set(Fault::Partition);
    let cut = Instant::now();
    let started = Instant::now();
    let (status, body) = s.push("mids", "operation=1000&mids=111", "during").await;
    let took = started.elapsed();
    eprintln!("push by mid with Redis partitioned: {status} in {took:?}: {body}");
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(took < Duration::from_secs(8), "answered after {took:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, report) = s.get("/readyz").await;
        if status == 503 {
            eprintln!("readyz 503 {:?} after the cut: {report}", cut.elapsed());
            assert_ne!(report["checks"]["sessions"], "ok", "{report}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {status}: {report}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The connection stays, and a room push (no session needed) still reaches it.
    let (status, body) = s
        .push("room", "operation=1000&type=live&room=cut", "room during")
        .await;
    assert_eq!(status, 200, "{body}");
    expect_msg(&mut c, 1000, b"room during").await;

    proxy.set(Fault::None);
    let healed = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        c.send(imcloud_proto::op::HEARTBEAT, bytes::Bytes::new())
            .await
            .expect("heartbeat");
        let (status, body) = s.push("mids", "operation=1000&mids=111", "after").await;
        assert!(status == 200 || status == 503, "{status} {body}");
        if status == 200 {
            let f = next_msg(&mut c).await;
            if f.op == 1000 && &f.body[..] == b"after" {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "pushes by mid never reached the connection after the partition healed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!(
        "pushes by mid delivered again {:?} after the partition healed",
        healed.elapsed()
    );
    let (status, _) = s.get("/readyz").await;
    assert!(status == 200 || status == 503);
}

/// comet2 listens for gRPC on a port of its own and advertises the proxy's, so job reaches it only through
/// the proxy (its clients, logic's calls from it and its etcd lease do not cross it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_partitioned_comet_holds_back_only_its_own_pushes_and_gets_them_all_after_healing()
 {
    let grpc = format!("127.0.0.1:{}", free_ports(1)[0]);
    let proxy = FaultProxy::start(&grpc).await;
    let c = Cluster::start(ClusterSpec {
        comets: 2,
        jobs: 1,
        node_env: vec![
            (
                "comet2".into(),
                "IMCLOUD_COMET_GRPC_ADDR".into(),
                grpc.clone(),
            ),
            (
                "comet2".into(),
                "IMCLOUD_GRPC_ADVERTISE_ADDR".into(),
                proxy.addr(),
            ),
        ],
        ..ClusterSpec::default()
    })
    .await;
    let mut a = c.client("comet1", 121, "slow-a", "").await;
    let mut b = c.client("comet2", 122, "slow-b", "").await;
    c.push_until_delivered(&mut a, "warm-a", Duration::from_secs(60))
        .await;
    c.push_until_delivered(&mut b, "warm-b", Duration::from_secs(10))
        .await;
    let before = c.gauges("comet2").await;

    for (fault, name) in [
        (Fault::Delay(Duration::from_millis(200)), "slow"),
        (Fault::Partition, "partitioned"),
    ] {
        proxy.set(fault);
        let started = Instant::now();
        // comet2's pushes first: they are ahead of comet1's in the queue.
        let for_b = c
            .push_numbered(122, &format!("{name}-b"), 10, Duration::from_millis(50))
            .await;
        let for_a = c
            .push_numbered(121, &format!("{name}-a"), 10, Duration::from_millis(50))
            .await;
        assert_eq!(
            (for_a.len(), for_b.len()),
            (10, 10),
            "every push is acknowledged"
        );
        // comet1's client gets its pushes while comet2's path is still faulty.
        let seen_a = a.collect(&for_a, Duration::from_secs(10)).await;
        assert!(
            seen_a.missing(&for_a).is_empty() && seen_a.in_order(&for_a),
            "{name} comet2: comet1's client missed {:?} or got them out of order {:?}",
            seen_a.missing(&for_a),
            seen_a.order
        );
        let a_done = started.elapsed();
        if fault == Fault::Partition {
            tokio::time::sleep(Duration::from_secs(3)).await;
            proxy.set(Fault::None);
        }
        let healed = Instant::now();
        let seen_b = b.collect(&for_b, Duration::from_secs(30)).await;
        eprintln!(
            "{name} comet2: comet1's 10 pushes delivered within {a_done:?}; comet2's {} of 10 {:?} after \
             healing, {} duplicates",
            for_b.len() - seen_b.missing(&for_b).len(),
            healed.elapsed(),
            seen_b.duplicates()
        );
        assert!(
            seen_b.missing(&for_b).is_empty() && seen_b.in_order(&for_b),
            "{name} comet2: its client missed {:?} or got them out of order {:?} (closed {:?})",
            seen_b.missing(&for_b),
            seen_b.order,
            seen_b.closed
        );
        proxy.set(Fault::None);
    }
    c.assert_no_leak("comet2", before).await;
}

/// comet2 reaches etcd only through the proxy: cut off, its lease expires and job gives up its pushes; when
/// it is back it finds its registration lapsed and closes its connections, so that no client stays
/// connected after missing a push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comet_cut_off_from_etcd_loses_no_push_to_a_connection_it_keeps() {
    let etcd = cluster::etcd_endpoints();
    let proxy = FaultProxy::start(etcd.split(',').next().unwrap_or_default()).await;
    let ttl = 3;
    let c = Cluster::start(ClusterSpec {
        comets: 2,
        jobs: 1,
        lease_ttl_secs: ttl,
        node_env: vec![(
            "comet2".into(),
            "IMCLOUD_ETCD_ENDPOINTS".into(),
            proxy.addr(),
        )],
        ..ClusterSpec::default()
    })
    .await;
    let mut b = c.client("comet2", 132, "etcd-cut-b", "").await;
    c.push_until_delivered(&mut b, "warm-b", Duration::from_secs(60))
        .await;

    proxy.set(Fault::Partition);
    // Past the lease TTL: job sees comet2 leave.
    let for_b = c
        .push_numbered(132, "cut-b", 20, Duration::from_millis(300))
        .await;
    proxy.set(Fault::None);
    let healed = Instant::now();
    let seen = b.collect(&for_b, Duration::from_secs(30)).await;
    let missing = seen.missing(&for_b);
    eprintln!(
        "comet2 back in touch with etcd: its client got {} of {} pushes, closed {:?} {:?} after healing",
        for_b.len() - missing.len(),
        for_b.len(),
        seen.closed,
        healed.elapsed()
    );
    assert!(
        missing.is_empty() || seen.closed.is_some(),
        "pushes {missing:?} were lost while the connection stayed open"
    );
    let took = c
        .wait_registry_lists_every_node(healed, Duration::from_secs(ttl + 10))
        .await;
    eprintln!("etcd lists every live node {took:?} after healing");
    let mut b = c.client("comet2", 132, "etcd-cut-b2", "").await;
    c.push_until_delivered(&mut b, "after", Duration::from_secs(20))
        .await;
}
