//! Typing indicators: ephemeral (never stored), pushed to the conversation's other participants, and
//! throttled per (user, conversation) to one per `IMCLOUD_IM_TYPING_INTERVAL_MS`; a call within the
//! interval is answered `{"sent": false}` and pushes nothing (counted as `limit="typing"`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use imcloud_common::im::chat::TypingSent;
use imcloud_common::im::events::{LiveEvent, TypingEvent};
use imcloud_common::im::operations::Typing;

use super::{Caller, Done, Im, ImResult};

const SWEEP_AT: usize = 100_000;

pub struct TypingThrottle {
    interval: Duration,
    last: Mutex<HashMap<(i64, String), Instant>>,
}

impl TypingThrottle {
    pub fn new(interval_ms: u64) -> TypingThrottle {
        TypingThrottle {
            interval: Duration::from_millis(interval_ms),
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `user` may send a typing event to `cid` now (and records it).
    pub fn allow(&self, user: i64, cid: &str) -> bool {
        let now = Instant::now();
        let mut map = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SWEEP_AT {
            let interval = self.interval;
            map.retain(|_, at| now.duration_since(*at) < interval);
        }
        match map.get(&(user, cid.to_string())) {
            Some(at) if now.duration_since(*at) < self.interval => false,
            _ => {
                map.insert((user, cid.to_string()), now);
                true
            }
        }
    }
}

impl Im {
    pub(crate) async fn typing(&self, c: &Caller<'_>, r: Typing) -> ImResult<TypingSent> {
        let cid = r.path.cid;
        let recipients = self.postable(c.me, cid).await?;
        let cid_str = cid.to_string();
        if !self.typing_throttle.allow(c.me, &cid_str) {
            metrics::counter!("imcloud_im_rate_limited_total", "limit" => "typing").increment(1);
            return Ok(Done::ok(TypingSent { sent: false }));
        }
        let others: Vec<i64> = recipients.into_iter().filter(|u| *u != c.me).collect();
        Ok(Done::ok(TypingSent { sent: true }).event(
            others,
            LiveEvent::Typing(TypingEvent {
                conversation_id: cid_str,
                user_id: c.me,
                typing: r.body.typing,
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_is_throttled_per_user_and_conversation() {
        let t = TypingThrottle::new(60_000);
        assert!(t.allow(1, "u-1-2"));
        assert!(!t.allow(1, "u-1-2"));
        assert!(t.allow(1, "g-3"));
        assert!(t.allow(2, "u-1-2"));
    }
}
