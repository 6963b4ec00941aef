//! Accounts: register, log in and out, my profile, others' profiles, deleting my account. Passwords
//! are hashed with argon2id; a login token is a JWT bound to a row of `auth_sessions`, which logout
//! deletes.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use imcloud_common::im::accounts::{AccountDeleted, LoggedOut, LoginReply, PublicUser, User};
use imcloud_common::im::events::{FriendChange, FriendEvent, GroupChange, GroupEvent, LiveEvent};
use imcloud_common::im::operations::{
    DeleteMe, GetMe, GetUser, Login, Logout, RegisterUser, UpdateMe,
};
use imcloud_common::im::values::GroupRole;
use rand::Rng;

use super::db::now_ms;
use super::error::{ImError, is_unique_violation};
use super::login_keys::login_of;
use super::rows::{DELETED_NICKNAME, UserRow, role, user_columns};
use super::{Caller, Done, Event, Im, ImResult};
use crate::token::TokenError;

pub const DEFAULT_FRIEND_GROUP: &str = "My friends";

/// Argon2 runs at most this many at once (each takes ~19 MiB and a core for tens of milliseconds), so a
/// flood of registrations or logins queues instead of exhausting memory and CPU.
static ARGON2_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Verified against for unknown emails, so that a login takes as long whether or not the account exists.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$JqgBSSu+7HvQ6xWc0VlZ2qJOQW5oN7RP9RSUw4OZfwg";

/// The hasher: argon2's defaults, OWASP's parameters (19 MiB, 2 passes, 1 lane). Verifying reads the
/// parameters from the stored hash, so a stored hash verifies whatever hashed it.
fn argon2() -> Argon2<'static> {
    // Every IM integration test registers and logs in users of its own, and two full hashes per user
    // were most of those tests' CPU time. Their build (the test-support feature) takes argon2's
    // smallest parameters when its harness sets this variable; no other build reads it.
    #[cfg(feature = "test-support")]
    if std::env::var_os("IMCLOUD_TEST_FAST_PASSWORD_HASH").is_some()
        && let Ok(params) = argon2::Params::new(argon2::Params::MIN_M_COST, 1, 1, None)
    {
        return Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    }
    Argon2::default()
}

async fn hash_password(password: String) -> Result<String, ImError> {
    let _slot = ARGON2_SLOTS
        .acquire()
        .await
        .map_err(|_| ImError::unavailable("shutting down"))?;
    tokio::task::spawn_blocking(move || {
        argon2()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| ImError::internal(format!("hashing: {e}")))?
    .map_err(|e| ImError::internal(format!("hashing: {e}")))
}

async fn password_matches(password: String, hash: String) -> bool {
    let Ok(_slot) = ARGON2_SLOTS.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

impl Im {
    pub(crate) async fn register(&self, r: RegisterUser) -> ImResult<User> {
        let req = r.body;
        let email = req.email.as_str().to_string();
        if self.user_id_by_email(&email).await?.is_some() {
            return Err(ImError::conflict("email is already registered"));
        }
        let hash = hash_password(req.password.as_str().to_string()).await?;
        for _ in 0..5 {
            let account_no = rand::rng()
                .random_range(100_000_000..1_000_000_000i64)
                .to_string();
            let now = now_ms();
            let mut tx = self.db.pool.begin().await?;
            let inserted = sqlx::query_as::<_, UserRow>(concat!(
                "INSERT INTO users (account_no, email, nickname, password_hash, created_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING ",
                user_columns!()
            ))
            .bind(&account_no)
            .bind(&email)
            .bind(req.nickname.as_str())
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
            return Ok(Done::created(user.user()));
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

    pub(crate) async fn login(&self, c: &Caller<'_>, r: Login) -> ImResult<LoginReply> {
        let email = r.body.email.as_str().to_string();
        let password = r.body.password.as_str().to_string();
        self.login_limiter.check(&email, c.client)?;
        let row = sqlx::query_as::<_, (i64, String)>(
            "SELECT id, password_hash FROM users WHERE email = $1 AND deleted_at IS NULL",
        )
        .bind(&email)
        .fetch_optional(&self.db.pool)
        .await?;
        let id = match row {
            Some((id, hash)) if password_matches(password.clone(), hash.clone()).await => id,
            Some(_) => {
                self.login_limiter.failed(&email, c.client);
                return Err(ImError::unauthenticated("wrong email or password"));
            }
            None => {
                // As slow as a wrong password, so that timing does not tell which emails exist.
                password_matches(password, DUMMY_HASH.to_string()).await;
                self.login_limiter.failed(&email, c.client);
                return Err(ImError::unauthenticated("wrong email or password"));
            }
        };
        self.login_limiter.succeeded(&email, c.client);
        let jti = uuid::Uuid::new_v4().to_string();
        let (token, expires_at) = self
            .tokens
            .issue_login(id, self.settings.login_ttl_secs, &jti)
            .map_err(|e| ImError::internal(e.to_string()))?;
        sqlx::query(
            "INSERT INTO auth_sessions (jti, user_id, expires_at, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&jti)
        .bind(id)
        .bind(expires_at as i64 * 1000)
        .bind(now_ms())
        .execute(&self.db.pool)
        .await?;
        let user = self.user_or_404(id).await?.user();
        Ok(Done::ok(LoginReply {
            token,
            expires_at,
            user,
        }))
    }

    pub(crate) async fn logout(&self, c: &Caller<'_>, _r: Logout) -> ImResult<LoggedOut> {
        let claims = self
            .tokens
            .decode(c.token)
            .map_err(|e| ImError::unauthenticated(e.to_string()))?;
        let mut kick = Vec::new();
        if let Some(jti) = claims.jti {
            sqlx::query("DELETE FROM auth_sessions WHERE jti = $1")
                .bind(&jti)
                .execute(&self.db.pool)
                .await?;
            // This login's open connections close too (their keys name the login).
            kick = self.login_connections(c.me, |login| login == jti).await;
        }
        // Expired sessions of anyone are swept on the way.
        sqlx::query("DELETE FROM auth_sessions WHERE expires_at < $1")
            .bind(now_ms())
            .execute(&self.db.pool)
            .await?;
        let mut done = Done::ok(LoggedOut { logged_out: true });
        if !kick.is_empty() {
            done.effects.kick = Some((kick, "logged out".into()));
        }
        Ok(done)
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

    pub(crate) async fn me(&self, c: &Caller<'_>, _r: GetMe) -> ImResult<User> {
        Ok(Done::ok(self.user_or_404(c.me).await?.user()))
    }

    pub(crate) async fn update_me(&self, c: &Caller<'_>, r: UpdateMe) -> ImResult<User> {
        let req = r.body;
        let mut password_hash = None;
        if let Some(new) = &req.password {
            let current = req
                .current_password
                .as_ref()
                .ok_or_else(|| ImError::invalid("changing the password needs current_password"))?;
            if !self.password_ok(c.me, current.as_str()).await? {
                return Err(ImError::forbidden("current_password is wrong"));
            }
            password_hash = Some(hash_password(new.as_str().to_string()).await?);
        }
        sqlx::query(
            "UPDATE users SET nickname = COALESCE($2, nickname), avatar = COALESCE($3, avatar), \
             signature = COALESCE($4, signature), sex = COALESCE($5, sex), birthday = COALESCE($6, birthday), \
             location = COALESCE($7, location), password_hash = COALESCE($8, password_hash) WHERE id = $1",
        )
        .bind(c.me)
        .bind(req.nickname.as_ref().map(|v| v.as_str()))
        .bind(req.avatar.as_ref().map(|v| v.as_str()))
        .bind(req.signature.as_ref().map(|v| v.as_str()))
        .bind(req.sex.map(|s| s.as_str()))
        .bind(req.birthday.as_ref().map(|v| v.as_str()))
        .bind(req.location.as_ref().map(|v| v.as_str()))
        .bind(password_hash.as_ref())
        .execute(&self.db.pool)
        .await?;
        let mut done = Done::ok(self.user_or_404(c.me).await?.user());
        if password_hash.is_some() {
            done.effects.kick = self.end_other_logins(c.me, c.token).await?;
        }
        Ok(done)
    }

    async fn password_ok(&self, me: i64, given: &str) -> Result<bool, ImError> {
        let (hash,): (String,) = sqlx::query_as("SELECT password_hash FROM users WHERE id = $1")
            .bind(me)
            .fetch_one(&self.db.pool)
            .await?;
        Ok(password_matches(given.to_string(), hash).await)
    }

    pub(crate) async fn user(&self, c: &Caller<'_>, r: GetUser) -> ImResult<PublicUser> {
        let id = r.path.id.get();
        let user = self.user_or_404(id).await?;
        let show_email = id == c.me || self.are_friends(c.me, id).await?;
        let mut public = user.public(show_email);
        public.online = Some(!self.online(&[id]).await.is_empty());
        Ok(Done::ok(public))
    }

    /// Deletes my account: the profile is anonymised (messages stay, shown as from "deleted user"),
    /// the email is freed, my logins, friendships, requests, blocks, reactions, uploads and message box
    /// are removed, I leave every group (a group I own passes to its senior admin or member, or is
    /// dismissed when I am alone), and every connection of mine closes.
    pub(crate) async fn delete_me(&self, c: &Caller<'_>, r: DeleteMe) -> ImResult<AccountDeleted> {
        let me = c.me;
        if !self.password_ok(me, r.body.password.as_str()).await? {
            return Err(ImError::forbidden("password is wrong"));
        }
        let mut done = Done::ok(AccountDeleted { deleted: me });
        // Groups first (each with its own events), then everything else in one transaction.
        let groups: Vec<(i64, String)> =
            sqlx::query_as("SELECT group_id, role FROM group_members WHERE user_id = $1")
                .bind(me)
                .fetch_all(&self.db.pool)
                .await?;
        for (g, my_role) in groups {
            if role(&my_role) == GroupRole::Owner {
                let heir = sqlx::query_scalar::<_, i64>(
                    "SELECT user_id FROM group_members WHERE group_id = $1 AND user_id <> $2 \
                     ORDER BY CASE role WHEN 'admin' THEN 0 ELSE 1 END, joined_at, user_id LIMIT 1",
                )
                .bind(g)
                .bind(me)
                .fetch_optional(&self.db.pool)
                .await?;
                match heir {
                    Some(heir) => {
                        self.hand_over(g, me, heir).await?;
                        let to = self.member_ids(g).await?;
                        let mut e = GroupEvent::new(g, GroupChange::Owner).user(heir);
                        e.previous_owner = Some(me);
                        done = done.event(to, LiveEvent::Group(e));
                    }
                    None => {
                        sqlx::query("UPDATE chat_groups SET dismissed = 1 WHERE id = $1")
                            .bind(g)
                            .execute(&self.db.pool)
                            .await?;
                    }
                }
            }
            let to = self.member_ids(g).await?;
            self.drop_member(g, me).await?;
            done = done.event(
                to,
                LiveEvent::Group(GroupEvent::new(g, GroupChange::Left).user(me)),
            );
        }
        let friends: Vec<i64> =
            sqlx::query_scalar("SELECT friend_id FROM friendships WHERE user_id = $1")
                .bind(me)
                .fetch_all(&self.db.pool)
                .await?;
        let keys: Vec<String> = match self.sessions.sessions_by_mids(&[me]).await {
            Ok(s) => s.into_iter().map(|s| s.key).collect(),
            Err(e) => {
                tracing::warn!(
                    mid = me,
                    "account deletion: cannot list the connections to close: {e}"
                );
                Vec::new()
            }
        };
        let mut tx = self.db.pool.begin().await?;
        for sql in [
            "DELETE FROM auth_sessions WHERE user_id = $1",
            "DELETE FROM friendships WHERE user_id = $1 OR friend_id = $1",
            "DELETE FROM friend_requests WHERE from_id = $1 OR to_id = $1",
            "DELETE FROM friend_groups WHERE user_id = $1",
            "DELETE FROM group_join_requests WHERE user_id = $1",
            "DELETE FROM notifications WHERE user_id = $1",
            "DELETE FROM blocks WHERE user_id = $1 OR blocked_id = $1",
            "DELETE FROM reactions WHERE user_id = $1",
            "DELETE FROM uploads WHERE owner_id = $1",
        ] {
            sqlx::query(sql).bind(me).execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE users SET email = $2, nickname = $3, password_hash = '!', avatar = '', signature = '', \
             sex = 'unknown', birthday = '', location = '', deleted_at = $4 WHERE id = $1",
        )
        .bind(me)
        .bind(format!("deleted-{me}@deleted.invalid"))
        .bind(DELETED_NICKNAME)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        for f in friends {
            done = done.push(Event::new(
                vec![f],
                LiveEvent::Friend(FriendEvent {
                    user_id: me,
                    change: FriendChange::Removed,
                }),
            ));
        }
        if !keys.is_empty() {
            done.effects.kick = Some((keys, "account deleted".into()));
        }
        tracing::info!(user = me, "account deleted");
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_parses() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
