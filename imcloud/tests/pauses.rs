//! SIGSTOP and SIGCONT of each role, one at a time, under pushes (issue 13's fault suite). A paused
//! process keeps its sockets open and answers nothing, so the others see neither an error nor a close:
//! only their own timeouts and the registry lease tell them. After each pause the invariants are checked:
//! (2) every persistent room message reaches its subscriber exactly once, in order (live, or recovered
//! with op 23 after a reconnect); (3) every push acknowledged while its target stayed connected reaches it at least once (duplicates
//! counted), (4) etcd lists exactly the live nodes within a lease TTL, (5) the paused process's
//! descriptors, tasks and memory return to their level, and (6) the API answers with a readable 503, not
//! a hang, while a role it needs does not answer.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, ClusterSpec, Event};
use common::recovery;
use imcloud_proto::{Publication, op};

const ROOM: &str = "live://pause-room";

/// A persistent room push (numbered into the room's history, recoverable with op 23).
async fn push_persistent(c: &Cluster, body: &str) {
    let (status, v) = c
        .push(
            "room",
            "operation=1000&type=live&room=pause-room&persistent=true",
            body,
        )
        .await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_comet_loses_no_push_to_a_connection_it_keeps_and_the_other_comet_carries_on() {
    let ttl = 3;
    let c = Cluster::start(ClusterSpec {
        comets: 2,
        jobs: 1,
        lease_ttl_secs: ttl,
        ..ClusterSpec::default()
    })
    .await;
    let mut a = c.client("comet1", 81, "pause-a", "").await;
    let mut b = c.client("comet2", 82, "pause-b", "").await;
    c.push_until_delivered(&mut a, "warm-a", Duration::from_secs(60))
        .await;
    c.push_until_delivered(&mut b, "warm-b", Duration::from_secs(10))
        .await;
    // A subscriber of a persistent room on comet2, at a known position.
    let comet2_url = c.nodes["comet2"].ws_url.clone().expect("comet2");
    let mut r = recovery::ws_client(&comet2_url, 83).await;
    recovery::join(&mut r, ROOM, None).await;
    push_persistent(&c, "p-warm").await;
    let mut pos = recovery::publications(&mut r, ROOM, 1).await[0].0;
    let before = c.gauges("comet2").await;

    // Paused for twice the lease TTL: the registry and the job see comet2 go.
    c.signal("comet2", "STOP");
    let for_a = c
        .push_numbered(81, "a", 15, Duration::from_millis(200))
        .await;
    let for_b = c
        .push_numbered(82, "b", 15, Duration::from_millis(200))
        .await;
    let for_r: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    for body in &for_r {
        push_persistent(&c, body).await;
    }
    // One paused comet does not stop deliveries to the other.
    let seen_a = a.collect(&for_a, Duration::from_secs(10)).await;
    assert!(
        seen_a.missing(&for_a).is_empty() && seen_a.closed.is_none(),
        "comet1's client, during comet2's pause: missing {:?}, closed {:?}",
        seen_a.missing(&for_a),
        seen_a.closed
    );
    c.signal("comet2", "CONT");
    let resumed = Instant::now();

    // Invariant 3: a push acknowledged for b reaches it at least once while its connection stays open.
    // Pushes for a comet that left the registry are given up by job (docs/deployment.md), so a comet that
    // finds its registration lapsed closes its connections, and their clients reconnect and resync.
    let seen_b = b.collect(&for_b, Duration::from_secs(20)).await;
    let missing = seen_b.missing(&for_b);
    eprintln!(
        "comet2 resumed: its client got {} of {} pushes ({} duplicates), closed {:?} after {:?}",
        for_b.len() - missing.len(),
        for_b.len(),
        seen_b.duplicates(),
        seen_b.closed,
        resumed.elapsed()
    );
    assert!(
        missing.is_empty() || seen_b.closed.is_some(),
        "pushes {missing:?} were lost while the connection stayed open"
    );
    if seen_b.closed.is_some() {
        b = c.client("comet2", 82, "pause-b", "").await;
    }
    // Invariant 2: the room's subscriber gets every persistent message exactly once, in order: live if
    // its connection stayed, else by recovery from its last position, here on the other comet.
    let mut got = Vec::new();
    loop {
        match r.recv_timeout(Duration::from_secs(10)).await {
            Ok(f) if f.op == op::PUBLICATION => {
                let p = Publication::parse(&f.body).expect("op 25");
                pos = recovery::Pos {
                    epoch: p.epoch,
                    offset: p.offset,
                };
                got.push(String::from_utf8_lossy(&p.body).into_owned());
                if got.len() == for_r.len() {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let live = got.len();
    if got.len() < for_r.len() {
        let comet1_url = c.nodes["comet1"].ws_url.clone().expect("comet1");
        let mut r2 = recovery::ws_client(&comet1_url, 83).await;
        let answer = recovery::join(&mut r2, ROOM, Some(pos)).await;
        assert_eq!(answer["recovered"], true, "{answer}");
        let rest = recovery::publications(&mut r2, ROOM, for_r.len() - got.len()).await;
        got.extend(rest.into_iter().map(|(_, body)| body));
        recovery::nothing_more(&mut r2, Duration::from_millis(500)).await;
    }
    eprintln!(
        "the room's subscriber got {live} persistent messages live and {} by recovery",
        got.len() - live
    );
    assert_eq!(
        got, for_r,
        "every persistent message exactly once, in order"
    );
    // Invariant 4: back in the registry, and only the live nodes are.
    let took = c
        .wait_registry_lists_every_node(resumed, Duration::from_secs(ttl + 5))
        .await;
    eprintln!("etcd lists every live node {took:?} after SIGCONT");
    let took = c
        .push_until_delivered(&mut b, "after", Duration::from_secs(20))
        .await;
    eprintln!("a push reaches comet2's client {took:?} after its reconnect");
    c.assert_no_leak("comet2", before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_job_loses_no_push_its_partner_takes_over_and_it_rejoins() {
    let ttl = 3;
    let c = Cluster::start(ClusterSpec {
        comets: 1,
        jobs: 2,
        lease_ttl_secs: ttl,
        ..ClusterSpec::default()
    })
    .await;
    // Clients whose pushes land on every partition (the key decides it).
    let mut clients = Vec::new();
    for mid in 91..95 {
        clients.push(
            c.client("comet1", mid, &format!("job-pause-{mid}"), "")
                .await,
        );
    }
    for cl in &mut clients {
        c.push_until_delivered(cl, "warm", Duration::from_secs(60))
            .await;
    }
    let before = c.gauges("job1").await;

    // Paused for longer than the Kafka session timeout (6 s) and the lease TTL.
    c.signal("job1", "STOP");
    let paused = Instant::now();
    let mut sent = Vec::new();
    for round in 0..20 {
        for cl in &clients {
            sent.push(
                c.push_numbered(cl.mid, &format!("{}-{round}-", cl.mid), 1, Duration::ZERO)
                    .await,
            );
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Every push is delivered (after job2 takes job1's partitions), while job1 is still stopped.
    let mut duplicates = 0;
    for (i, cl) in clients.iter_mut().enumerate() {
        let wanted: Vec<String> = sent.iter().skip(i).step_by(4).flatten().cloned().collect();
        let seen = cl.collect(&wanted, Duration::from_secs(30)).await;
        assert!(
            seen.missing(&wanted).is_empty(),
            "mid {}: lost {:?} while job1 was paused (closed {:?})",
            cl.mid,
            seen.missing(&wanted),
            seen.closed
        );
        duplicates += seen.duplicates();
    }
    eprintln!(
        "every push delivered {:?} after job1's pause began, {duplicates} duplicates",
        paused.elapsed()
    );
    c.signal("job1", "CONT");
    let resumed = Instant::now();
    let took = c
        .wait_registry_lists_every_node(resumed, Duration::from_secs(ttl + 5))
        .await;
    eprintln!("etcd lists every live node {took:?} after SIGCONT");
    // It rejoins the group, and nothing is lost to a second rebalance.
    for cl in &mut clients {
        c.push_until_delivered(cl, "after", Duration::from_secs(30))
            .await;
    }
    c.assert_no_leak("job1", before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_logic_or_api_gets_clear_errors_and_every_connection_survives_it() {
    let c = Cluster::start(ClusterSpec {
        comets: 1,
        jobs: 1,
        // Heartbeats reach logic during the pause.
        heartbeat_secs: 2,
        ..ClusterSpec::default()
    })
    .await;
    let mut a = c.client("comet1", 101, "logic-pause", "pause-room").await;
    c.push_until_delivered(&mut a, "warm", Duration::from_secs(60))
        .await;
    let before = c.gauges("comet1").await;

    c.signal("logic", "STOP");
    // Invariant 6: the api answers with a readable 503 once its call to logic times out; not a hang,
    // not a silent 200.
    for path in ["mids", "room"] {
        let query = if path == "mids" {
            "operation=1000&mids=101"
        } else {
            "operation=1000&type=pause&room=room"
        };
        let started = Instant::now();
        let (status, v) = c.push(path, query, "during").await;
        let took = started.elapsed();
        eprintln!("push by {path} with logic paused: {status} in {took:?}: {v}");
        assert_eq!(status, 503, "{v}");
        assert!(
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("logic did not answer")),
            "{v}"
        );
        assert!(took < Duration::from_secs(15), "answered after {took:?}");
    }
    // Longer than three heartbeat intervals: the comet keeps the connection though logic does not answer.
    tokio::time::sleep(Duration::from_secs(4)).await;
    c.signal("logic", "CONT");
    let took = c
        .push_until_delivered(&mut a, "after logic", Duration::from_secs(20))
        .await;
    eprintln!("the connection kept through logic's pause got a push {took:?} after SIGCONT");

    c.signal("api", "STOP");
    tokio::time::sleep(Duration::from_secs(4)).await;
    c.signal("api", "CONT");
    let took = c
        .push_until_delivered(&mut a, "after api", Duration::from_secs(20))
        .await;
    eprintln!("pushes served {took:?} after the api's SIGCONT");
    if let Some(Event::Closed(why)) = a.next(Duration::from_millis(100)).await {
        panic!("the connection was closed: {why}");
    }
    c.assert_no_leak("comet1", before).await;
}
