//! Gauges of the process itself, for the leak checks of the fault suite and `scripts/soak`: resident
//! memory, open file descriptors and live tokio tasks, sampled every [`PERIOD`] into the metrics
//! recorder (so every `/metrics` of every role shows them):
//!
//! - `imcloud_process_resident_bytes`: resident set size (`VmRSS` of `/proc/self/status`, Linux only).
//! - `imcloud_process_open_fds`: entries of `/proc/self/fd` (Linux only).
//! - `imcloud_tokio_alive_tasks`: tasks spawned on the runtime and not yet finished.
//!
//! On a system without `/proc` the first two are simply not set.

use std::time::Duration;

/// How often the gauges are sampled: counting 20,000 descriptors takes about a millisecond.
pub const PERIOD: Duration = Duration::from_secs(2);

/// Samples the gauges every [`PERIOD`] until the runtime stops. Call inside the tokio runtime.
pub fn spawn() {
    let runtime = tokio::runtime::Handle::current();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            sample(&runtime);
        }
    });
}

fn sample(runtime: &tokio::runtime::Handle) {
    metrics::gauge!("imcloud_tokio_alive_tasks").set(runtime.metrics().num_alive_tasks() as f64);
    if let Some(bytes) = resident_bytes() {
        metrics::gauge!("imcloud_process_resident_bytes").set(bytes as f64);
    }
    if let Some(n) = open_fds() {
        metrics::gauge!("imcloud_process_open_fds").set(n as f64);
    }
}

/// Resident set size in bytes (`VmRSS` of `/proc/self/status`); `None` without `/proc`.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_memory_and_descriptors() {
        let rss = resident_bytes().expect("/proc/self/status on Linux");
        assert!(
            rss > 1024 * 1024,
            "a test binary holds more than 1 MiB: {rss}"
        );
        // Other tests of this binary open and close descriptors meanwhile: count many, allow a few.
        let before = open_fds().expect("/proc/self/fd on Linux");
        let files: Vec<std::fs::File> = (0..64)
            .map(|_| std::fs::File::open("/proc/self/status").expect("open"))
            .collect();
        let during = open_fds().expect("/proc/self/fd");
        assert!(
            (56..=72).contains(&(during as i64 - before as i64)),
            "{before} descriptors, then {during} with 64 more open"
        );
        drop(files);
        let after = open_fds().expect("/proc/self/fd");
        assert!(
            (during as i64 - after as i64) >= 56,
            "{during} descriptors with 64 files open, {after} after closing them"
        );
    }

    #[tokio::test]
    async fn counts_live_tasks() {
        let runtime = tokio::runtime::Handle::current();
        let before = runtime.metrics().num_alive_tasks();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = rx.await;
        });
        assert_eq!(runtime.metrics().num_alive_tasks(), before + 1);
        drop(tx);
        task.await.expect("task");
        assert_eq!(runtime.metrics().num_alive_tasks(), before);
    }
}
