//! What every accept loop does when `accept()` fails (typically out of file descriptors, `EMFILE`):
//! wait, doubling from 5 ms up to 1 s while the failures go on, instead of spinning; and log at most one
//! line per 5 s per listener, with the number of failures since the last line. Each failure is counted in
//! `imcloud_accept_errors_total{listener}`.

use std::time::{Duration, Instant};

const FIRST_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(5);

/// The back-off state of one accept loop.
#[derive(Debug)]
pub struct AcceptBackoff {
    listener: &'static str,
    delay: Duration,
    unlogged: u64,
    last_log: Option<Instant>,
}

impl AcceptBackoff {
    pub fn new(listener: &'static str) -> AcceptBackoff {
        AcceptBackoff {
            listener,
            delay: FIRST_DELAY,
            unlogged: 0,
            last_log: None,
        }
    }

    /// Records a failed accept and waits before the next one.
    pub async fn failed(&mut self, e: &std::io::Error) {
        let wait = self.record(e);
        tokio::time::sleep(wait).await;
    }

    /// Counts and (at most every 5 s) logs a failure; returns how long to wait.
    fn record(&mut self, e: &std::io::Error) -> Duration {
        metrics::counter!("imcloud_accept_errors_total", "listener" => self.listener).increment(1);
        self.unlogged += 1;
        if self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                listener = self.listener,
                failures = self.unlogged,
                "accept failed: {e}; backing off {:?}",
                self.delay
            );
            self.unlogged = 0;
            self.last_log = Some(Instant::now());
        }
        let wait = self.delay;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        wait
    }

    /// Records a successful accept: the next failure starts the back-off again from the shortest wait.
    pub fn succeeded(&mut self) {
        self.delay = FIRST_DELAY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_and_success_resets() {
        let mut b = AcceptBackoff::new("test");
        let e = std::io::Error::other("EMFILE");
        let waits: Vec<Duration> = (0..12).map(|_| b.record(&e)).collect();
        assert_eq!(waits[0], FIRST_DELAY);
        assert_eq!(waits[1], FIRST_DELAY * 2);
        assert_eq!(*waits.last().unwrap(), MAX_DELAY);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        b.succeeded();
        assert_eq!(b.delay, FIRST_DELAY);
    }
}
