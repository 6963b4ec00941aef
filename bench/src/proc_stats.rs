//! What the generator reads about a target process (and itself) from Linux's /proc: resident memory and
//! CPU time. Several processes (a cluster's roles) are summed.

use anyhow::{Context, Result};

/// Clock ticks per second in /proc/<pid>/stat (USER_HZ, 100 on Linux whatever the kernel's own HZ).
const TICKS_PER_SEC: f64 = 100.0;

/// Resident memory of a process, in KiB (VmRSS from /proc).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("no process {pid}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")
}

/// User plus system CPU time of a process (all its threads), in seconds. `None` = this process.
pub fn cpu_secs(pid: Option<u32>) -> Result<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_cpu_ticks(&stat)
        .map(|t| t as f64 / TICKS_PER_SEC)
        .with_context(|| format!("no CPU times in {path}"))
}

/// utime + stime (fields 14 and 15) of a /proc/<pid>/stat line; the command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last ')'.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state): utime is the 12th field of it, stime the 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Summed resident memory (KiB) of several processes.
pub fn rss_sum_kib(pids: &[u32]) -> Result<u64> {
    pids.iter().map(|&p| rss_kib(p)).sum()
}

/// Summed CPU seconds of several processes.
pub fn cpu_sum_secs(pids: &[u32]) -> Result<f64> {
    pids.iter().map(|&p| cpu_secs(Some(p))).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_fields_are_counted_after_the_command_name() {
        let line =
            "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_cpu_ticks(line), Some(300));
        assert_eq!(parse_cpu_ticks("1 (x) S 1"), None);
    }

    #[test]
    fn reads_this_process() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        assert!(cpu_secs(None).unwrap() >= 0.0);
        assert!(rss_kib(u32::MAX).is_err());
    }
}
