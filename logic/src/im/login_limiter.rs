//! Failed-login rate limiting, per email and per client address, in fixed one-minute windows. Each logic
//! node counts its own failures (a client spread over N nodes gets at most N times the limit).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::ImError;

const WINDOW: Duration = Duration::from_secs(60);
/// A client address may fail this many times the per-email limit (several accounts behind one NAT).
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
            (format!("email:{email}"), 1),
            (format!("client:{client}"), CLIENT_FACTOR),
        ]
    }

    /// Refuses a login attempt when this email or client failed too often in the last minute.
    pub fn check(&self, email: &str, client: &str) -> Result<(), ImError> {
        let now = Instant::now();
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for (key, factor) in Self::keys(email, client) {
            if let Some((start, n)) = map.get(&key)
                && now.duration_since(*start) < WINDOW
                && *n >= self.per_minute * factor
            {
                let wait = WINDOW.saturating_sub(now.duration_since(*start)).as_secs() + 1;
                return Err(ImError::new(
                    429,
                    "rate_limited",
                    format!("too many failed logins; try again in {wait} s"),
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

    pub fn succeeded(&self, email: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&format!("email:{email}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_beyond_the_limit_are_refused() {
        let l = LoginLimiter::new(3);
        for _ in 0..3 {
            assert!(l.check("a@x", "1.1.1.1").is_ok());
            l.failed("a@x", "1.1.1.1");
        }
        assert_eq!(l.check("a@x", "1.1.1.1").unwrap_err().status, 429);
        // Another account from the same client is still allowed; a success clears the email's count.
        assert!(l.check("b@x", "1.1.1.1").is_ok());
        l.succeeded("a@x");
        assert!(l.check("a@x", "2.2.2.2").is_ok());
    }
}
