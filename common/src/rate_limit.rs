//! Token buckets, as GCRA (the generic cell rate algorithm): `per_sec` events per second on average, in
//! bursts of at most `burst`. A bucket is one `u64` (the theoretical arrival time of the next event), so a
//! connection can carry its own for free and a keyed limiter is an array of atomics.
//!
//! [`KeyedLimiter`] limits by key (a client IP, an API key) in a fixed array of slots indexed by the key's
//! hash: its memory is fixed whatever the number of keys (no map to flood), and two keys sharing a slot
//! share a budget (with 16,384 slots, one key in 16,384 shares with a given other). IPv6 addresses are
//! keyed by their /64, which one subscriber usually holds whole.
//!
//! `Rate`, `Bucket` (one owner), `KeyedLimiter` (by key), `ip_key` (an address as its limiter key, IPv6 by
//! /64) and `retry_after_secs` (the `Retry-After` of a refusal).

use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A rate: `per_sec` events per second, bursts of `burst`. `per_sec == 0` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_sec: u32,
    pub burst: u32,
}

impl Rate {
    /// `per_sec` per second with bursts of twice that (at least 1); the shape every imcloud limit uses.
    pub fn per_sec(per_sec: u32) -> Rate {
        Rate {
            per_sec,
            burst: per_sec.saturating_mul(2).max(1),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.per_sec == 0
    }

    fn interval_ns(&self) -> u64 {
        1_000_000_000 / u64::from(self.per_sec.max(1))
    }

    fn tolerance_ns(&self) -> u64 {
        self.interval_ns() * u64::from(self.burst.max(1) - 1)
    }

    /// Checks one event at `now` against the arrival time `tat`: the new `tat`, or how long to wait.
    fn check(&self, tat: u64, now: u64) -> Result<u64, Duration> {
        let tat = tat.max(now);
        let tolerance = self.tolerance_ns();
        if tat - now > tolerance {
            return Err(Duration::from_nanos(tat - now - tolerance));
        }
        Ok(tat + self.interval_ns())
    }
}

/// One bucket with a single owner (a connection's task).
#[derive(Debug)]
pub struct Bucket {
    rate: Rate,
    epoch: Instant,
    tat: u64,
}

impl Bucket {
    pub fn new(rate: Rate) -> Bucket {
        Bucket {
            rate,
            epoch: Instant::now(),
            tat: 0,
        }
    }

    /// Takes one event; `Err(wait)` when over the rate.
    pub fn take(&mut self) -> Result<(), Duration> {
        if self.rate.is_unlimited() {
            return Ok(());
        }
        let now = self.epoch.elapsed().as_nanos() as u64;
        self.tat = self.rate.check(self.tat, now)?;
        Ok(())
    }
}

/// Slots of a [`KeyedLimiter`] by default.
pub const DEFAULT_SLOTS: usize = 16_384;

/// Buckets by key, shared between tasks (see the module notes).
#[derive(Debug)]
pub struct KeyedLimiter {
    rate: Rate,
    epoch: Instant,
    hasher: RandomState,
    slots: Box<[AtomicU64]>,
}

impl KeyedLimiter {
    /// `None` when the rate is unlimited.
    pub fn new(rate: Rate, slots: usize) -> Option<KeyedLimiter> {
        if rate.is_unlimited() {
            return None;
        }
        Some(KeyedLimiter {
            rate,
            epoch: Instant::now(),
            hasher: RandomState::new(),
            slots: (0..slots.max(1)).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes one event for `key`; `Err(wait)` when that key is over its rate.
    pub fn take(&self, key: impl Hash) -> Result<(), Duration> {
        let slot = &self.slots[(self.hasher.hash_one(key) as usize) % self.slots.len()];
        let now = self.epoch.elapsed().as_nanos() as u64;
        let mut tat = slot.load(Ordering::Relaxed);
        loop {
            let next = self.rate.check(tat, now)?;
            match slot.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }
}

/// The key an address is limited by: IPv4 as is, IPv6 by its /64 (IPv4-mapped IPv6 as IPv4).
pub fn ip_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => u128::from(v6) & !((1u128 << 64) - 1),
        },
    }
}

/// Whole seconds to tell a refused client to wait (`Retry-After`), at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_nanos().div_ceil(1_000_000_000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let rate = Rate {
            per_sec: 10,
            burst: 5,
        };
        // At a fixed instant: exactly `burst` events pass.
        let mut tat = 0;
        let now = 1_000_000_000;
        for _ in 0..5 {
            tat = rate.check(tat, now).unwrap();
        }
        let wait = rate.check(tat, now).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        // One interval later, one more passes.
        tat = rate.check(tat, now + 100_000_000).unwrap();
        assert!(rate.check(tat, now + 100_000_000).is_err());
        // After a long pause the full burst is back, no more.
        let later = now + 10_000_000_000;
        for _ in 0..5 {
            tat = rate.check(tat, later).unwrap();
        }
        assert!(rate.check(tat, later).is_err());
    }

    #[test]
    fn unlimited_rates_never_refuse() {
        assert!(KeyedLimiter::new(Rate::per_sec(0), 8).is_none());
        let mut b = Bucket::new(Rate::per_sec(0));
        assert!((0..10_000).all(|_| b.take().is_ok()));
    }

    #[test]
    fn keys_have_their_own_budgets() {
        let l = KeyedLimiter::new(
            Rate {
                per_sec: 1,
                burst: 3,
            },
            DEFAULT_SLOTS,
        )
        .unwrap();
        let a = ip_key("10.0.0.1".parse().unwrap());
        let b = ip_key("10.0.0.2".parse().unwrap());
        assert!((0..3).all(|_| l.take(a).is_ok()));
        assert!(l.take(a).is_err());
        assert!(l.take(b).is_ok(), "another key is not limited by the first");
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_prefix() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ip_key(mapped), ip_key("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
