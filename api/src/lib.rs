//! imcloud api: the public HTTP edge. goim's push API and online/node queries under `/goim`, the token API
//! (`POST /v1/tokens`) and the IM JSON API under `/v1`, the web client at `/`, `/healthz`, `/readyz` and
//! `/metrics`. It holds no state: every request becomes a logic gRPC call.
//!
//! `router()`: the public routes, the trusted ones behind `require_api_key` (checked before any body is
//! read), the IM routes (`im_api`), the web client, JSON 404 and 405 fallbacks, the body limit
//! (`push_max_body`). `run()` registers the api, builds its logic client (discovered through the registry,
//! messages up to `MAX_IM_CALL_BYTES`) and wraps the router, outermost last, in: trace, security headers,
//! CORS, the rate limit, the body timeout; it serves through `http_server` and drains with
//! `Readiness::drain_on`.

pub mod browser;
pub mod envelope;
pub mod goim_online;
pub mod goim_push;
pub mod http_server;
pub mod http_telemetry;
pub mod im_api;
pub mod limits;
pub mod params;
pub mod state;
pub mod tokens;
pub mod web_client;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use imcloud_common::fd_budget;
use imcloud_common::grpc_channel::{Caller, logic_channel};
use imcloud_common::im::operations::{MAX_IM_CALL_BYTES, MAX_UPLOAD_BYTES};
use imcloud_common::internal_auth::InternalAuth;
use imcloud_common::node::advertised;
use imcloud_common::readiness::Readiness;
use imcloud_common::registry::{Registry, RegistryError};
use imcloud_common::tls::{ALPN_HTTP, public_tls};
use imcloud_common::{Config, NodeInfo, Role, auth};
use imcloud_proto::logic::logic_client::LogicClient;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::envelope::ApiError;
use crate::limits::ApiLimits;
use crate::state::AppState;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApiServeError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
}

async fn require_api_key(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth::bearer_matches(given, &s.api_key) {
        next.run(req).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// Whether a path belongs to the IM JSON API (whose errors are `{"error":{…}}`).
pub(crate) fn is_im_path(path: &str) -> bool {
    path.starts_with("/v1/") && path != "/v1/tokens"
}

async fn not_found(req: Request) -> Response {
    if is_im_path(req.uri().path()) {
        return im_api::error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {} {}", req.method(), req.uri().path()),
        );
    }
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no route for {} {}", req.method(), req.uri().path()),
    }
    .into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    if is_im_path(req.uri().path()) {
        return im_api::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "method {} not allowed on {}",
                req.method(),
                req.uri().path()
            ),
        );
    }
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!(
            "method {} not allowed on {}",
            req.method(),
            req.uri().path()
        ),
    }
    .into_response()
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    match &s.metrics {
        Some(h) => h.render().into_response(),
        None => ApiError {
            status: StatusCode::NOT_FOUND,
            message: "metrics are not enabled".into(),
        }
        .into_response(),
    }
}

/// 200 while the api serves and logic answers; 503 while it drains or logic is unreachable.
async fn readyz(State(s): State<AppState>) -> Response {
    let report = s.readiness.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}

/// The HTTP routes (without the limits and headers `run` puts around them); the IM routes when `im_upload_max` is set (the IM tier is on).
pub fn router(state: AppState, max_body: usize, im_upload_max: Option<usize>) -> Router {
    let trusted = Router::new()
        .route("/goim/push/keys", post(goim_push::keys))
        .route("/goim/push/mids", post(goim_push::mids))
        .route("/goim/push/room", post(goim_push::room))
        .route("/goim/push/all", post(goim_push::all))
        .route("/goim/online/top", get(goim_online::top))
        .route("/goim/online/room", get(goim_online::room))
        .route("/goim/online/total", get(goim_online::total))
        .route("/v1/tokens", post(tokens::issue))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    Router::new()
        .route("/goim/nodes/weighted", get(goim_online::weighted))
        .route("/goim/nodes/instances", get(goim_online::instances))
        .route("/healthz", get(|| async { envelope::ok("alive") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .merge(trusted)
        .merge(im_upload_max.map(im_api::routes).unwrap_or_default())
        .merge(web_client::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(http_telemetry::track))
        .with_state(state)
}

/// Serves the HTTP API on `listener` until `shutdown`. Then drains: not ready and out of the registry at
/// once, serving on for `drain_delay_ms` while load balancers take it out, then no new requests and the
/// requests in flight finish.
pub async fn run(
    cfg: &Config,
    registry: Arc<dyn Registry>,
    listener: TcpListener,
    metrics: Option<PrometheusHandle>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), ApiServeError> {
    if cfg.api_key.is_empty() {
        return Err(ApiServeError::Config("IMCLOUD_API_KEY must be set".into()));
    }
    let auth = InternalAuth::from_config(cfg).map_err(|e| ApiServeError::Config(e.to_string()))?;
    let tls = if cfg.api_tls {
        let t = public_tls(&cfg.tls_cert_file, &cfg.tls_key_file, ALPN_HTTP)
            .map_err(|e| ApiServeError::Config(e.to_string()))?;
        t.watch(std::time::Duration::from_secs(cfg.tls_reload_secs));
        Some(t)
    } else {
        None
    };
    let cors = browser::cors(&cfg.api_cors_origins).map_err(ApiServeError::Config)?;
    let state = AppState {
        logic: LogicClient::new(
            logic_channel(cfg, &registry, &Caller::new(Role::Api, auth))
                .await
                .map_err(ApiServeError::Config)?,
        )
        .max_decoding_message_size(MAX_IM_CALL_BYTES)
        .max_encoding_message_size(MAX_IM_CALL_BYTES),
        api_key: cfg.api_key.clone(),
        metrics,
        readiness: readiness.clone(),
    };

    let local = listener.local_addr()?;
    let mut me = NodeInfo::new(Role::Api, cfg.node_id_or(local.port()));
    me.http_addr = advertised(local, &cfg.advertise_host());
    registry.register(me.clone()).await?;
    let settings = http_server::HttpSettings {
        header_timeout: Duration::from_millis(cfg.http_header_timeout_ms),
        idle_timeout: Duration::from_millis(cfg.http_idle_timeout_ms),
        max_connections: match cfg.api_max_connections {
            0 => fd_budget::client_budget(cfg.fd_reserve),
            n => n,
        },
        tls: tls.clone(),
    };
    tracing::info!(
        addr = %local, id = %me.id, https = tls.is_some(), max_connections = settings.max_connections,
        "api serving HTTP"
    );
    let upload_max = cfg
        .im_enabled()
        .then(|| cfg.im_upload_max_bytes.min(MAX_UPLOAD_BYTES));
    let limits = ApiLimits::new(
        &cfg.api_key,
        cfg.api_requests_per_sec_per_key,
        cfg.api_requests_per_sec_per_ip,
        Duration::from_millis(cfg.http_body_timeout_ms),
    );
    // Outermost last: trace, security headers, CORS, the rate limit, the body timeout, then the routes
    // (whose handlers authenticate before they read a body).
    let mut app = router(state, cfg.push_max_body, upload_max)
        .layer(middleware::from_fn_with_state(
            limits.clone(),
            limits::body_timeout,
        ))
        .layer(middleware::from_fn_with_state(limits, limits::rate_limit));
    if let Some(cors) = cors {
        app = app.layer(cors);
    }
    let https = tls.is_some();
    let app = app
        .layer(middleware::from_fn(move |req, next| {
            browser::security_headers(https, req, next)
        }))
        .layer(tower_http::trace::TraceLayer::new_for_http());
    readiness.set_serving();
    // Drain: not ready and out of the registry at once, serving on for `drain_delay_ms` while load
    // balancers move away, then no new requests and the ones in flight finish.
    let stop_serving = readiness.drain_on(
        shutdown,
        registry.clone(),
        Role::Api,
        me.id.clone(),
        Duration::from_millis(cfg.drain_delay_ms),
    );
    http_server::serve(listener, app, settings, stop_serving).await;
    if let Err(e) = registry.deregister(Role::Api, &me.id).await {
        tracing::warn!("deregister: {e}");
    }
    tracing::info!("api stopped");
    Ok(())
}
