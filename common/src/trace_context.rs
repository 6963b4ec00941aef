//! W3C trace context (`traceparent`, `tracestate`) across process boundaries: gRPC metadata, HTTP
//! headers and queue record headers. One push is one trace: api -> logic -> queue -> job -> comet.
//! `traced_span!` makes a span only while tracing is on.
//!
//! Invariants: everything here is a no-op until [`enable`] has been called (the process exports traces,
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set), so a process without tracing pays one atomic load per hop; the
//! propagator is the global one (W3C trace context, installed by the binary's telemetry set-up).

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector};
use tonic::codegen::http::{HeaderMap, HeaderName, HeaderValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Record headers of a queue message (name, value), e.g. `("traceparent", "00-…-…-01")`.
pub type Headers = Vec<(String, String)>;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns propagation on (called once by the process that installed an OpenTelemetry tracer).
pub fn enable() {
    ENABLED.store(true, Ordering::Release);
}

/// Whether this process exports traces.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// A span that exists only while tracing is on (else [`tracing::Span::none`], which costs nothing).
#[macro_export]
macro_rules! traced_span {
    ($($arg:tt)*) => {
        if $crate::trace_context::enabled() {
            tracing::info_span!($($arg)*)
        } else {
            tracing::Span::none()
        }
    };
}

struct VecInjector<'a>(&'a mut Headers);

impl Injector for VecInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_string(), value));
    }
}

struct VecExtractor<'a>(&'a [(String, String)]);

impl Extractor for VecExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// The trace context of `span` as record headers (empty when tracing is off).
pub fn headers_of(span: &tracing::Span) -> Headers {
    let mut out = Headers::new();
    if enabled() {
        let cx = span.context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut VecInjector(&mut out))
        });
    }
    out
}

/// Makes `span` a child of the trace context in `headers` (no-op when tracing is off or none is there).
pub fn set_parent_from_headers(span: &tracing::Span, headers: &[(String, String)]) {
    if enabled() && !headers.is_empty() {
        let cx =
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&VecExtractor(headers)));
        let _ = span.set_parent(cx);
    }
}

/// Writes the trace context of `span` into HTTP (or gRPC) headers.
pub fn inject_http(span: &tracing::Span, headers: &mut HeaderMap) {
    if enabled() {
        let cx = span.context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut HeaderInjector(headers))
        });
    }
}

/// Makes `span` a child of the trace context in HTTP (or gRPC) headers, if they carry one.
pub fn set_parent_from_http(span: &tracing::Span, headers: &HeaderMap) {
    if enabled() && headers.contains_key("traceparent") {
        let cx = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(headers))
        });
        let _ = span.set_parent(cx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_written_while_tracing_is_off() {
        // ENABLED is process-wide and only the binary turns it on; the unit tests never do.
        let mut h = HeaderMap::new();
        inject_http(&tracing::Span::current(), &mut h);
        assert!(h.is_empty());
        assert!(headers_of(&tracing::Span::current()).is_empty());
    }

    #[test]
    fn extractors_read_what_injectors_wrote() {
        let mut v = Headers::new();
        VecInjector(&mut v).set("traceparent", "00-aa-bb-01".into());
        assert_eq!(VecExtractor(&v).get("TraceParent"), Some("00-aa-bb-01"));
        let mut h = HeaderMap::new();
        HeaderInjector(&mut h).set("traceparent", "00-aa-bb-01".into());
        assert_eq!(HeaderExtractor(&h).get("traceparent"), Some("00-aa-bb-01"));
        assert_eq!(HeaderExtractor(&h).keys(), vec!["traceparent"]);
    }
}
