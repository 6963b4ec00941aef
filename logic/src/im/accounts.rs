//! Accounts: register, log in and out, my profile, other users' profiles. Passwords are hashed with
//! argon2id; a login token is a JWT bound to a row of `auth_sessions`, which logout deletes.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::args::{Args, opt_text, text};
use super::db::now_ms;
use super::error::{ImError, is_unique_violation};
use super::login_keys::login_of;
use super::users::{User, user_columns};
use super::{Im, ImResult, Reply};
use crate::token::TokenError;

pub const DEFAULT_FRIEND_GROUP: &str = "My friends";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterReq {
    pub email: String,
    pub nickname: String,
    /// 8 to 128 characters
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginReq {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginReply {
    /// Bearer token for /v1 and the websocket auth body's `token`.
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
    pub user: User,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeReq {
    pub nickname: Option<String>,
    pub avatar: Option<String>,
    pub signature: Option<String>,
    /// unknown, male or female
    pub sex: Option<String>,
    /// YYYY-MM-DD, or empty to clear
    pub birthday: Option<String>,
    pub location: Option<String>,
    /// A new password; needs `current_password`.
    pub password: Option<String>,
    pub current_password: Option<String>,
}

pub fn normalize_email(email: &str) -> Result<String, ImError> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && match e.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if valid {
        Ok(e)
    } else {
        Err(ImError::invalid("email is not a valid address"))
    }
}

fn check_password(password: &str) -> Result<(), ImError> {
    let n = password.chars().count();
    if !(8..=128).contains(&n) {
        return Err(ImError::invalid("password must be 8 to 128 characters"));
    }
    Ok(())
}

fn check_birthday(b: &str) -> Result<(), ImError> {
    if b.is_empty() {
        return Ok(());
    }
    let parts: Vec<&str> = b.split('-').collect();
    let ok = parts.len() == 3
        && parts[0].len() == 4
        && parts[1].len() == 2
        && parts[2].len() == 2
        && matches!(parts[0].parse::<u32>(), Ok(1900..=2100))
        && matches!(parts[1].parse::<u32>(), Ok(1..=12))
        && matches!(parts[2].parse::<u32>(), Ok(1..=31));
    if ok {
        Ok(())
    } else {
        Err(ImError::invalid("birthday must be YYYY-MM-DD"))
    }
}

/// An avatar or image reference: an upload path or an http(s) URL.
pub fn check_image_ref(field: &str, v: &str) -> Result<String, ImError> {
    let v = text(field, v, 0, 512)?;
    let upload = v
        .strip_prefix("/v1/uploads/")
        .is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    let web =
        (v.starts_with("https://") || v.starts_with("http://")) && !v.contains(char::is_whitespace);
    if v.is_empty() || upload || web {
        Ok(v)
    } else {
        Err(ImError::invalid(format!(
            "{field} must be an upload path (/v1/uploads/…) or an http(s) URL"
        )))
    }
}

/// Argon2 runs at most this many at once (each takes ~19 MiB and a core for tens of milliseconds), so a
/// flood of registrations or logins queues instead of exhausting memory and CPU.
static ARGON2_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Verified against for unknown emails, so that a login takes as long whether or not the account exists.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$JqgBSSu+7HvQ6xWc0VlZ2qJOQW5oN7RP9RSUw4OZfwg";

async fn hash_password(password: String) -> Result<String, ImError> {
    let _slot = ARGON2_SLOTS
        .acquire()
        .await
        .map_err(|_| ImError::new(503, "unavailable", "shutting down"))?;
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| ImError::new(500, "internal", format!("hashing: {e}")))?
    .map_err(|e| ImError::new(500, "internal", format!("hashing: {e}")))
}

async fn password_matches(password: String, hash: String) -> bool {
    let Ok(_slot) = ARGON2_SLOTS.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

impl Im {
    pub(crate) async fn register(&self, a: &Args) -> ImResult {
        let req: RegisterReq = a.body()?;
        let email = normalize_email(&req.email)?;
        let nickname = text("nickname", &req.nickname, 1, 32)?;
        check_password(&req.password)?;
        if self.user_id_by_email(&email).await?.is_some() {
            return Err(ImError::conflict("email is already registered"));
        }
        let hash = hash_password(req.password).await?;
        for _ in 0..5 {
            let account_no = rand::rng()
                .random_range(100_000_000..1_000_000_000i64)
                .to_string();
            let now = now_ms();
            let mut tx = self.db.pool.begin().await?;
            let inserted = sqlx::query_as::<_, User>(concat!(
                "INSERT INTO users (account_no, email, nickname, password_hash, created_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING ",
                user_columns!()
            ))
            .bind(&account_no)
            .bind(&email)
            .bind(&nickname)
            .bind(&hash)
            .bind(now)
            .fetch_one(&mut *tx)
            .await;
            let user = match inserted {
                Ok(u) => u,
                // The email was taken meanwhile, or the account number is in use: try another.
                Err(e) if is_unique_violation(&e) => {
                    if self.user_id_by_email(&email).await?.is_some() {
                        return Err(ImError::conflict("email is already registered"));
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            sqlx::query(
                "INSERT INTO friend_groups (user_id, name, is_default, created_at) VALUES ($1, $2, 1, $3)",
            )
            .bind(user.id)
            .bind(DEFAULT_FRIEND_GROUP)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::info!(user = user.id, "registered");
            return Ok(Reply::created(user));
        }
        Err(ImError::conflict("email is already registered"))
    }

    async fn user_id_by_email(&self, email: &str) -> Result<Option<i64>, ImError> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT id FROM users WHERE email = $1")
                .bind(email)
                .fetch_optional(&self.db.pool)
                .await?,
        )
    }

    pub(crate) async fn login(&self, a: &Args, client: &str) -> ImResult {
        let req: LoginReq = a.body()?;
        if req.password.is_empty() {
            return Err(ImError::invalid("email and password are required"));
        }
        let email = normalize_email(&req.email)?;
        self.login_limiter.check(&email, client)?;
        let row = sqlx::query_as::<_, (i64, String)>(
            "SELECT id, password_hash FROM users WHERE email = $1",
        )
        .bind(&email)
        .fetch_optional(&self.db.pool)
        .await?;
        let id = match row {
            Some((id, hash)) if password_matches(req.password.clone(), hash.clone()).await => id,
            Some(_) => {
                self.login_limiter.failed(&email, client);
                return Err(ImError::unauthenticated("wrong email or password"));
            }
            None => {
                // As slow as a wrong password, so that timing does not tell which emails exist.
                password_matches(req.password, DUMMY_HASH.to_string()).await;
                self.login_limiter.failed(&email, client);
                return Err(ImError::unauthenticated("wrong email or password"));
            }
        };
        self.login_limiter.succeeded(&email);
        let jti = uuid::Uuid::new_v4().to_string();
        let (token, expires_at) = self
            .tokens
            .issue_login(id, self.settings.login_ttl_secs, &jti)
            .map_err(|e| ImError::new(500, "internal", e.to_string()))?;
        sqlx::query(
            "INSERT INTO auth_sessions (jti, user_id, expires_at, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&jti)
        .bind(id)
        .bind(expires_at as i64 * 1000)
        .bind(now_ms())
        .execute(&self.db.pool)
        .await?;
        let user = self.user_or_404(id).await?;
        Ok(Reply::ok(LoginReply {
            token,
            expires_at,
            user,
        }))
    }

    pub(crate) async fn logout(&self, token: &str) -> ImResult {
        let claims = self
            .tokens
            .decode(token)
            .map_err(|e| ImError::unauthenticated(e.to_string()))?;
        let mut kick = Vec::new();
        if let Some(jti) = claims.jti {
            sqlx::query("DELETE FROM auth_sessions WHERE jti = $1")
                .bind(&jti)
                .execute(&self.db.pool)
                .await?;
            // This login's open connections close too (their keys name the login).
            if let Ok(mid) = claims.sub.parse::<i64>() {
                kick = self.login_connections(mid, |login| login == jti).await;
            }
        }
        // Expired sessions of anyone are swept on the way.
        sqlx::query("DELETE FROM auth_sessions WHERE expires_at < $1")
            .bind(now_ms())
            .execute(&self.db.pool)
            .await?;
        let mut reply = Reply::json(200, json!({"logged_out": true}));
        if !kick.is_empty() {
            reply.kick = Some((kick, "logged out".into()));
        }
        Ok(reply)
    }

    /// The keys of `mid`'s live connections opened by the logins `pick` chooses (by jti).
    async fn login_connections(&self, mid: i64, pick: impl Fn(&str) -> bool) -> Vec<String> {
        match self.sessions.sessions_by_mids(&[mid]).await {
            Ok(s) => s
                .into_iter()
                .map(|s| s.key)
                .filter(|k| login_of(k).is_some_and(&pick))
                .collect(),
            Err(e) => {
                tracing::warn!(mid, "cannot list the connections to close: {e}");
                Vec::new()
            }
        }
    }

    /// Ends every login of `me` but the one `token` belongs to (after a password change); returns
    /// their connections to close.
    async fn end_other_logins(
        &self,
        me: i64,
        token: &str,
    ) -> Result<Option<(Vec<String>, String)>, ImError> {
        let current = self
            .tokens
            .decode(token)
            .ok()
            .and_then(|c| c.jti)
            .unwrap_or_default();
        sqlx::query("DELETE FROM auth_sessions WHERE user_id = $1 AND jti <> $2")
            .bind(me)
            .bind(&current)
            .execute(&self.db.pool)
            .await?;
        let keys = self.login_connections(me, |login| login != current).await;
        Ok((!keys.is_empty()).then(|| (keys, "password changed: log in again".to_string())))
    }

    /// The user a login token belongs to, if the token is valid and its session was not logged out.
    pub async fn authenticate(&self, token: &str) -> Result<i64, ImError> {
        let claims = self.tokens.decode(token).map_err(|e| match e {
            TokenError::Missing => {
                ImError::unauthenticated("missing login token (Authorization: Bearer <token>)")
            }
            e => ImError::unauthenticated(e.to_string()),
        })?;
        let jti = claims.jti.ok_or_else(|| {
            ImError::unauthenticated("not a login token (log in with POST /v1/sessions)")
        })?;
        let mid: i64 = claims
            .sub
            .parse()
            .map_err(|_| ImError::unauthenticated("token subject is not a user id"))?;
        if !self.login_session_live(&jti, mid).await? {
            return Err(ImError::unauthenticated(
                "this login has ended (logged out)",
            ));
        }
        Ok(mid)
    }

    /// Whether login session `jti` of `mid` exists and has not expired.
    pub async fn login_session_live(&self, jti: &str, mid: i64) -> Result<bool, ImError> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM auth_sessions WHERE jti = $1 AND user_id = $2 AND expires_at > $3",
        )
        .bind(jti)
        .bind(mid)
        .bind(now_ms())
        .fetch_one(&self.db.pool)
        .await?
            > 0)
    }

    pub(crate) async fn me(&self, me: i64) -> ImResult {
        Ok(Reply::ok(self.user_or_404(me).await?))
    }

    pub(crate) async fn update_me(&self, me: i64, a: &Args, token: &str) -> ImResult {
        let req: UpdateMeReq = a.body()?;
        let nickname = opt_text("nickname", req.nickname.as_deref(), 1, 32)?;
        let avatar = req
            .avatar
            .as_deref()
            .map(|v| check_image_ref("avatar", v))
            .transpose()?;
        let signature = opt_text("signature", req.signature.as_deref(), 0, 200)?;
        let location = opt_text("location", req.location.as_deref(), 0, 64)?;
        if let Some(s) = &req.sex
            && !matches!(s.as_str(), "unknown" | "male" | "female")
        {
            return Err(ImError::invalid("sex must be unknown, male or female"));
        }
        if let Some(b) = &req.birthday {
            check_birthday(b)?;
        }
        let mut password_hash = None;
        if let Some(new) = req.password {
            check_password(&new)?;
            let current = req
                .current_password
                .ok_or_else(|| ImError::invalid("changing the password needs current_password"))?;
            let (hash,): (String,) =
                sqlx::query_as("SELECT password_hash FROM users WHERE id = $1")
                    .bind(me)
                    .fetch_one(&self.db.pool)
                    .await?;
            if !password_matches(current, hash).await {
                return Err(ImError::forbidden("current_password is wrong"));
            }
            password_hash = Some(hash_password(new).await?);
        }
        sqlx::query(
            "UPDATE users SET nickname = COALESCE($2, nickname), avatar = COALESCE($3, avatar), \
             signature = COALESCE($4, signature), sex = COALESCE($5, sex), birthday = COALESCE($6, birthday), \
             location = COALESCE($7, location), password_hash = COALESCE($8, password_hash) WHERE id = $1",
        )
        .bind(me)
        .bind(nickname)
        .bind(avatar)
        .bind(signature)
        .bind(req.sex)
        .bind(req.birthday)
        .bind(location)
        .bind(password_hash.as_ref())
        .execute(&self.db.pool)
        .await?;
        let mut reply = self.me(me).await?;
        if password_hash.is_some() {
            reply.kick = self.end_other_logins(me, token).await?;
        }
        Ok(reply)
    }

    pub(crate) async fn user(&self, me: i64, a: &Args) -> ImResult {
        let id = a.id("id")?;
        let user = self.user_or_404(id).await?;
        let show_email = id == me || self.are_friends(me, id).await?;
        let mut public = user.public(show_email);
        public.online = Some(!self.online(&[id]).await.is_empty());
        Ok(Reply::ok(public))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_lowercased() {
        assert_eq!(
            normalize_email(" A@Example.COM "),
            Ok("a@example.com".into())
        );
        for bad in ["", "a", "a@b", "@b.c", "a@.c", "a@b.", "a b@c.d", "a@b@c.d"] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn profile_fields_are_checked() {
        assert!(check_birthday("1990-02-28").is_ok());
        assert!(check_birthday("").is_ok());
        assert!(check_birthday("1990-13-01").is_err());
        assert!(check_birthday("90-01-01").is_err());
        assert!(check_image_ref("avatar", "/v1/uploads/0123456789abcdef0123456789abcdef").is_ok());
        assert!(check_image_ref("avatar", "/v1/uploads/../../v1/me").is_err());
        assert!(check_image_ref("avatar", "https://cdn.example.com/a.png").is_ok());
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(check_image_ref("avatar", "javascript:alert(1)").is_err());
        assert!(check_password("short").is_err());
    }
}
