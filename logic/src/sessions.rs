//! The session map (mid -> key -> comet) and per-comet online reports. Embedded: [`crate::sessions_memory`];
//! distributed: Redis. Entries expire unless renewed; comets renew them on client heartbeats.
//!
//! What every implementation promises (and `sessions_conformance` checks): `add` writes with a full TTL;
//! `renew` extends it and answers `false` if the entry is missing, expired, or names another mid or comet;
//! `remove` deletes only the exact (mid, key, comet); `sessions_by_keys` gives each key's live session or
//! `None`, `sessions_by_mids` every live session of the users; `put_online` and `online` keep per-comet
//! reports with their own TTL. Logic uses `session_ttl_secs` for sessions and 3 × `online_renew_secs` for
//! reports, on both stores.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

/// One live connection: user `mid`, connection `key`, held by comet `server`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Session {
    pub mid: i64,
    pub key: String,
    pub server: String,
}

/// What a comet last reported about its connections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerOnline {
    pub room_count: HashMap<String, i32>,
    pub conn_count: u64,
    pub ip_count: u64,
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Adds or refreshes a session with a full TTL.
    async fn add(&self, s: &Session) -> Result<(), SessionError>;
    /// Extends a session's TTL; `false` when the store no longer has it (the caller adds it again).
    async fn renew(&self, s: &Session) -> Result<bool, SessionError>;
    /// Removes exactly this session (not a newer one of the same key on another comet); `true` if it existed.
    async fn remove(&self, s: &Session) -> Result<bool, SessionError>;
    /// The live session of each key, in order (`None` when the key has none).
    async fn sessions_by_keys(&self, keys: &[String])
    -> Result<Vec<Option<Session>>, SessionError>;
    /// Every live session of the given users.
    async fn sessions_by_mids(&self, mids: &[i64]) -> Result<Vec<Session>, SessionError>;
    /// Stores a comet's online report, which expires unless reported again.
    async fn put_online(&self, server: &str, online: &ServerOnline) -> Result<(), SessionError>;
    /// The last live report of each comet, in order.
    async fn online(&self, servers: &[String]) -> Result<Vec<Option<ServerOnline>>, SessionError>;
}
