//! The core of the fan-out and push scenarios: publish numbered, timestamped messages on a schedule while
//! every subscriber records what it receives; then count deliveries, losses and duplicates, and merge the
//! latencies.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::task::JoinSet;

use crate::latency::Latencies;
use crate::payload;
use crate::publisher::Publisher;
use crate::subscriber::{Subscriber, Topic};

/// What to publish, and how fast.
pub struct Plan {
    pub messages: usize,
    pub payload: usize,
    /// Messages per second; 0 publishes flat out.
    pub rate: u64,
    /// Publish calls in flight at once (request/response APIs only).
    pub inflight: usize,
    /// Where message `i` goes: the fan-out room, or user `id_of(i)`.
    pub room: Option<String>,
    pub first_id: i64,
    pub users: usize,
    /// How long a subscriber waits for its next message before counting the rest as lost.
    pub patience: Duration,
    /// Messages per latency window (0 = none): `Outcome::windows` has one histogram per window, in
    /// publish order.
    pub window: usize,
}

impl Plan {
    fn id_of(&self, i: usize) -> i64 {
        self.first_id + (i % self.users.max(1)) as i64
    }

    fn topic(&self) -> Topic<'_> {
        match &self.room {
            Some(name) => Topic::Room(name),
            None => Topic::User,
        }
    }

    /// Messages subscriber `k` (id `first_id + k`) should get.
    fn expected(&self, k: usize) -> usize {
        if self.room.is_some() {
            self.messages
        } else {
            let users = self.users.max(1);
            self.messages / users + usize::from(k < self.messages % users)
        }
    }
}

pub struct Outcome {
    pub expected: u64,
    pub delivered: u64,
    pub duplicates: u64,
    /// From the first publish to the last receipt.
    pub elapsed: Duration,
    /// From the first publish to the last accepted publish.
    pub publish_elapsed: Duration,
    /// Send to receipt.
    pub latency: Latencies,
    /// Send to receipt per window of `Plan::window` messages (empty without windows).
    pub windows: Vec<Latencies>,
    /// Duration of each publish call.
    pub call: Latencies,
    /// The first receiving error, if any subscriber failed (its missing messages count as lost).
    pub receive_error: Option<String>,
}

impl Outcome {
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }
}

/// What one subscriber received.
pub struct Receipt {
    pub delivered: u64,
    pub duplicates: u64,
    pub latency: Latencies,
    /// Per window of the plan (empty without windows).
    pub windows: Vec<Latencies>,
    pub last: Option<Instant>,
    pub error: Option<String>,
    /// Which sequence numbers arrived (a bit each), so that each message counts once.
    seen: Vec<u64>,
}

impl Receipt {
    /// An empty receipt for a run of `messages` numbered messages.
    pub fn new(messages: usize) -> Receipt {
        Receipt {
            delivered: 0,
            duplicates: 0,
            latency: Latencies::new(),
            windows: Vec::new(),
            last: None,
            error: None,
            seen: vec![0u64; messages.div_ceil(64)],
        }
    }

    /// Counts one received payload: a delivery (its latency recorded) the first time its sequence number
    /// arrives, a duplicate after that. Returns the new delivery's sequence number and age in
    /// microseconds; `None` for a duplicate or a payload that is not one of the run's messages.
    pub fn count(&mut self, msg: &[u8]) -> Option<(u64, u64)> {
        let (seq, age) = payload::decode(msg)?;
        let word = self.seen.get_mut(seq as usize / 64)?;
        let bit = 1u64 << (seq % 64);
        if *word & bit != 0 {
            self.duplicates += 1;
            return None;
        }
        *word |= bit;
        self.delivered += 1;
        self.latency.record(age);
        self.last = Some(Instant::now());
        Some((seq, age))
    }
}

pub async fn run(subs: Vec<Subscriber>, publisher: Publisher, plan: Plan) -> Result<Outcome> {
    let plan = Arc::new(plan);
    let mut receivers = JoinSet::new();
    let mut expected = 0u64;
    for (k, sub) in subs.into_iter().enumerate() {
        let want = plan.expected(k);
        expected += want as u64;
        receivers.spawn(receive(sub, want, plan.clone()));
    }

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut publishers = vec![publisher];
    if publishers[0].can_clone() {
        for _ in 1..plan.inflight.max(1) {
            if let Some(p) = publishers[0].try_clone() {
                publishers.push(p);
            }
        }
    }
    let mut senders = JoinSet::new();
    for mut publisher in publishers {
        let (plan, next) = (plan.clone(), next.clone());
        senders.spawn(async move {
            let mut call = Latencies::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.messages {
                    return Ok::<_, anyhow::Error>(call);
                }
                if plan.rate > 0 {
                    let due = started + Duration::from_secs_f64(i as f64 / plan.rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let t = Instant::now();
                publisher
                    .publish(
                        plan.topic(),
                        plan.id_of(i),
                        payload::encode(i as u64, plan.payload),
                    )
                    .await
                    .with_context(|| format!("publishing message {i}"))?;
                call.record(t.elapsed().as_micros() as u64);
            }
        });
    }
    let mut call = Latencies::new();
    while let Some(done) = senders.join_next().await {
        call.merge(&done??);
    }
    let publish_elapsed = started.elapsed();

    let mut out = Outcome {
        expected,
        delivered: 0,
        duplicates: 0,
        elapsed: Duration::ZERO,
        publish_elapsed,
        latency: Latencies::new(),
        windows: (0..window_count(&plan)).map(|_| Latencies::new()).collect(),
        call,
        receive_error: None,
    };
    let mut last = started;
    while let Some(r) = receivers.join_next().await {
        let r = r?;
        out.delivered += r.delivered;
        out.duplicates += r.duplicates;
        out.latency.merge(&r.latency);
        for (all, mine) in out.windows.iter_mut().zip(&r.windows) {
            all.merge(mine);
        }
        last = last.max(r.last.unwrap_or(started));
        if out.receive_error.is_none() {
            out.receive_error = r.error;
        }
    }
    out.elapsed = last - started;
    Ok(out)
}

/// Windows of `plan.window` messages over the run.
fn window_count(plan: &Plan) -> usize {
    match plan.window {
        0 => 0,
        w => plan.messages.div_ceil(w),
    }
}

/// Reads until `want` distinct messages (of sequence numbers below `plan.messages`) arrived, or none came
/// for `plan.patience`.
async fn receive(mut sub: Subscriber, want: usize, plan: Arc<Plan>) -> Receipt {
    // Histograms for the windows this subscriber hears from are made as they are needed.
    let mut r = Receipt::new(plan.messages);
    while (r.delivered as usize) < want {
        let msg = match tokio::time::timeout(plan.patience, sub.next_payload()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                r.error = Some(format!("{e:#}"));
                break;
            }
            Err(_) => break,
        };
        let Some((seq, age)) = r.count(&msg) else {
            continue;
        };
        if let Some(k) = (seq as usize).checked_div(plan.window) {
            if r.windows.len() <= k {
                r.windows.resize_with(k + 1, Latencies::new);
            }
            r.windows[k].record(age);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(room: Option<&str>, messages: usize, users: usize) -> Plan {
        Plan {
            messages,
            payload: 16,
            rate: 0,
            inflight: 1,
            room: room.map(str::to_string),
            first_id: 100,
            users,
            patience: Duration::from_secs(1),
            window: 0,
        }
    }

    #[test]
    fn pushes_spread_round_robin_over_users() {
        let p = plan(None, 10, 4);
        let per_user: Vec<usize> = (0..4).map(|k| p.expected(k)).collect();
        assert_eq!(per_user, vec![3, 3, 2, 2]);
        assert_eq!(per_user.iter().sum::<usize>(), 10);
        assert_eq!(p.id_of(5), 101);
    }

    #[test]
    fn every_room_subscriber_expects_every_message() {
        let p = plan(Some("fanout"), 10, 4);
        assert!((0..4).all(|k| p.expected(k) == 10));
    }

    #[test]
    fn windows_cover_the_run_and_the_last_one_may_be_short() {
        let mut p = plan(None, 25_000, 4);
        assert_eq!(window_count(&p), 0, "no windows unless asked");
        p.window = 10_000;
        assert_eq!(window_count(&p), 3);
        p.window = 5_000;
        assert_eq!(window_count(&p), 5);
    }
}
