//! Names for the resources a test creates in a shared engine (PostgreSQL databases, Redis key prefixes,
//! etcd prefixes, Kafka topics), so that concurrent tests and test runs never touch each other's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// `{tag}-{pid}-{nanos}-{n}`: the process id keeps runs apart, the clock keeps a process apart from
/// an earlier one with the same id, and the counter keeps apart two tests of one process that read
/// the same clock value.
pub fn unique_test_name(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{tag}-{}-{nanos}-{n}", std::process::id())
}
