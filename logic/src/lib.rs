//! imcloud logic: authenticates connections, owns the session map and online counts, and turns pushes into
//! queue messages addressed to the comets that hold the target connections.

pub mod auth_body;
pub mod im;
pub mod nodes;
pub mod online;
pub mod push;
pub mod server;
pub mod sessions;
#[doc(hidden)]
pub mod sessions_conformance;
pub mod sessions_memory;
pub mod sessions_redis;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use imcloud_common::grpc_channel;
use imcloud_common::im_routes::{MAX_IM_CALL_BYTES, MAX_UPLOAD_BYTES};
use imcloud_common::internal_auth::{InternalAuth, InternalAuthLayer, LOGIC_POLICY};
use imcloud_common::queue::QueueProducer;
use imcloud_common::registry::{Registry, RegistryError};
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
    /// The IM stores (opened and migrated by the caller, see [`im::db::Db::open`]).
    pub db: im::db::Db,
}

/// Refuses IM settings that cannot work (logic checks them again when it starts).
pub fn check_im_settings(cfg: &Config) -> Result<(), LogicError> {
    let bad = |m: &str| Err(LogicError::Config(m.to_string()));
    if !matches!(cfg.im_device_policy.as_str(), "multi" | "replace") {
        return bad("IMCLOUD_IM_DEVICE_POLICY must be multi or replace");
    }
    if cfg.im_login_ttl_secs == 0 {
        return bad("IMCLOUD_IM_LOGIN_TTL_SECS must be at least 1");
    }
    if cfg.im_max_group_size < 2 {
        return bad("IMCLOUD_IM_MAX_GROUP_SIZE must be at least 2");
    }
    if cfg.im_max_groups_owned < 0 {
        return bad("IMCLOUD_IM_MAX_GROUPS_OWNED must not be negative");
    }
    if cfg.im_upload_max_bytes == 0 || cfg.im_upload_max_bytes > MAX_UPLOAD_BYTES {
        return bad("IMCLOUD_IM_UPLOAD_MAX_BYTES must be between 1 and 64 MiB");
    }
    Ok(())
}

/// The IM tier's settings from the configuration.
pub fn im_settings(cfg: &Config) -> im::ImSettings {
    im::ImSettings {
        login_ttl_secs: cfg.im_login_ttl_secs,
        max_groups_owned: cfg.im_max_groups_owned,
        max_group_size: cfg.im_max_group_size,
        private_chat_friends_only: cfg.im_private_chat_friends_only,
        upload_max_bytes: cfg.im_upload_max_bytes,
        login_attempts_per_minute: cfg.im_login_attempts_per_minute,
        one_device_per_platform: cfg.im_device_policy == "replace",
    }
}

/// Serves the logic gRPC API on `listener` until `shutdown`, registered in the registry meanwhile.
pub async fn run(
    cfg: &Config,
    deps: LogicDeps,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), LogicError> {
    if cfg.auth_secret.is_empty() {
        return Err(LogicError::Config("IMCLOUD_AUTH_SECRET must be set".into()));
    }
    if cfg.api_key.is_empty() {
        return Err(LogicError::Config("IMCLOUD_API_KEY must be set".into()));
    }
    check_im_settings(cfg)?;
    let keys = TokenKeys::from_config(cfg).map_err(|e| LogicError::Config(e.to_string()))?;
    let auth = InternalAuth::from_config(cfg).map_err(|e| LogicError::Config(e.to_string()))?;
    let local = listener
        .local_addr()
        .map_err(|e| LogicError::Config(e.to_string()))?;
    let online = Arc::new(Online::new(deps.registry.clone(), deps.sessions.clone()));
    let service = LogicService {
        tokens: Tokens::with_keys(keys.clone(), cfg.token_max_ttl_secs),
        api_key: cfg.api_key.clone(),
        sessions: deps.sessions.clone(),
        registry: deps.registry.clone(),
        pusher: Pusher::new(deps.sessions.clone(), deps.queue.clone(), cfg.push_max_body),
        online: online.clone(),
        heartbeat_secs: cfg.heartbeat_secs,
        heartbeat_max_misses: cfg.heartbeat_max_misses,
        im: Arc::new(im::Im::new(
            deps.db,
            keys,
            im_settings(cfg),
            deps.sessions.clone(),
        )),
    };

    let mut me = NodeInfo::new(Role::Logic, cfg.node_id_or(local.port()));
    me.grpc_addr = imcloud_common::node::advertised(local, &cfg.advertise_host());
    deps.registry.register(me.clone()).await?;

    let refresh = tokio::spawn(refresh_online(
        online,
        Duration::from_secs(cfg.online_renew_secs),
        shutdown.clone(),
    ));
    tracing::info!(addr = %local, id = %me.id, "logic serving gRPC");
    // Every call is authorised before its RPC runs (comet-only, api-or-API-key, API key): see
    // imcloud_common::internal_auth.
    let served = grpc_channel::server()
        .layer(InternalAuthLayer::new(
            auth.clone(),
            &LOGIC_POLICY,
            &cfg.api_key,
        ))
        .add_service(
            LogicServer::new(service)
                .max_decoding_message_size(MAX_IM_CALL_BYTES)
                .max_encoding_message_size(MAX_IM_CALL_BYTES),
        )
        .serve_with_incoming_shutdown(
            grpc_channel::incoming(listener, auth, "logic gRPC"),
            shutdown.cancelled(),
        )
        .await;
    refresh.abort();
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
