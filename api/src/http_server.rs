//! The api's HTTP server: HTTP/1.1 and HTTP/2 (hyper's auto builder), over TLS with ALPN when
//! `IMCLOUD_API_TLS=true`, with the bounds that keep a held or stalled connection from costing more
//! than a few seconds and one descriptor:
//!
//! - at most `max_connections` open connections ([`ConnectionCap`]); one over it is closed at once;
//! - a connection must deliver a request's headers within `header_timeout`, counted from when it is
//!   ready for a request: the TLS handshake and the first request of a new connection, and (hyper's
//!   HTTP/1.1 header timer) every later one, so an idle HTTP/1.1 keep-alive connection closes then too;
//! - a connection with no request in flight for `idle_timeout` is closed (HTTP/2 included);
//! - a request body that stalls for `body_timeout` is answered 408 (see `limits::body_timeout`);
//! - accept errors back off ([`AcceptBackoff`]);
//! - at shutdown every connection gets a graceful close (in-flight requests finish), for up to 10 s.
//!
//! Invariant: each connection task owns its permit and watches its own activity, so nothing here is
//! shared between connections but the cap and the router.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use imcloud_common::accept::AcceptBackoff;
use imcloud_common::fd_budget::ConnectionCap;
use imcloud_common::tls::{MaybeTls as Io, PublicTls};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// How long shutdown waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a connection checks whether it has been idle too long.
const IDLE_CHECK: Duration = Duration::from_millis(500);
/// Streams one HTTP/2 connection may have open at once.
const H2_MAX_STREAMS: u32 = 128;
/// Largest header block accepted (both protocols).
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The bounds of the HTTP listener.
#[derive(Clone)]
pub struct HttpSettings {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub tls: Option<Arc<PublicTls>>,
}

/// Requests in flight on one connection and when it last became idle.
struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Nanoseconds after `epoch` when the last request ended (0: none yet).
    idle_since: AtomicU64,
    requests: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// Whether the connection has been idle longer than allowed: before its first request, longer than
    /// `header`; after one, longer than `idle`.
    fn overdue(&self, header: Duration, idle: Duration) -> bool {
        self.overdue_at(self.epoch.elapsed(), header, idle)
    }

    fn overdue_at(&self, now: Duration, header: Duration, idle: Duration) -> bool {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return false;
        }
        if self.requests.load(Ordering::Acquire) == 0 {
            return now > header;
        }
        let since = Duration::from_nanos(self.idle_since.load(Ordering::Acquire));
        now.saturating_sub(since) > idle
    }
}

struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(a: &Arc<Activity>) -> InFlight {
        a.requests.fetch_add(1, Ordering::AcqRel);
        a.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since
            .store(a.epoch.elapsed().as_nanos() as u64, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn builder(settings: &HttpSettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8192) * 2)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_pending_accept_reset_streams(Some(32))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    b
}

/// Serves `app` on `listener` until `shutdown`, then closes every connection gracefully.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: HttpSettings,
    shutdown: CancellationToken,
) {
    let cap = ConnectionCap::new("http", settings.max_connections);
    let builder = Arc::new(builder(&settings));
    let tracker = TaskTracker::new();
    let mut backoff = AcceptBackoff::new("http");
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => { backoff.succeeded(); a }
                Err(e) => { backoff.failed(&e).await; continue; }
            },
        };
        let Some(permit) = cap.try_take() else {
            tracing::debug!(%peer, "HTTP connection refused: {} open", cap.max());
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (app, builder, settings, stop) = (
            app.clone(),
            builder.clone(),
            settings.clone(),
            shutdown.clone(),
        );
        tracker.spawn(async move {
            connection(tcp, peer, app, &builder, &settings, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} HTTP connections still open after {DRAIN_TIMEOUT:?}",
            cap.in_use()
        );
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    builder: &auto::Builder<TokioExecutor>,
    settings: &HttpSettings,
    shutdown: CancellationToken,
) {
    let io = match &settings.tls {
        None => Io::Plain(tcp),
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
            match tokio::time::timeout(settings.header_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => Io::Tls(Box::new(s)),
                Ok(Err(e)) => {
                    metrics::counter!("imcloud_tls_handshake_failures_total", "listener" => "https")
                        .increment(1);
                    tracing::debug!(%peer, "HTTPS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    metrics::counter!("imcloud_tls_handshake_failures_total", "listener" => "https")
                        .increment(1);
                    return;
                }
            }
        }
    };
    let activity = Arc::new(Activity::new());
    let a = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let in_flight = InFlight::start(&a);
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let response = app.oneshot(req).await;
            drop(in_flight);
            Ok::<_, Infallible>(match response {
                Ok(r) => r,
                Err(never) => match never {},
            })
        }
    });
    let mut conn = pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
    let mut tick = tokio::time::interval(IDLE_CHECK);
    let mut closing = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, "HTTP connection: {e}");
                }
                return;
            }
            _ = shutdown.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tick.tick(), if !closing => {
                if activity.overdue(settings.header_timeout, settings.idle_timeout) {
                    metrics::counter!("imcloud_http_idle_closed_total").increment(1);
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_become_overdue() {
        let a = Arc::new(Activity::new());
        let (header, idle) = (Duration::from_secs(10), Duration::from_secs(60));
        let at = |s: u64| Duration::from_secs(s);
        assert!(!a.overdue_at(at(5), header, idle));
        assert!(
            a.overdue_at(at(11), header, idle),
            "no request within the header timeout"
        );
        let r = InFlight::start(&a);
        assert!(
            !a.overdue_at(at(500), header, idle),
            "a request in flight is never idle"
        );
        drop(r);
        let ended = Duration::from_nanos(a.idle_since.load(Ordering::Acquire));
        assert!(
            !a.overdue_at(ended + at(59), header, idle),
            "idle counts from the last request's end"
        );
        assert!(a.overdue_at(ended + at(61), header, idle));
    }
}
