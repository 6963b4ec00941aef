//! The etcd members the registry talks to: one client per endpoint, and failover between them.
//!
//! One client over every endpoint spreads requests over them, and a request it sends to a member that is
//! down fails ("tcp connect error") however many members live: with one member of three down, about a
//! third of the calls failed, a node could not start, and readiness flapped (`scripts/chaos`). Here each
//! call goes to the member that answered last; when that one cannot be reached (a transport error, an
//! `Unavailable` status, or no answer within its share of the time), the same call is made to the next
//! member, and that one is used from then on. A call fails only when no member answered within
//! [`REQUEST_TIMEOUT`].
//!
//! A call that reached a member and failed there (a missing lease, a bad request) is not retried: every
//! member would say the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::time::Instant;

/// The longest any one call may take, over every member tried, before it counts as etcd being
/// unavailable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time one member is given before the next is tried.
const MIN_ATTEMPT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Members {
    clients: Arc<Vec<Client>>,
    /// The member that answered last.
    current: Arc<AtomicUsize>,
}

impl Members {
    /// One client per endpoint (each dials lazily, so this fails only on a malformed endpoint).
    pub async fn connect(
        endpoints: &[String],
        options: ConnectOptions,
    ) -> Result<Members, etcd_client::Error> {
        let mut clients = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            let connect = Client::connect([e.as_str()], Some(options.clone()));
            clients.push(
                tokio::time::timeout(REQUEST_TIMEOUT, connect)
                    .await
                    .unwrap_or_else(|_| Err(deadline_exceeded("etcd did not answer in time")))?,
            );
        }
        if clients.is_empty() {
            return Err(etcd_client::Error::InvalidArgs(
                "no etcd endpoint given".into(),
            ));
        }
        Ok(Members {
            clients: Arc::new(clients),
            current: Arc::default(),
        })
    }

    /// Makes `call` with a client of the member that answered last, failing over to the next members
    /// while they cannot be reached.
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, etcd_client::Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.clients.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut last = deadline_exceeded("etcd did not answer in time");
        for i in 0..n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // An unreachable member must leave time for the others.
            let share = (left / (n - i) as u32).max(MIN_ATTEMPT).min(left);
            let member = (first + i) % n;
            match tokio::time::timeout(share, call(self.clients[member].clone())).await {
                Ok(Err(e)) if unreachable(&e) => last = e,
                Err(_) => last = deadline_exceeded("etcd member did not answer in time"),
                Ok(answer) => {
                    if i > 0 {
                        self.current.store(member, Ordering::Relaxed);
                    }
                    return answer;
                }
            }
        }
        Err(last)
    }
}

/// Whether the call never reached a working member.
fn unreachable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => s.code() == tonic::Code::Unavailable,
        _ => false,
    }
}

pub fn deadline_exceeded(message: &str) -> etcd_client::Error {
    etcd_client::Error::GRpcStatus(tonic::Status::deadline_exceeded(message))
}
