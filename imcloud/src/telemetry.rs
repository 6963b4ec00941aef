//! What an operator sees of a process: logs, traces and metrics.
//!
//! - Logs: tracing to stderr, filtered by `RUST_LOG` (default `info,h2=warn,tower=warn,hyper=warn`), as text
//!   (no ANSI colours when stderr is not a terminal) or, with `IMCLOUD_LOG_FORMAT=json`, one JSON object per
//!   line with `trace_id` and `span_id` when the event happens inside a traced span.
//! - Traces: OpenTelemetry over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, else off (no spans are even created on the hot paths).
//!   The service name is `OTEL_SERVICE_NAME`, else `imcloud-<role>`; the W3C trace context propagator;
//!   the exporter's batch settings come from the standard `OTEL_BSP_*` variables. SQL statements
//!   (sqlx's `sqlx::query` events) become events of the span that ran them.
//! - Metrics: the Prometheus recorder. Every `*_seconds` histogram has [`SECONDS_BUCKETS`], so percentiles
//!   aggregate across pods, and they are folded every 5 s even without a scrape; `serve_metrics` is the
//!   `/metrics`, `/healthz`, `/readyz` listener of comet, logic and job processes.
//!
//! Invariant: [`Telemetry::shutdown`] flushes the spans still buffered; call it after the roles stopped.

use imcloud_common::readiness::Readiness;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Buckets of every `*_seconds` histogram: 0.5 ms to 10 s.
pub const SECONDS_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const DEFAULT_LOG_FILTER: &str = "info,h2=warn,tower=warn,hyper=warn";
/// What traces record: imcloud's spans, and SQL statements as span events. The exporter's own HTTP/2
/// client is never traced (that would trace the export of traces).
const TRACE_FILTER: &str = "info,sqlx::query=debug,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off";

/// Keeps the tracer provider; see the module doc.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes buffered spans and stops the exporter.
    pub async fn shutdown(self) {
        if let Some(p) = self.provider {
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = p.shutdown() {
                    eprintln!("trace exporter shutdown: {e}");
                }
            })
            .await;
        }
    }
}

fn otlp_endpoint() -> Option<String> {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
}

/// Installs logging and (when configured) tracing for a process running `role` (`comet`, …, `standalone`).
/// `json` selects JSON log lines. Must run inside the tokio runtime (the OTLP exporter's channel needs it).
pub fn init(role: &str, json: bool) -> Telemetry {
    let filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .event_format(JsonLines)
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter())
            .boxed()
    };
    let (traces, provider, trace_error) = match otlp_endpoint().map(|e| tracer(role, &e)) {
        Some(Ok(provider)) => {
            let tracer = provider.tracer("imcloud");
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(EnvFilter::new(TRACE_FILTER))
                .boxed();
            (Some(layer), Some(provider), None)
        }
        Some(Err(e)) => (None, None, Some(e)),
        None => (None, None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
    if let Some(e) = trace_error {
        tracing::warn!("tracing disabled: {e}");
    }
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        imcloud_common::trace_context::enable();
        tracing::info!(endpoint = ?otlp_endpoint(), "exporting traces over OTLP");
    }
    Telemetry { provider }
}

/// Logs only, for tools (`imcloud client …`).
pub fn init_logs() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn tracer(role: &str, endpoint: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| format!("imcloud-{role}"));
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// One JSON object per log line: `timestamp`, `level`, `target`, `message`, the event's fields, `span`
/// (the innermost span's name), and `trace_id` / `span_id` inside a traced span.
struct JsonLines;

#[derive(Default)]
struct Fields(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut ts = String::new();
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut ts))?;
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = serde_json::Map::new();
        line.insert("timestamp".into(), ts.into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(m) = fields.0.remove("message") {
            line.insert("message".into(), m);
        }
        if !fields.0.is_empty() {
            line.insert("fields".into(), fields.0.into());
        }
        if let Some(span) = ctx.lookup_current() {
            line.insert("span".into(), span.name().into());
            let cx = tracing::dispatcher::get_default(|d| {
                tracing_opentelemetry::get_otel_context(&span.id(), d)
            });
            if let Some(cx) = cx {
                let sc = cx.span().span_context().clone();
                if sc.is_valid() {
                    line.insert("trace_id".into(), sc.trace_id().to_string().into());
                    line.insert("span_id".into(), sc.span_id().to_string().into());
                }
            }
        }
        let text = serde_json::to_string(&line).map_err(|_| std::fmt::Error)?;
        writer.write_str(&text)?;
        writer.write_char('\n')
    }
}

/// Installs the process-wide metrics recorder; `/metrics` on the api (or the metrics listener) renders it.
/// Runs inside the tokio runtime (a task folds histogram samples every 5 s).
pub fn init_metrics() -> Option<PrometheusHandle> {
    let builder = match PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
    {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("metrics disabled: {e}");
            return None;
        }
    };
    match builder.install_recorder() {
        Ok(h) => {
            // Histograms keep their samples until upkeep folds them into buckets: without a scrape they
            // would grow without bound.
            let upkeep = h.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    upkeep.run_upkeep();
                }
            });
            Some(h)
        }
        Err(e) => {
            tracing::warn!("metrics disabled: {e}");
            None
        }
    }
}

/// Serves `/metrics` (Prometheus text), `/healthz` (alive) and `/readyz` (200 ready, 503 not, with the
/// report as JSON) on `addr` until `shutdown`: the metrics listener of comet, logic and job processes
/// (IMCLOUD_METRICS_ADDR).
pub async fn serve_metrics(
    addr: &str,
    handle: Option<PrometheusHandle>,
    readiness: Readiness,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use anyhow::Context;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = handle.as_ref().map(|h| h.render()).unwrap_or_default();
                async move { text }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let report = readiness.report();
                async move {
                    let status = if report.ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (status, axum::Json(report)).into_response()
                }
            }),
        );
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            tracing::warn!("metrics listener: {e}");
        }
    }))
}
