//! The Kafka producer's view of its brokers, so that a push during a broker outage is refused at once
//! instead of after librdkafka's message timeout (observed at 7.9 to 9.9 s with the idempotent producer,
//! though `message.timeout.ms` is 5 s).
//!
//! - librdkafka reports `AllBrokersDown` through the client context's error callback when it has lost its
//!   connection to every broker: [`BrokerWatch`] raises its flag.
//! - While the flag is up, a send first asks [`BrokerWatch::probe`]: one metadata round trip
//!   ([`PROBE_TIMEOUT`]) at a time, whose failure is remembered for [`PROBE_EVERY`]. A failed probe refuses
//!   the send with `QueueError::Unavailable` (the API's 503) without queueing it, so the backend knows the
//!   push was not taken and may retry it without causing a duplicate. A probe that succeeds lowers the flag
//!   (a false alarm, e.g. an idle connection the broker closed, costs one round trip).
//! - A send already waiting for its acknowledgement when the flag goes up is answered at once as well
//!   ([`BrokerWatch::went_down`]). That push may still reach Kafka once a broker is back (librdkafka keeps
//!   it until the message timeout): a 503 then means "not acknowledged", as any timeout would.
//! - A delivery acknowledged by a broker lowers the flag as well.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use crate::queue::QueueError;

/// Longest a probe waits for the brokers' metadata.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long a failed probe's answer stands before the next send probes again.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// The producer's client context: watches librdkafka's global errors for `AllBrokersDown`.
#[derive(Clone)]
pub struct BrokerWatch {
    all_down: Arc<watch::Sender<bool>>,
    /// When the last probe failed, and why; one probe runs at a time.
    last_failure: Arc<Mutex<Option<(Instant, String)>>>,
}

impl Default for BrokerWatch {
    fn default() -> Self {
        BrokerWatch {
            all_down: Arc::new(watch::channel(false).0),
            last_failure: Arc::default(),
        }
    }
}

impl ClientContext for BrokerWatch {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            if !self.all_down.send_replace(true) {
                tracing::warn!(
                    "Kafka: every broker is down ({reason}); pushes are refused until one answers"
                );
            }
        } else {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl BrokerWatch {
    /// Whether librdkafka last said that every broker is down.
    pub fn all_down(&self) -> bool {
        *self.all_down.borrow()
    }

    /// Resolves when librdkafka says every broker is down (at once if it already has).
    pub async fn went_down(&self) {
        let mut rx = self.all_down.subscribe();
        let _ = rx.wait_for(|down| *down).await;
    }

    /// A broker acknowledged a message: it is up.
    pub fn delivered(&self) {
        self.all_down
            .send_if_modified(|down| std::mem::replace(down, false));
    }

    /// While every broker looked down: `Ok` once a metadata round trip (`fetch`, given the timeout)
    /// succeeds, which lowers the flag; else the refusal, at once while the last failure is recent.
    pub async fn probe<F, Fut>(&self, fetch: F) -> Result<(), QueueError>
    where
        F: FnOnce(Duration) -> Fut,
        Fut: Future<Output = Result<(), QueueError>>,
    {
        let mut last = self.last_failure.lock().await;
        if !self.all_down() {
            return Ok(());
        }
        if let Some((at, why)) = last.as_ref()
            && at.elapsed() < PROBE_EVERY
        {
            return Err(QueueError::Unavailable(why.clone()));
        }
        match fetch(PROBE_TIMEOUT).await {
            Ok(()) => {
                *last = None;
                self.delivered();
                tracing::info!("Kafka: a broker answers again");
                Ok(())
            }
            Err(e) => {
                let why = format!("Kafka: every broker is down ({e})");
                *last = Some((Instant::now(), why.clone()));
                Err(QueueError::Unavailable(why))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> BrokerWatch {
        let w = BrokerWatch::default();
        w.error(
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "2/2 brokers are down",
        );
        w
    }

    #[test]
    fn only_all_brokers_down_raises_the_flag() {
        let w = BrokerWatch::default();
        w.error(
            KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            "one broker",
        );
        assert!(!w.all_down());
        assert!(down().all_down());
    }

    type Probe = std::future::Ready<Result<(), QueueError>>;

    fn answers(ok: bool) -> impl FnOnce(Duration) -> Probe {
        move |_| {
            std::future::ready(if ok {
                Ok(())
            } else {
                Err(QueueError::Unavailable("no broker".into()))
            })
        }
    }

    fn must_not_run(_: Duration) -> Probe {
        panic!("probed when it should not have")
    }

    #[tokio::test]
    async fn a_failed_probe_refuses_at_once_until_it_is_due_again() {
        let w = down();
        assert!(w.probe(answers(false)).await.is_err());
        // Within PROBE_EVERY the failure stands without a round trip.
        let refused = w.probe(must_not_run).await.expect_err("refused");
        assert!(
            refused.to_string().contains("every broker is down"),
            "{refused}"
        );
        tokio::time::sleep(PROBE_EVERY).await;
        // Due again: this probe succeeds and lowers the flag.
        assert!(w.probe(answers(true)).await.is_ok());
        assert!(!w.all_down());
        assert!(w.probe(must_not_run).await.is_ok(), "no probe while up");
    }

    #[tokio::test]
    async fn a_send_waiting_for_its_acknowledgement_hears_of_the_outage() {
        let w = BrokerWatch::default();
        let waiting = tokio::spawn({
            let w = w.clone();
            async move { w.went_down().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        w.error(
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");
    }

    #[test]
    fn a_delivery_lowers_the_flag() {
        let w = down();
        w.delivered();
        assert!(!w.all_down());
    }
}
