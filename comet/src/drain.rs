//! A comet's drain on SIGTERM, so that a rolling update moves its clients without a reconnect storm:
//!
//! 1. readiness turns false and the listeners stop accepting (the caller, `lib.rs`);
//! 2. the registry entry is marked `draining`: no new client is sent here (`/goim/nodes/weighted`, other
//!    comets' hints), while job keeps delivering to the connections still open;
//! 3. every connection is sent a reconnect hint (op 22, [`ReconnectHint`]) and closed, at times spread
//!    evenly over the drain window with jitter (one slot per connection, a random point in each slot),
//!    so the other comets see about N / window reconnects per second, not N at once;
//! 4. connections that authenticated meanwhile are swept the same way; the caller then deregisters.
//!
//! Invariants: the window applies only while another, non-draining comet is registered (with none, there
//! is nowhere to go and connections are closed at once, still with a hint); each hint names one of those
//! comets chosen at random in proportion to its free weight (`weight / (connections + 1)`, the order of
//! the weighted node list), unless `IMCLOUD_DRAIN_HINT_URL` says otherwise; its delay is random in
//! `[0, IMCLOUD_DRAIN_HINT_DELAY_MS]`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use imcloud_common::registry::Registry;
use imcloud_common::{Config, NodeInfo, Role};
use imcloud_proto::ReconnectHint;
use rand::Rng;
use rand::seq::SliceRandom;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::channel::{Channel, Kick};
use crate::comet::Comet;
use crate::out_frame::OutFrame;
use crate::transport::{CloseReason, Transport};

/// The reason op 22 gives.
pub const HINT_REASON: &str = "draining";
/// How long connections that are still open after the spread are swept and waited for.
const SWEEP_FOR: Duration = Duration::from_secs(10);
const SWEEP_EVERY: Duration = Duration::from_millis(200);
/// Longest wait for the registry while planning the drain.
const REGISTRY_WAIT: Duration = Duration::from_secs(3);

/// Which URL a hint names (`IMCLOUD_DRAIN_HINT_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HintUrl {
    /// Another comet's advertised websocket address (`ws://host:port/sub`), from the registry.
    Registry,
    /// No URL: clients reconnect to the address they used (a load balancer, say).
    None,
    /// Always this URL.
    Fixed(String),
}

#[derive(Debug, Clone)]
pub struct DrainSettings {
    pub window: Duration,
    pub hint_delay: Duration,
    pub hint_url: HintUrl,
}

impl DrainSettings {
    pub fn from_config(cfg: &Config) -> DrainSettings {
        let hint_url = match cfg.drain_hint_url.trim() {
            "" => HintUrl::Registry,
            "none" => HintUrl::None,
            url => HintUrl::Fixed(url.to_string()),
        };
        DrainSettings {
            window: Duration::from_secs(cfg.drain_window_secs),
            hint_delay: Duration::from_millis(cfg.drain_hint_delay_ms),
            hint_url,
        }
    }
}

/// Where hints send clients: websocket URLs with their share of the new clients.
#[derive(Debug)]
struct Plan {
    targets: Vec<(String, f64)>,
    hint_delay_ms: u64,
}

/// Set once when the drain starts; connection tasks read it to write their hint.
#[derive(Debug, Default)]
pub struct DrainState {
    plan: OnceLock<Plan>,
}

impl DrainState {
    pub fn is_draining(&self) -> bool {
        self.plan.get().is_some()
    }

    /// A hint for one connection (`None` before the drain started).
    pub fn hint(&self) -> Option<ReconnectHint> {
        let plan = self.plan.get()?;
        let mut rng = rand::rng();
        let total: f64 = plan.targets.iter().map(|(_, w)| w).sum();
        let mut pick = rng.random::<f64>() * total;
        let url = plan
            .targets
            .iter()
            .find(|(_, w)| {
                pick -= w;
                pick <= 0.0
            })
            .or(plan.targets.last())
            .map(|(u, _)| u.clone());
        Some(ReconnectHint {
            reason: HINT_REASON.to_string(),
            delay_ms: rng.random_range(0..=plan.hint_delay_ms),
            url,
        })
    }

    fn start(&self, plan: Plan) {
        let _ = self.plan.set(plan);
    }
}

/// The comets clients may move to: registered, not draining, not `me`, with a websocket listener.
fn others(comets: Vec<NodeInfo>, me: &str) -> Vec<NodeInfo> {
    comets
        .into_iter()
        .filter(|c| c.id != me && !c.draining && !c.ws_addr.is_empty())
        .collect()
}

fn targets(others: &[NodeInfo], url: &HintUrl) -> Vec<(String, f64)> {
    match url {
        HintUrl::None => Vec::new(),
        HintUrl::Fixed(u) => vec![(u.clone(), 1.0)],
        HintUrl::Registry => others
            .iter()
            .map(|c| {
                let share = c.weight.max(1) as f64 / (c.connections as f64 + 1.0);
                (format!("ws://{}/sub", c.ws_addr), share)
            })
            .collect(),
    }
}

/// When the `i`-th of `n` connections is closed: a random point in its slot of the window.
fn due(start: Instant, window: Duration, i: usize, n: usize, jitter: f64) -> Instant {
    if n == 0 || window.is_zero() {
        return start;
    }
    start + window.mul_f64((i as f64 + jitter) / n as f64)
}

/// Runs steps 2 to 4 of the drain (see the module doc); returns when every connection task has ended
/// or [`SWEEP_FOR`] after the window.
pub async fn drain(
    comet: &Arc<Comet>,
    registry: &Arc<dyn Registry>,
    me: &NodeInfo,
    settings: &DrainSettings,
    tracker: &TaskTracker,
) {
    let comets = match tokio::time::timeout(REGISTRY_WAIT, registry.list(Role::Comet)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::warn!("drain: listing comets: {e}; hints name no comet");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!("drain: the registry did not answer; hints name no comet");
            Vec::new()
        }
    };
    let others = others(comets, &me.id);
    comet.drain.start(Plan {
        targets: targets(&others, &settings.hint_url),
        hint_delay_ms: settings.hint_delay.as_millis() as u64,
    });
    let mut entry = me.clone();
    entry.draining = true;
    entry.connections = comet.connection_count();
    if let Err(e) = tokio::time::timeout(REGISTRY_WAIT, registry.register(entry))
        .await
        .unwrap_or_else(|_| {
            Err(imcloud_common::registry::RegistryError::Unavailable(
                "no answer".into(),
            ))
        })
    {
        tracing::warn!("drain: marking this comet draining in the registry: {e}");
    }

    let window = if others.is_empty() {
        Duration::ZERO
    } else {
        settings.window
    };
    let mut channels: Vec<Arc<Channel>> =
        comet.buckets().iter().flat_map(|b| b.channels()).collect();
    channels.shuffle(&mut rand::rng());
    let n = channels.len();
    tracing::info!(
        connections = n,
        window_secs = window.as_secs_f64(),
        other_comets = others.len(),
        "draining: closing connections with a reconnect hint"
    );
    let start = Instant::now();
    for (i, ch) in channels.into_iter().enumerate() {
        let at = due(start, window, i, n, rand::rng().random::<f64>());
        if at > Instant::now() {
            tokio::time::sleep_until(at).await;
        }
        ch.kick(Kick::Drain);
    }
    // Connections that authenticated meanwhile, or did not end yet.
    let sweep_end = Instant::now() + SWEEP_FOR;
    while !tracker.is_empty() && Instant::now() < sweep_end {
        for b in comet.buckets() {
            for ch in b.channels() {
                ch.kick(Kick::Drain);
            }
        }
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}

/// The end of a connection that drains (or meets the hard stop): what is queued, then the hint (once the
/// drain has started), then the close.
pub fn leave<T: Transport>(comet: &Comet, t: &mut T, ch: &Channel) -> CloseReason {
    // Queued for the transport, which writes it all before its close frame (`Transport::close`).
    while let Some(f) = ch.outbox.try_pop() {
        t.feed(&f);
    }
    if let Some(hint) = comet.drain.hint() {
        metrics::counter!("imcloud_comet_reconnect_hints_total").increment(1);
        t.feed(&OutFrame::frame(&hint.to_frame()));
    }
    CloseReason::Shutdown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comet(id: &str, conns: u64, draining: bool) -> NodeInfo {
        let mut n = NodeInfo::new(Role::Comet, id);
        n.ws_addr = format!("10.0.0.{}:3102", id.len());
        n.connections = conns;
        n.draining = draining;
        n
    }

    #[test]
    fn closes_spread_evenly_over_the_window() {
        let start = Instant::now();
        let w = Duration::from_secs(30);
        let times: Vec<Duration> = (0..300)
            .map(|i| due(start, w, i, 300, 0.5) - start)
            .collect();
        assert!(times.windows(2).all(|p| p[0] < p[1]), "in order");
        assert!(times[0] < Duration::from_millis(100));
        assert!(times[299] < w && times[299] > Duration::from_millis(29_800));
        // Per second of the window, ten closes.
        let in_first_second = times
            .iter()
            .filter(|t| **t < Duration::from_secs(1))
            .count();
        assert_eq!(in_first_second, 10);
        assert_eq!(due(start, Duration::ZERO, 5, 10, 0.9), start);
    }

    #[test]
    fn hints_name_live_comets_other_than_me_by_free_weight() {
        let others = others(
            vec![
                comet("me", 10, false),
                comet("a", 0, false),
                comet("bb", 0, true),
            ],
            "me",
        );
        assert_eq!(others.len(), 1, "not me, not a draining comet");
        let state = DrainState::default();
        assert!(state.hint().is_none(), "no hint before the drain");
        state.start(Plan {
            targets: targets(&others, &HintUrl::Registry),
            hint_delay_ms: 500,
        });
        for _ in 0..50 {
            let h = state.hint().unwrap();
            assert_eq!(h.url.as_deref(), Some("ws://10.0.0.1:3102/sub"));
            assert!(h.delay_ms <= 500);
            assert_eq!(h.reason, "draining");
        }
        assert!(targets(&others, &HintUrl::None).is_empty());
        let none = DrainState::default();
        none.start(Plan {
            targets: Vec::new(),
            hint_delay_ms: 0,
        });
        assert_eq!(none.hint().unwrap().url, None);
    }

    #[test]
    fn the_least_loaded_comet_gets_most_clients() {
        let state = DrainState::default();
        state.start(Plan {
            targets: targets(
                &[comet("a", 0, false), comet("bb", 99, false)],
                &HintUrl::Registry,
            ),
            hint_delay_ms: 0,
        });
        let to_a = (0..1000)
            .filter(|_| state.hint().unwrap().url.as_deref() == Some("ws://10.0.0.1:3102/sub"))
            .count();
        assert!(to_a > 900, "{to_a} of 1000 to the empty comet");
    }
}
