//! The IM tier's side of a connection's life (the push core's `ConnectionHooks`): a login token's
//! connection must belong to a live login and gets a key naming its platform and login
//! (`login_keys.rs`); under the `replace` device policy it closes the user's older connections on the
//! same platform; a user's first connection and last close tell their online friends (presence);
//! op 4 bodies are IM commands. Connections opened with a backend token (no `jti`) are not the IM
//! tier's: the core keeps their key and nothing here runs for them.

use async_trait::async_trait;

use super::device_policy::DevicePolicy;
use super::login_keys::{is_login_key, login_key, parse_login_key, platform_tag};
use super::{Effects, Im};
use crate::hooks::{Admission, Admit, ConnectionHooks, HookError};
use crate::sessions::Session;
use crate::token::Claims;

impl Im {
    async fn connections_of(&self, mid: i64) -> Option<usize> {
        match self.sessions.sessions_by_mids(&[mid]).await {
            Ok(s) => Some(s.len()),
            Err(e) => {
                tracing::warn!(mid, "presence: {e}");
                None
            }
        }
    }

    async fn presence_effects(&self, mid: i64, online: bool) -> Effects {
        let mut effects = Effects::default();
        match self.presence_event(mid, online).await {
            Ok(Some(e)) => effects.push(e),
            Ok(None) => {}
            Err(e) => tracing::warn!(mid, "presence: {e}"),
        }
        effects
    }
}

#[async_trait]
impl ConnectionHooks for Im {
    async fn admit(&self, c: &Admit<'_>) -> Result<Option<Admission>, HookError> {
        let Some(jti) = &c.claims.jti else {
            return Ok(None);
        };
        // A login token works only while its login lasts (logout ends it).
        let live = self
            .login_session_live(jti, c.mid)
            .await
            .map_err(|e| HookError::Unavailable(e.message))?;
        if !live {
            return Err(HookError::Refused(
                "this login has ended (logged out)".into(),
            ));
        }
        let platform = platform_tag(c.platform);
        let mut effects = Effects::default();
        if self.settings.device_policy == DevicePolicy::Replace {
            let older: Vec<String> = self
                .sessions
                .sessions_by_mids(&[c.mid])
                .await
                .map_err(|e| HookError::Unavailable(e.to_string()))?
                .into_iter()
                .map(|s| s.key)
                .filter(|k| {
                    parse_login_key(k)
                        .is_some_and(|(p, _)| self.settings.device_policy.closes(&platform, p))
                })
                .collect();
            if !older.is_empty() {
                effects.kick = Some((
                    older,
                    format!("belogin: logged in on another {platform} device"),
                ));
            }
        }
        Ok(Some(Admission {
            key: login_key(&platform, jti),
            effects,
        }))
    }

    async fn opened(&self, s: &Session, claims: &Claims) -> Effects {
        if claims.jti.is_some() && self.connections_of(s.mid).await == Some(1) {
            return self.presence_effects(s.mid, true).await;
        }
        Effects::default()
    }

    async fn closed(&self, s: &Session) -> Effects {
        if is_login_key(&s.key) && self.connections_of(s.mid).await == Some(0) {
            return self.presence_effects(s.mid, false).await;
        }
        Effects::default()
    }

    async fn receive(&self, mid: i64, key: &str, body: &[u8]) -> (Vec<u8>, Effects) {
        self.command(mid, key, body).await
    }
}
