//! The IM tier's per-user limits (`IMCLOUD_IM_*`; 0 turns one off). Each refusal is a 429
//! `rate_limited` with the seconds to wait (Retry-After over HTTP, `retry_after_secs` in the op 5
//! error) and is counted in `imcloud_im_rate_limited_total{limit}`.
//!
//! - Sends per second: a token bucket per user in memory (per logic node), refilled at the rate, as
//!   deep as one second of it (burst) and at least 1.
//! - Friend requests per day, groups created per day, uploads per hour and upload bytes per day:
//!   counted from the stores over a sliding window (the rows' `created_at`), so they hold across
//!   restarts and logic nodes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::error::ImError;

const SWEEP_AT: usize = 100_000;

/// Counts a refusal and builds its error.
pub fn refuse(limit: &'static str, message: String, retry_after_secs: u64) -> ImError {
    metrics::counter!("imcloud_im_rate_limited_total", "limit" => limit).increment(1);
    ImError::rate_limited(message, retry_after_secs)
}

/// Token buckets per key: `rate` tokens a second, holding at most `burst`.
pub struct Buckets {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<i64, (Instant, f64)>>,
}

impl Buckets {
    pub fn new(rate: u32) -> Buckets {
        Buckets {
            rate: rate as f64,
            burst: (rate as f64).max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`; `Err(seconds to wait)` when there is none (never with a rate of 0).
    pub fn take(&self, key: i64) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SWEEP_AT {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, (at, tokens)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (at, tokens) = map.entry(key).or_insert((now, self.burst));
        let refilled =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(((1.0 - refilled) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// Whether a sliding-window count is over its limit: `used` items so far, the oldest counted at
/// `oldest_ms`, a window of `window_ms`; `Err(seconds until the oldest leaves the window)`.
pub fn window_check(
    limit: i64,
    used: i64,
    oldest_ms: Option<i64>,
    window_ms: i64,
    now_ms: i64,
) -> Result<(), u64> {
    if limit <= 0 || used < limit {
        return Ok(());
    }
    let leaves = oldest_ms.unwrap_or(now_ms) + window_ms - now_ms;
    Err(((leaves.max(0) + 999) / 1000).max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_the_rate_and_refuse_beyond() {
        let b = Buckets::new(3);
        for _ in 0..3 {
            assert!(b.take(1).is_ok());
        }
        assert_eq!(b.take(1), Err(1));
        assert!(b.take(2).is_ok(), "each user has their own bucket");
        assert!(Buckets::new(0).take(1).is_ok(), "0 is off");
    }

    #[test]
    fn windows_count_and_tell_when_to_retry() {
        let day = 86_400_000;
        assert!(window_check(3, 2, Some(0), day, 10).is_ok());
        assert_eq!(window_check(3, 3, Some(0), day, day - 5_000), Err(5));
        assert!(window_check(0, 1_000, Some(0), day, 1).is_ok(), "0 is off");
    }
}
