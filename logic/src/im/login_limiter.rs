//! Failed-login limits in fixed one-minute windows, in memory (per logic node; a client spread over
//! N nodes gets at most N times the limit). Failures are counted per (email, client address) pair,
//! so someone else's wrong guesses for an email never lock its owner out: only the pair that failed
//! is refused. A client address is also capped over all the emails it tries (five times the pair
//! limit, for several accounts behind one NAT), which stops one source from spraying many accounts.
//!
//! Invariant: a refusal names only the pair or the address that failed, never an email alone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::ImError;

const WINDOW: Duration = Duration::from_secs(60);
/// A client address may fail this many times the per-pair limit, over every email it tries.
const CLIENT_FACTOR: u32 = 5;
/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 10_000;

pub struct LoginLimiter {
    per_minute: u32,
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl LoginLimiter {
    pub fn new(per_minute: u32) -> LoginLimiter {
        LoginLimiter {
            per_minute: per_minute.max(1),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(email: &str, client: &str) -> [(String, u32); 2] {
        [
            (format!("pair:{client}\u{0}{email}"), 1),
            (format!("client:{client}"), CLIENT_FACTOR),
        ]
    }

    /// Refuses a login attempt when this (email, client) pair, or this client over all emails, failed
    /// too often in the last minute.
    pub fn check(&self, email: &str, client: &str) -> Result<(), ImError> {
        let now = Instant::now();
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for (key, factor) in Self::keys(email, client) {
            if let Some((start, n)) = map.get(&key)
                && now.duration_since(*start) < WINDOW
                && *n >= self.per_minute * factor
            {
                let wait = WINDOW.saturating_sub(now.duration_since(*start)).as_secs() + 1;
                metrics::counter!("imcloud_im_rate_limited_total", "limit" => "login").increment(1);
                return Err(ImError::rate_limited(
                    format!("too many failed logins from this address; try again in {wait} s"),
                    wait,
                ));
            }
        }
        Ok(())
    }

    pub fn failed(&self, email: &str, client: &str) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SWEEP_AT {
            map.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        for (key, _) in Self::keys(email, client) {
            let e = map.entry(key).or_insert((now, 0));
            if now.duration_since(e.0) >= WINDOW {
                *e = (now, 0);
            }
            e.1 += 1;
        }
    }

    /// A success clears the pair's count (not the address's).
    pub fn succeeded(&self, email: &str, client: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&Self::keys(email, client)[0].0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lock_only_the_pair() {
        let l = LoginLimiter::new(3);
        for _ in 0..3 {
            assert!(l.check("a@x", "6.6.6.6").is_ok());
            l.failed("a@x", "6.6.6.6");
        }
        let e = l.check("a@x", "6.6.6.6").unwrap_err();
        assert_eq!((e.status, e.code), (429, "rate_limited"));
        assert!(e.retry_after_secs.is_some_and(|s| (1..=61).contains(&s)));
        // The owner, from their own address, still gets in: the attacker's guesses do not lock them out.
        assert!(l.check("a@x", "1.1.1.1").is_ok());
        // Another account from the attacker's address is still allowed, until the address's own cap.
        assert!(l.check("b@x", "6.6.6.6").is_ok());
        l.succeeded("a@x", "1.1.1.1");
        assert!(
            l.check("a@x", "6.6.6.6").is_err(),
            "someone else's success does not clear the pair"
        );
    }

    #[test]
    fn one_address_cannot_spray_many_accounts() {
        let l = LoginLimiter::new(2);
        for i in 0..10 {
            let email = format!("u{i}@x");
            assert!(l.check(&email, "6.6.6.6").is_ok(), "{i}");
            l.failed(&email, "6.6.6.6");
        }
        assert!(l.check("fresh@x", "6.6.6.6").is_err());
        assert!(l.check("fresh@x", "7.7.7.7").is_ok());
    }
}
