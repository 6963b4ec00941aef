//! Heartbeat deadlines, checked for all of a comet's connections by one task instead of a timer in each
//! connection's task (a tokio `Sleep` is 112 bytes of every idle connection's task; a deadline in the
//! channel is 8).
//!
//! A connection's deadline (`Channel::deadline_ms`, on the comet's clock `Comet::clock_ms`) is set at auth
//! to `heartbeat_secs × heartbeat_max_misses` ahead and moved on by every op 2. [`sweep_loop`] looks at
//! every channel once per [`period`] (an eighth of that deadline, from 100 ms to 1 s) and kicks those past
//! it with `Kick::HeartbeatTimeout`, so a silent connection is closed at most one period after its
//! deadline. A pass reads one atomic per connection under each bucket's read lock.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::channel::Kick;
use crate::comet::Comet;

/// How often the deadlines are checked, for a heartbeat deadline of `deadline`.
pub fn period(deadline: Duration) -> Duration {
    (deadline / 8).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Kicks every connection past its deadline; returns how many.
pub fn sweep(comet: &Comet) -> usize {
    let now = comet.clock_ms();
    let mut late = 0;
    for b in comet.buckets() {
        b.for_each_channel(|ch| {
            if ch.deadline_ms() < now {
                ch.kick(Kick::HeartbeatTimeout);
                late += 1;
            }
        });
    }
    late
}

/// Sweeps until `stop`.
pub async fn sweep_loop(comet: Arc<Comet>, stop: CancellationToken) {
    let every = period(Duration::from_millis(comet.heartbeat_deadline_ms()));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                sweep(&comet);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::channel::{Channel, ChannelState};
    use crate::comet::CometSettings;
    use crate::op_filter::OpFilter;

    fn comet() -> Comet {
        let settings = CometSettings {
            handshake_timeout: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_max_misses: 3,
            conn_queue_bytes: 1 << 20,
            outbox_budget_bytes: 1 << 30,
            max_client_body: 16,
            frames_per_sec: 1,
            max_rooms: 1,
        };
        Comet::for_tests(settings, 4)
    }

    fn channel(comet: &Comet, key: &str, deadline_ms: u64) -> Arc<Channel> {
        let state = ChannelState {
            filter: OpFilter::from_accepts(&[]),
            rooms: vec![],
            auth_room: None,
            positions: Vec::new(),
            recoveries: 0,
        };
        let ch = Arc::new(Channel::new(
            comet.next_conn_id(),
            1,
            key.into(),
            [127, 0, 0, 1].into(),
            comet.new_outbox(),
            state,
        ));
        ch.set_deadline_ms(deadline_ms);
        comet.bucket(key).put(ch.clone());
        ch
    }

    #[tokio::test]
    async fn a_sweep_kicks_only_the_connections_past_their_deadline() {
        let comet = comet();
        let now = comet.clock_ms();
        let late = channel(&comet, "late", now.saturating_sub(1));
        let on_time = channel(&comet, "on-time", now + comet.heartbeat_deadline_ms());
        // Past the deadline only once the clock has moved on from `now`.
        while comet.clock_ms() <= now {
            tokio::task::yield_now().await;
        }
        assert_eq!(sweep(&comet), 1);
        assert_eq!(late.kick_reason(), Kick::HeartbeatTimeout);
        assert_eq!(on_time.kick_reason(), Kick::None);
        on_time.set_deadline_ms(0);
        assert_eq!(
            sweep(&comet),
            2,
            "a kicked connection stays late until it leaves"
        );
        assert_eq!(on_time.kick_reason(), Kick::HeartbeatTimeout);
    }

    #[test]
    fn the_period_is_an_eighth_of_the_deadline_within_bounds() {
        assert_eq!(period(Duration::from_secs(90)), Duration::from_secs(1));
        assert_eq!(period(Duration::from_secs(2)), Duration::from_millis(250));
        assert_eq!(
            period(Duration::from_millis(200)),
            Duration::from_millis(100)
        );
    }
}
