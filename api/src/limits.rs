//! Per-request limits of the HTTP API, as axum middleware:
//!
//! - [`rate_limit`]: requests per second, for requests carrying the API key against the key's budget
//!   (`IMCLOUD_API_REQUESTS_PER_SEC_PER_KEY`), for all others against their client IP's
//!   (`IMCLOUD_API_REQUESTS_PER_SEC_PER_IP`; IPv6 per /64). Over it: `429` with `Retry-After` (seconds) and
//!   the error body of the route's API, counted in `imcloud_api_rate_limited_total{by}`.
//! - [`body_timeout`]: a request body that sends nothing for `IMCLOUD_HTTP_BODY_TIMEOUT_MS` ends in an
//!   error for whoever reads it, and the answer becomes `408` (`Connection: close`), counted in
//!   `imcloud_api_body_timeouts_total`. Bodies are only read by handlers, after authentication.
//!
//! Invariant: the limiter's memory is fixed (hashed slots, `rate_limit::KeyedLimiter`), however many
//! addresses send.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use imcloud_common::auth::bearer_matches;
use imcloud_common::rate_limit::{DEFAULT_SLOTS, KeyedLimiter, Rate, ip_key, retry_after_secs};
use tokio::time::Sleep;

use crate::envelope::ApiError;

/// The request limits of one api.
pub struct ApiLimits {
    api_key: String,
    per_key: Option<KeyedLimiter>,
    per_ip: Option<KeyedLimiter>,
    body_timeout: Duration,
}

impl ApiLimits {
    pub fn new(api_key: &str, per_key: u32, per_ip: u32, body_timeout: Duration) -> Arc<ApiLimits> {
        Arc::new(ApiLimits {
            api_key: api_key.to_string(),
            per_key: KeyedLimiter::new(Rate::per_sec(per_key), 1),
            per_ip: KeyedLimiter::new(Rate::per_sec(per_ip), DEFAULT_SLOTS),
            body_timeout,
        })
    }
}

/// An error response in the style of the path's API: `{"error":{…}}` under `/v1/` (except the token
/// API), goim's envelope elsewhere.
pub fn error_response(path: &str, status: StatusCode, code: &str, message: String) -> Response {
    if crate::is_im_path(path) {
        crate::im_api::error(status, code, message)
    } else {
        ApiError { status, message }.into_response()
    }
}

pub async fn rate_limit(
    State(limits): State<Arc<ApiLimits>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let with_key = bearer_matches(
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        &limits.api_key,
    );
    let (by, verdict) = if with_key {
        ("api_key", limits.per_key.as_ref().map(|l| l.take(0u8)))
    } else {
        (
            "ip",
            limits.per_ip.as_ref().map(|l| l.take(ip_key(peer.ip()))),
        )
    };
    let Some(Err(wait)) = verdict else {
        return next.run(req).await;
    };
    metrics::counter!("imcloud_api_rate_limited_total", "by" => by).increment(1);
    let secs = retry_after_secs(wait);
    let mut r = error_response(
        req.uri().path(),
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests; retry after {secs} s"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

pub async fn body_timeout(
    State(limits): State<Arc<ApiLimits>>,
    req: Request,
    next: Next,
) -> Response {
    let timed_out = Arc::new(AtomicBool::new(false));
    let path = req.uri().path().to_string();
    let flag = timed_out.clone();
    let req = req.map(|b| Body::new(StallTimeout::new(b, limits.body_timeout, flag)));
    let response = next.run(req).await;
    if !timed_out.load(Ordering::Acquire) {
        return response;
    }
    metrics::counter!("imcloud_api_body_timeouts_total").increment(1);
    let mut r = error_response(
        &path,
        StatusCode::REQUEST_TIMEOUT,
        "timeout",
        format!(
            "the request body stalled for more than {} ms",
            limits.body_timeout.as_millis()
        ),
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[derive(Debug, thiserror::Error)]
#[error("request body timed out")]
pub struct BodyTimedOut;

/// A body that fails when no frame arrives within `timeout` of asking for one.
pub struct StallTimeout {
    inner: Body,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl StallTimeout {
    fn new(inner: Body, timeout: Duration, timed_out: Arc<AtomicBool>) -> StallTimeout {
        StallTimeout {
            inner,
            timeout,
            sleep: None,
            timed_out,
        }
    }
}

impl http_body::Body for StallTimeout {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.timed_out.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_stalled_body_fails_and_says_so() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let stream =
            http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        let flag = Arc::new(AtomicBool::new(false));
        let body = StallTimeout::new(Body::new(stream), Duration::from_millis(200), flag.clone());
        tx.send(Ok(Frame::data(Bytes::from_static(b"part"))))
            .await
            .unwrap();
        let collected = tokio::spawn(async move { body.collect().await.map(|c| c.to_bytes()) });
        let err = collected.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(flag.load(Ordering::Acquire));
        drop(tx);
    }
}
