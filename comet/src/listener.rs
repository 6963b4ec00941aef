//! The accept loop every comet listener shares (websocket, wss, goim TCP with or without TLS).
//!
//! Each connection is admitted by `limits` before any byte is read, gets TCP_NODELAY, and runs as a task on
//! the comet's `TaskTracker` holding its admission (without growing the task: see `hold`); an accept error
//! backs off (`AcceptBackoff`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::FutureExt;
use imcloud_common::accept::AcceptBackoff;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::limits::{Admission, CometLimits, Protocol, Refused, refuse};

/// How a listener treats a connection it refuses (see [`crate::limits`]).
#[derive(Debug, Clone, Copy)]
pub enum OnRefusal {
    /// Plaintext: tell the client why in its protocol, then close.
    Explain(Protocol),
    /// TLS: close before the handshake.
    Close,
}

/// Accepts connections until `shutdown`. Each is admitted by `limits` before any byte is read, then
/// `handle` runs as a tracked task holding the [`Admission`] for the connection's life. Accept errors
/// (out of descriptors) back off.
pub async fn accept_loop<F, Fut>(
    what: &'static str,
    listener: TcpListener,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    limits: Arc<CometLimits>,
    on_refusal: OnRefusal,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = AcceptBackoff::new(what);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff.succeeded();
                    match limits.admit(peer.ip()) {
                        Ok(admission) => {
                            let _ = stream.set_nodelay(true);
                            let served = handle(stream, peer);
                            tracker.spawn(hold(admission, served));
                        }
                        Err(refused) => refused_connection(stream, peer, on_refusal, refused),
                    }
                }
                Err(e) => backoff.failed(&e).await,
            }
        }
    }
}

/// The connection's future, holding its admission until it ends. A combinator, not an `async fn`: an
/// `async fn` keeps its argument and the future it awaits side by side, which doubled every connection's
/// task (3,008 bytes instead of 1,432, measured in a release build).
fn hold<F: Future<Output = ()>>(admission: Admission, served: F) -> impl Future<Output = ()> {
    served.map(move |()| drop(admission))
}

fn refused_connection(stream: TcpStream, peer: SocketAddr, on: OnRefusal, refused: Refused) {
    tracing::debug!(%peer, "connection refused: {}", refused.text());
    match (on, &refused) {
        // Over the overall cap nothing is spent on the connection.
        (_, Refused::Cap) | (OnRefusal::Close, _) => drop(stream),
        (OnRefusal::Explain(p), _) => {
            tokio::spawn(async move { refuse(stream, p, &refused).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use imcloud_common::config::Config;

    #[tokio::test]
    async fn holding_the_admission_does_not_copy_the_connection_future() {
        let limits = CometLimits::new(&Config::default(), 10);
        let admission = limits.admit([127, 0, 0, 1].into()).unwrap();
        let big = [7u8; 4096];
        let served = async move {
            tokio::task::yield_now().await;
            std::hint::black_box(&big);
        };
        let served_size = std::mem::size_of_val(&served);
        let held = hold(admission, served);
        let held_size = std::mem::size_of_val(&held);
        assert!(
            held_size <= served_size + std::mem::size_of::<Admission>() + 16,
            "{held_size} bytes to hold a {served_size}-byte future"
        );
        held.await;
        assert!(limits.admit([127, 0, 0, 1].into()).is_ok());
    }
}
