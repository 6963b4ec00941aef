//! Telemetry of the gRPC calls between nodes, on both sides:
//!
//! - [`ServerTelemetry`], around each gRPC service a node serves: a `grpc.server` span (a child of the caller's
//!   `traceparent`), the histogram `imcloud_grpc_server_duration_seconds{service,method,code}`, and the
//!   push's accepted time ([`ACCEPTED_HEADER`]) made available to the handler ([`accepted_unix_us`]).
//! - [`NodeChannel`], the channel every node's gRPC clients use: a `grpc.client` span whose context
//!   travels as `traceparent`, and `imcloud_grpc_client_duration_seconds{service,method,code}`.
//!
//! Invariants: the status code label comes from the `grpc-status` header (tonic answers errors of unary
//! calls as trailers-only responses); a response without one is `OK` (its status is in the trailers);
//! spans exist only while tracing is on ([`crate::trace_context::enabled`]).

use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use tonic::codegen::http;
use tower::Service;
use tracing::Instrument;

use crate::grpc_channel::{BoxError, InternalChannel};
use crate::trace_context;
use crate::traced_span;

/// gRPC metadata carrying when the api accepted a push (microseconds since the Unix epoch).
pub const ACCEPTED_HEADER: &str = "x-imcloud-accepted-us";

tokio::task_local! {
    static ACCEPTED_US: i64;
}

/// Microseconds since the Unix epoch.
pub fn now_unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// When the push being handled was accepted: the api's [`ACCEPTED_HEADER`] on this gRPC call, else now.
pub fn accepted_unix_us() -> i64 {
    ACCEPTED_US
        .try_with(|t| *t)
        .unwrap_or_else(|_| now_unix_us())
}

/// `("imcloud.logic.Logic", "Connect")` from `/imcloud.logic.Logic/Connect`.
fn service_and_method(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default().to_string();
    let method = parts.next().unwrap_or_default().to_string();
    (service, method)
}

/// The status code name of a response (see the module doc).
fn code_of<B>(r: &http::Response<B>) -> &'static str {
    let code = r
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    code_name(tonic::Code::from(code))
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The server side; see the module doc.
#[derive(Debug, Clone)]
pub struct ServerTelemetry<S> {
    inner: S,
}

impl<S> ServerTelemetry<S> {
    /// Wraps one gRPC service (added with `add_service`, keeping its name).
    pub fn new(inner: S) -> ServerTelemetry<S> {
        ServerTelemetry { inner }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for ServerTelemetry<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> Service<http::Request<B>> for ServerTelemetry<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (service, method) = service_and_method(req.uri().path());
        let accepted = req
            .headers()
            .get(ACCEPTED_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok());
        let span = traced_span!(
            "grpc.server",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        trace_context::set_parent_from_http(&span, req.headers());
        let started = Instant::now();
        // The handler's future is made here (as without this layer) and runs inside the span.
        let call = {
            let _entered = span.enter();
            self.inner.call(req)
        }
        .instrument(span.clone());
        Box::pin(async move {
            let result = match accepted {
                Some(t) => ACCEPTED_US.scope(t, call).await,
                None => call.await,
            };
            let code = match &result {
                Ok(r) => code_of(r),
                Err(_) => "UNKNOWN",
            };
            span.record("rpc.grpc.status_code", code);
            metrics::histogram!("imcloud_grpc_server_duration_seconds",
                "service" => service, "method" => method, "code" => code)
            .record(started.elapsed().as_secs_f64());
            result
        })
    }
}

/// A gRPC channel to another node with client telemetry (see the module doc). Cheap to clone.
#[derive(Debug, Clone)]
pub struct NodeChannel {
    inner: InternalChannel,
}

impl NodeChannel {
    pub fn new(inner: InternalChannel) -> NodeChannel {
        NodeChannel { inner }
    }
}

impl Service<http::Request<tonic::body::Body>> for NodeChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        let (service, method) = service_and_method(req.uri().path());
        let span = traced_span!(
            "grpc.client",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        trace_context::inject_http(&span, req.headers_mut());
        let started = Instant::now();
        let call = self.inner.call(req);
        Box::pin(async move {
            let result = call.instrument(span.clone()).await;
            let code = match &result {
                Ok(r) => code_of(r),
                Err(_) => "UNAVAILABLE",
            };
            span.record("rpc.grpc.status_code", code);
            metrics::histogram!("imcloud_grpc_client_duration_seconds",
                "service" => service, "method" => method, "code" => code)
            .record(started.elapsed().as_secs_f64());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_and_codes() {
        assert_eq!(
            service_and_method("/imcloud.logic.Logic/Connect"),
            ("imcloud.logic.Logic".to_string(), "Connect".to_string())
        );
        let ok = http::Response::new(());
        assert_eq!(code_of(&ok), "OK");
        let mut err = http::Response::new(());
        err.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("14"));
        assert_eq!(code_of(&err), "UNAVAILABLE");
    }

    #[tokio::test]
    async fn accepted_time_is_the_callers_inside_a_call_and_now_outside() {
        let before = now_unix_us();
        assert!(accepted_unix_us() >= before);
        let inside = ACCEPTED_US.scope(42, async { accepted_unix_us() }).await;
        assert_eq!(inside, 42);
    }
}
