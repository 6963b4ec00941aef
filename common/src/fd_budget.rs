//! File descriptors: a client connection may only be held while a permit of its listener group's
//! [`ConnectionCap`] is held, and the caps together stay below the process's descriptor limit minus a
//! reserve (`IMCLOUD_FD_RESERVE`). So a flood of connections on one listener can neither take the
//! descriptors that another listener, the internal gRPC connections, the database or the log files need,
//! nor push `accept()` into `EMFILE`.
//!
//! At start [`raise_limit`] lifts the soft `RLIMIT_NOFILE` to the hard limit. A connection over its cap is
//! accepted and closed at once (that frees the kernel's backlog too), counted in
//! `imcloud_connections_refused_total{listener, reason="cap"}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Raises the soft open-files limit to the hard one; returns the resulting soft limit.
pub fn raise_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if let Some(hard) = lim.maximum
        && lim.current.is_some_and(|soft| soft < hard)
    {
        lim.current = Some(hard);
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::debug!("raising RLIMIT_NOFILE: {e}");
        }
    }
    descriptor_limit()
}

/// The soft open-files limit of this process (`u64::MAX` when unlimited).
pub fn descriptor_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

/// Descriptors this process may spend on client connections: the limit minus `reserve`, at least 16.
pub fn client_budget(reserve: u64) -> usize {
    let budget = descriptor_limit().saturating_sub(reserve).max(16);
    usize::try_from(budget).unwrap_or(usize::MAX)
}

/// The most connections a listener group may hold at once.
#[derive(Debug)]
pub struct ConnectionCap {
    name: &'static str,
    max: usize,
    used: AtomicUsize,
}

/// Held for as long as its connection is open.
#[derive(Debug)]
pub struct ConnectionPermit(Arc<ConnectionCap>);

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionCap {
    pub fn new(name: &'static str, max: usize) -> Arc<ConnectionCap> {
        Arc::new(ConnectionCap {
            name,
            max: max.max(1),
            used: AtomicUsize::new(0),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// A permit, or `None` (counted) when the cap is reached.
    pub fn try_take(self: &Arc<Self>) -> Option<ConnectionPermit> {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            if used >= self.max {
                metrics::counter!("imcloud_connections_refused_total", "listener" => self.name, "reason" => "cap")
                    .increment(1);
                return None;
            }
            match self.used.compare_exchange_weak(
                used,
                used + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(ConnectionPermit(self.clone())),
                Err(now) => used = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_bounded_and_returned() {
        let cap = ConnectionCap::new("test", 2);
        let a = cap.try_take().unwrap();
        let _b = cap.try_take().unwrap();
        assert!(cap.try_take().is_none());
        drop(a);
        assert_eq!(cap.in_use(), 1);
        assert!(cap.try_take().is_some());
    }

    #[test]
    fn the_budget_leaves_the_reserve() {
        let limit = raise_limit();
        assert!(limit >= descriptor_limit());
        if limit < 1_000_000 {
            assert_eq!(client_budget(100) as u64, (limit - 100).max(16));
        }
        assert_eq!(client_budget(u64::MAX), 16);
    }
}
