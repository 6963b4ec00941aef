//! Readiness of a role, as `/readyz` reports it: ready once the role serves, while every engine it cannot
//! work without answers its last check, and until the role starts to drain.
//!
//! [`Readiness::drain_on`] is the drain logic and api share: at SIGTERM not ready and deregistered, then
//! serving on for `IMCLOUD_DRAIN_DELAY_MS` (while load balancers and peers stop choosing the node), then
//! the caller stops taking calls.
//!
//! Invariants: checks run in the background every `every` (each bounded by [`CHECK_TIMEOUT`]), so a probe
//! never waits on an engine; a role is never ready before [`Readiness::set_serving`] nor after
//! [`Readiness::set_draining`] (draining is one-way); the gauge `imcloud_ready` mirrors [`Readiness::ready`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::node::Role;
use crate::registry::Registry;

/// Longest one engine check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type CheckFn = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

struct Check {
    name: &'static str,
    run: CheckFn,
    /// The last result; `None` until the first check ended.
    last: Option<Result<(), String>>,
}

#[derive(Default)]
struct Inner {
    serving: AtomicBool,
    draining: AtomicBool,
    checks: Mutex<Vec<Check>>,
}

/// Shared by a role and its `/readyz` handler. Cloning shares the state.
#[derive(Clone, Default)]
pub struct Readiness(Arc<Inner>);

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub ready: bool,
    pub serving: bool,
    pub draining: bool,
    /// Engine name -> "ok", "pending" or the error of its last check.
    pub checks: std::collections::BTreeMap<&'static str, String>,
}

impl Readiness {
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// Adds an engine the role cannot work without. `check` should be cheap (one round trip).
    pub fn add_check<F, Fut>(&self, name: &'static str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        let run: CheckFn = Arc::new(move || Box::pin(check()));
        self.lock().push(Check {
            name,
            run,
            last: None,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Check>> {
        // Only whole-value assignments happen under this lock.
        self.0.checks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs every check now and then every `every`, until `stop`.
    pub fn start(&self, every: Duration, stop: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => me.check_all().await,
                }
            }
        });
    }

    /// Runs every check once (concurrently) and records the results.
    pub async fn check_all(&self) {
        let runs: Vec<(usize, CheckFn)> = self
            .lock()
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.run.clone()))
            .collect();
        let results = futures_util::future::join_all(runs.into_iter().map(|(i, run)| async move {
            let r = match tokio::time::timeout(CHECK_TIMEOUT, run()).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
            };
            (i, r)
        }))
        .await;
        let mut checks = self.lock();
        for (i, r) in results {
            if let Some(c) = checks.get_mut(i) {
                if let (Err(e), false) = (&r, c.last.as_ref().is_some_and(Result::is_err)) {
                    tracing::warn!(engine = c.name, "readiness check failed: {e}");
                }
                if r.is_ok() && c.last.as_ref().is_some_and(Result::is_err) {
                    tracing::info!(engine = c.name, "readiness check passes again");
                }
                c.last = Some(r);
            }
        }
        drop(checks);
        self.publish();
    }

    /// The role has bound its listeners and registered: it may be sent work.
    pub fn set_serving(&self) {
        self.0.serving.store(true, Ordering::Release);
        self.publish();
    }

    /// The role is draining: not ready from now on.
    pub fn set_draining(&self) {
        self.0.draining.store(true, Ordering::Release);
        self.publish();
    }

    /// The drain of a role that serves calls (logic, api): from `shutdown` on it is not ready and out of
    /// the registry at once, and keeps serving for `delay` while callers and load balancers move away.
    /// The token returned is cancelled then: the server stops taking new calls and finishes those in
    /// flight.
    pub fn drain_on(
        &self,
        shutdown: CancellationToken,
        registry: Arc<dyn Registry>,
        role: Role,
        id: String,
        delay: Duration,
    ) -> CancellationToken {
        let stop_serving = CancellationToken::new();
        let (readiness, stop) = (self.clone(), stop_serving.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            readiness.set_draining();
            if let Err(e) = registry.deregister(role, &id).await {
                tracing::warn!("deregister: {e}");
            }
            if !delay.is_zero() {
                tracing::info!("draining: serving {delay:?} more while callers move away");
                tokio::time::sleep(delay).await;
            }
            stop.cancel();
        });
        stop_serving
    }

    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Acquire)
    }

    pub fn ready(&self) -> bool {
        self.report().ready
    }

    pub fn report(&self) -> Report {
        let serving = self.0.serving.load(Ordering::Acquire);
        let draining = self.is_draining();
        let checks: std::collections::BTreeMap<&'static str, String> = self
            .lock()
            .iter()
            .map(|c| {
                let state = match &c.last {
                    None => "pending".to_string(),
                    Some(Ok(())) => "ok".to_string(),
                    Some(Err(e)) => e.clone(),
                };
                (c.name, state)
            })
            .collect();
        let engines_ok = checks.values().all(|s| s == "ok");
        Report {
            ready: serving && !draining && engines_ok,
            serving,
            draining,
            checks,
        }
    }

    fn publish(&self) {
        metrics::gauge!("imcloud_ready").set(if self.ready() { 1.0 } else { 0.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[tokio::test]
    async fn ready_only_while_serving_with_every_engine_up_and_not_draining() {
        let r = Readiness::new();
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        r.add_check("etcd", move || {
            let ok = flag.load(Ordering::Relaxed);
            async move { if ok { Ok(()) } else { Err("down".into()) } }
        });
        assert!(!r.ready(), "not ready before serving");
        r.set_serving();
        assert!(!r.ready(), "not ready before the first check");
        assert_eq!(r.report().checks["etcd"], "pending");
        r.check_all().await;
        assert!(r.ready());
        up.store(false, Ordering::Relaxed);
        r.check_all().await;
        let rep = r.report();
        assert!(!rep.ready);
        assert_eq!(rep.checks["etcd"], "down");
        up.store(true, Ordering::Relaxed);
        r.check_all().await;
        assert!(r.ready(), "ready again once the engine answers");
        r.set_draining();
        assert!(!r.ready());
        assert!(r.report().draining);
    }

    #[tokio::test]
    async fn a_check_that_hangs_fails_after_the_timeout() {
        let r = Readiness::new();
        r.add_check("kafka", std::future::pending::<Result<(), String>>);
        r.set_serving();
        r.check_all().await;
        assert!(!r.ready());
        assert!(r.report().checks["kafka"].contains("no answer"));
    }
}
