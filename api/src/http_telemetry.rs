//! Telemetry of every HTTP request the api serves: an `http.server` span (a child of the caller's
//! `traceparent`, if it sent one), `imcloud_http_requests_total{method,route,status}` and
//! `imcloud_http_request_duration_seconds{method,route}`.
//!
//! Invariants: `route` is the matched route template (`/v1/conversations/{id}/messages`), never the raw
//! path, so label values stay few; requests that match no route are `route="unmatched"`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use imcloud_common::trace_context;
use tracing::Instrument;

/// The middleware (see the module doc).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().as_str().to_string();
    let span = imcloud_common::traced_span!(
        "http.server",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    trace_context::set_parent_from_http(&span, req.headers());
    let started = Instant::now();
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    span.record("http.response.status_code", status);
    metrics::counter!("imcloud_http_requests_total",
        "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
    .increment(1);
    metrics::histogram!("imcloud_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}
