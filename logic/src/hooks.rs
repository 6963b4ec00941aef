//! The one interface through which a tier above the push platform (the IM tier) takes part in a
//! connection's life. Logic's Connect, Disconnect and Receive know sessions and tokens only; what a
//! login means (its key, the device policy, presence, op 4 commands) hangs off these hooks. With the
//! IM tier off (`IMCLOUD_IM=off`) there are no hooks and the push platform pays nothing for them.

use async_trait::async_trait;

use crate::effects::Effects;
use crate::sessions::Session;
use crate::token::Claims;

/// A connection whose token verified, before its session is added.
pub struct Admit<'a> {
    pub mid: i64,
    pub claims: &'a Claims,
    /// The platform from the auth body, as given.
    pub platform: &'a str,
    pub client_ip: &'a str,
}

/// The hooks' decision about a connection they own.
pub struct Admission {
    /// The connection's key (the client's is ignored).
    pub key: String,
    /// Effects before the session is added (closing older connections).
    pub effects: Effects,
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The connection may not open (answered as UNAUTHENTICATED).
    #[error("{0}")]
    Refused(String),
    /// The hook's stores cannot answer now (UNAVAILABLE).
    #[error("{0}")]
    Unavailable(String),
}

#[async_trait]
pub trait ConnectionHooks: Send + Sync + 'static {
    /// `Ok(None)`: not ours, the core keeps the client's key. `Ok(Some)`: ours, with this key.
    async fn admit(&self, c: &Admit<'_>) -> Result<Option<Admission>, HookError>;
    /// The session was added.
    async fn opened(&self, s: &Session, claims: &Claims) -> Effects;
    /// The session was removed (it existed).
    async fn closed(&self, s: &Session) -> Effects;
    /// An op 4 body from the connection `key` of `mid`; returns the op 5 body.
    async fn receive(&self, mid: i64, key: &str, body: &[u8]) -> (Vec<u8>, Effects);
}
