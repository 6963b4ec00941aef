//! A reader that stops reading costs the comet a bounded number of bytes: its outbox is bounded in bytes
//! (`IMCLOUD_CONN_QUEUE_BYTES`), it is closed as a slow consumer once that is full, and the readers that
//! keep up lose nothing (the MEDIUM finding of issue 16: the bound used to count frames, so one such
//! reader held +229 MiB in a room flooded with 60 kB pushes).

mod common;

use std::time::Duration;

use common::*;
use imcloud::client::{ClientError, GoimClient};

const PUSHES: usize = 2000;
const BODY: usize = 60_000;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Reads room messages until `n` have arrived; returns their first bytes (the push number).
async fn read_all(mut c: GoimClient, n: usize) -> Vec<u32> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let f = next_msg(&mut c).await;
        assert_eq!((f.op, f.body.len()), (1000, BODY));
        got.push(u32::from_be_bytes([
            f.body[0], f.body[1], f.body[2], f.body[3],
        ]));
    }
    got
}

#[tokio::test]
async fn a_reader_that_never_reads_is_bounded_in_bytes_and_closed() {
    let s = Standalone::start_with(&[("IMCLOUD_CONN_QUEUE_BYTES", "1048576")]).await;
    let fast: Vec<GoimClient> = vec![
        s.ws(1, "", "live://flood", &[]).await,
        s.tcp(2, "", "live://flood").await,
    ];
    // Authenticated, in the room, and from now on never read from.
    let mut stalled = s.ws(3, "stalled", "live://flood", &[]).await;
    s.wait_online(3).await;
    let before = rss_kib(s.pid());

    let readers: Vec<_> = fast
        .into_iter()
        .map(|c| tokio::spawn(read_all(c, PUSHES)))
        .collect();
    for i in 0..PUSHES {
        let mut body = vec![b'x'; BODY];
        body[..4].copy_from_slice(&(i as u32).to_be_bytes());
        let (status, v) = s
            .push("room", "operation=1000&type=live&room=flood", body)
            .await;
        assert_eq!(status, 200, "push {i}: {v}");
    }
    let want: Vec<u32> = (0..PUSHES as u32).collect();
    for r in readers {
        let got = tokio::time::timeout(Duration::from_secs(120), r)
            .await
            .expect("the fast readers keep up")
            .expect("reader task");
        assert_eq!(
            got, want,
            "every push once, in order, to the readers that read"
        );
    }
    let after = rss_kib(s.pid());
    let grew_mib = after.saturating_sub(before) as f64 / 1024.0;
    let pushed_mib = (PUSHES * BODY) as f64 / (1024.0 * 1024.0);
    println!(
        "{PUSHES} pushes of {BODY} B ({pushed_mib:.0} MiB) into a room with one reader that never reads: \
         the process grew {grew_mib:.1} MiB (RSS {before} -> {after} KiB)"
    );
    // Holding everything for the stalled reader would be over 100 MiB (the kernel's socket buffers take
    // a few MiB of it); its bound is 1 MiB plus one room batch.
    assert!(
        grew_mib < 48.0,
        "grew {grew_mib:.1} MiB for {pushed_mib:.0} MiB pushed"
    );

    // The stalled reader gets what its socket and outbox held, then the connection ends: with the
    // slow-consumer close when that got through in time, else without it (its pipe was full).
    let mut delivered = 0usize;
    let end = loop {
        match stalled.recv_timeout(WAIT).await {
            Ok(f) if f.op == 1000 => delivered += 1,
            Ok(_) => {}
            Err(ClientError::Timeout) => panic!("still open after {delivered} messages"),
            Err(e) => break e.to_string(),
        }
    };
    println!("the stalled reader got {delivered} messages, then: {end}");
    assert!(delivered < PUSHES, "it was closed, not fed everything");
    let metrics = s.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("imcloud_comet_closed_total{") && l.contains("slow_consumer")),
        "the close is counted as slow_consumer:\n{metrics}"
    );
}
