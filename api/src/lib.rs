//! imcloud api: the public HTTP edge. goim's push API and online/node queries under `/goim`, the token API
//! under `/v1`, `/healthz` and `/metrics`. It holds no state: every request becomes a logic gRPC call.

pub mod envelope;
pub mod goim_online;
pub mod goim_push;
pub mod http_telemetry;
pub mod im_api;
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
use axum::serve::ListenerExt;
use imcloud_common::grpc_channel::logic_channel;
use imcloud_common::im::operations::{MAX_IM_CALL_BYTES, MAX_UPLOAD_BYTES};
use imcloud_common::node::advertised;
use imcloud_common::readiness::Readiness;
use imcloud_common::registry::{Registry, RegistryError};
use imcloud_common::{Config, NodeInfo, Role, auth};
use imcloud_proto::logic::logic_client::LogicClient;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::envelope::ApiError;
use crate::state::AppState;

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
fn is_im_path(path: &str) -> bool {
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

/// The HTTP routes; the IM routes when `im_upload_max` is set (the IM tier is on).
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
    let state = AppState {
        logic: LogicClient::new(
            logic_channel(cfg, &registry)
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
    tracing::info!(addr = %local, id = %me.id, "api serving HTTP");
    // TCP_NODELAY, so that a response is never held back waiting for the client's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
    });
    let upload_max = cfg
        .im_enabled()
        .then(|| cfg.im_upload_max_bytes.min(MAX_UPLOAD_BYTES));
    let app = router(state, cfg.push_max_body, upload_max)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    readiness.set_serving();
    let drain_delay = std::time::Duration::from_millis(cfg.drain_delay_ms);
    let (reg, id) = (registry.clone(), me.id.clone());
    let stopped = async move {
        shutdown.cancelled().await;
        readiness.set_draining();
        if let Err(e) = reg.deregister(Role::Api, &id).await {
            tracing::warn!("deregister: {e}");
        }
        if !drain_delay.is_zero() {
            tracing::info!("draining: serving {drain_delay:?} more while load balancers move away");
            tokio::time::sleep(drain_delay).await;
        }
    };
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await;
    if let Err(e) = registry.deregister(Role::Api, &me.id).await {
        tracing::warn!("deregister: {e}");
    }
    tracing::info!("api stopped");
    Ok(served?)
}
