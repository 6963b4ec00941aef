//! imcloud logic: authenticates connections, owns the session map and online counts, and turns pushes into
//! queue messages addressed to the comets that hold the target connections. It also runs the IM tier (`im`).
//!
//! `run()` refuses to start without `auth_secret` and `api_key`, checks the IM settings
//! (`check_im_settings`), builds `LogicService` from `LogicDeps` (the adapters and the database), registers,
//! recomputes the online room totals every `online_renew_secs`, and serves gRPC behind `InternalAuthLayer`
//! (`LOGIC_POLICY`) with messages up to `MAX_IM_CALL_BYTES` (the upload ceiling plus 1 MiB), until its
//! drain (`Readiness::drain_on`).

pub mod auth_body;
pub mod effects;
pub mod hooks;
pub mod im;
pub mod nodes;
pub mod online;
pub mod push;
pub mod server;
pub mod sessions;
#[cfg(test)]
mod sessions_conformance;
pub mod sessions_memory;
pub mod sessions_redis;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use imcloud_common::grpc_channel;
use imcloud_common::grpc_telemetry::ServerTelemetry;
use imcloud_common::im::operations::{MAX_IM_CALL_BYTES, MAX_UPLOAD_BYTES};
use imcloud_common::internal_auth::{InternalAuth, InternalAuthLayer, LOGIC_POLICY};
use imcloud_common::queue::QueueProducer;
use imcloud_common::readiness::Readiness;
use imcloud_common::registry::{Registry, RegistryError};
use imcloud_common::room_history::RoomHistory;
use imcloud_common::{Config, NodeInfo, Role};
use imcloud_proto::logic::logic_server::LogicServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::online::Online;
use crate::push::Pusher;
use crate::server::LogicService;
use crate::sessions::SessionStore;
use crate::token::{TokenKeys, Tokens};

#[derive(Debug, thiserror::Error)]
pub enum LogicError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The adapters logic runs on.
pub struct LogicDeps {
    pub registry: Arc<dyn Registry>,
    pub sessions: Arc<dyn SessionStore>,
    pub queue: Arc<dyn QueueProducer>,
    /// The room histories job appends persistent room pushes to; `None` when none is shared with the
    /// jobs (roles in separate processes without Redis): persistent pushes and op 23 recoveries are then
    /// refused.
    pub history: Option<Arc<dyn RoomHistory>>,
    /// The IM stores (opened and migrated by the caller, see [`im::db::Db::open`]); `None` when the IM
    /// tier is off (`IMCLOUD_IM=off`).
    pub db: Option<im::db::Db>,
}

/// Refuses IM settings that cannot work (logic checks them again when it starts).
pub fn check_im_settings(cfg: &Config) -> Result<(), LogicError> {
    im_settings(cfg).map(|_| ())
}

/// The IM tier's settings from the configuration, or what is wrong with them.
pub fn im_settings(cfg: &Config) -> Result<im::ImSettings, LogicError> {
    let bad = |m: String| Err(LogicError::Config(m));
    let device_policy = match cfg.im_device_policy.parse() {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    if cfg.im_login_ttl_secs == 0 {
        return bad("IMCLOUD_IM_LOGIN_TTL_SECS must be at least 1".into());
    }
    if cfg.im_max_group_size < 2 {
        return bad("IMCLOUD_IM_MAX_GROUP_SIZE must be at least 2".into());
    }
    if cfg.im_max_groups_owned < 0 {
        return bad("IMCLOUD_IM_MAX_GROUPS_OWNED must not be negative".into());
    }
    if cfg.im_upload_max_bytes == 0 || cfg.im_upload_max_bytes > MAX_UPLOAD_BYTES {
        return bad("IMCLOUD_IM_UPLOAD_MAX_BYTES must be between 1 and 64 MiB".into());
    }
    for (name, v) in [
        (
            "IMCLOUD_IM_FRIEND_REQUESTS_PER_DAY",
            cfg.im_friend_requests_per_day,
        ),
        ("IMCLOUD_IM_GROUPS_PER_DAY", cfg.im_groups_per_day),
        ("IMCLOUD_IM_UPLOADS_PER_HOUR", cfg.im_uploads_per_hour),
        (
            "IMCLOUD_IM_UPLOAD_BYTES_PER_DAY",
            cfg.im_upload_bytes_per_day,
        ),
    ] {
        if v < 0 {
            return bad(format!(
                "{name} must not be negative (0 turns the limit off)"
            ));
        }
    }
    let webhooks = im::webhooks::WebhookSettings::from_config(
        &cfg.im_webhook_url,
        &cfg.im_webhook_secret,
        &cfg.im_webhook_events,
        cfg.im_webhook_timeout_ms,
        cfg.im_webhook_fail_open,
    )
    .map_err(LogicError::Config)?;
    Ok(im::ImSettings {
        login_ttl_secs: cfg.im_login_ttl_secs,
        max_groups_owned: cfg.im_max_groups_owned,
        max_group_size: cfg.im_max_group_size,
        private_chat_friends_only: cfg.im_private_chat_friends_only,
        upload_max_bytes: cfg.im_upload_max_bytes,
        login_attempts_per_minute: cfg.im_login_attempts_per_minute,
        device_policy,
        edit_window_secs: cfg.im_edit_window_secs,
        recall_window_secs: cfg.im_recall_window_secs,
        typing_interval_ms: cfg.im_typing_interval_ms,
        sends_per_sec: cfg.im_sends_per_sec,
        friend_requests_per_day: cfg.im_friend_requests_per_day,
        groups_per_day: cfg.im_groups_per_day,
        uploads_per_hour: cfg.im_uploads_per_hour,
        upload_bytes_per_day: cfg.im_upload_bytes_per_day,
        webhooks,
    })
}

/// Serves the logic gRPC API on `listener` until `shutdown`, registered in the registry meanwhile. Then
/// drains: not ready and out of the registry at once, serving on for `drain_delay_ms` while callers move
/// to the other logic nodes, then no new calls (HTTP/2 GOAWAY) and the calls in flight finish.
pub async fn run(
    cfg: &Config,
    deps: LogicDeps,
    listener: TcpListener,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), LogicError> {
    if cfg.auth_secret.is_empty() {
        return Err(LogicError::Config("IMCLOUD_AUTH_SECRET must be set".into()));
    }
    if cfg.api_key.is_empty() {
        return Err(LogicError::Config("IMCLOUD_API_KEY must be set".into()));
    }
    let keys = TokenKeys::from_config(cfg).map_err(|e| LogicError::Config(e.to_string()))?;
    let auth = InternalAuth::from_config(cfg).map_err(|e| LogicError::Config(e.to_string()))?;
    let im = match deps.db {
        Some(db) if cfg.im_enabled() => Some(Arc::new(im::Im::new(
            db,
            keys.clone(),
            im_settings(cfg)?,
            deps.sessions.clone(),
        ))),
        _ => None,
    };
    let local = listener
        .local_addr()
        .map_err(|e| LogicError::Config(e.to_string()))?;
    let online = Arc::new(Online::new(deps.registry.clone(), deps.sessions.clone()));
    let service = LogicService {
        tokens: Tokens::with_keys(keys.clone(), cfg.token_max_ttl_secs),
        api_key: cfg.api_key.clone(),
        sessions: deps.sessions.clone(),
        registry: deps.registry.clone(),
        pusher: {
            let p = Pusher::new(deps.sessions.clone(), deps.queue.clone(), cfg.push_max_body);
            if deps.history.is_some() {
                p
            } else {
                p.without_room_history()
            }
        },
        history: deps.history.clone(),
        online: online.clone(),
        heartbeat_secs: cfg.heartbeat_secs,
        heartbeat_max_misses: cfg.heartbeat_max_misses,
        hooks: im.clone().map(|im| im as Arc<dyn hooks::ConnectionHooks>),
        im,
    };

    let mut me = NodeInfo::new(Role::Logic, cfg.node_id_or(local.port()));
    me.grpc_addr = cfg.grpc_advertised(local);
    deps.registry.register(me.clone()).await?;

    let refresh = tokio::spawn(refresh_online(
        online,
        Duration::from_secs(cfg.online_renew_secs),
        shutdown.clone(),
    ));
    tracing::info!(addr = %local, id = %me.id, "logic serving gRPC");
    readiness.set_serving();
    let stop_serving = readiness.drain_on(
        shutdown,
        deps.registry.clone(),
        Role::Logic,
        me.id.clone(),
        Duration::from_millis(cfg.drain_delay_ms),
    );
    // Every call is authorised before its RPC runs (comet-only, api-or-API-key, API key): see
    // imcloud_common::internal_auth.
    let served = grpc_channel::server()
        .layer(InternalAuthLayer::new(
            auth.clone(),
            &LOGIC_POLICY,
            &cfg.api_key,
        ))
        .add_service(ServerTelemetry::new(
            LogicServer::new(service)
                .max_decoding_message_size(MAX_IM_CALL_BYTES)
                .max_encoding_message_size(MAX_IM_CALL_BYTES),
        ))
        .serve_with_incoming_shutdown(
            grpc_channel::incoming(listener, auth, "logic gRPC"),
            stop_serving.cancelled(),
        )
        .await;
    refresh.abort();
    // Already gone unless the server ended on its own; deregistering twice is harmless.
    if let Err(e) = deps.registry.deregister(Role::Logic, &me.id).await {
        tracing::warn!("deregister: {e}");
    }
    tracing::info!("logic stopped");
    Ok(served?)
}

async fn refresh_online(online: Arc<Online>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = online.refresh().await {
                    tracing::warn!("online refresh: {e}");
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}
