//! The Redis session store. Key scheme (all under a configurable prefix, default `imcloud:`, so several
//! deployments can share one Redis):
//!
//! | key | type | value | TTL |
//! |---|---|---|---|
//! | `{prefix}key:{key}` | string | `{mid}:{server}` | session TTL, renewed by heartbeats |
//! | `{prefix}mid:{mid}` | hash | field key -> server | session TTL, renewed by heartbeats |
//! | `{prefix}online:{server}` | string | JSON [`ServerOnline`] | online TTL, renewed by each report |
//!
//! A key's string is the source of truth: a hash field whose key string is missing or names another
//! session is stale (a hash has one TTL for all its fields) and is ignored and cleaned up on read.
//! Add, renew, remove and stale-field cleanup are Lua scripts, so each is atomic and touches exactly one
//! (mid, key, server). The add script touches the previous owner's hash by name, so this store needs a
//! single Redis (primary), not Redis Cluster.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use crate::sessions::{ServerOnline, Session, SessionError, SessionStore};

/// Key prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "imcloud:";

const ADD: &str = r"
local prev = redis.call('GET', KEYS[1])
if prev then
  local pmid = string.match(prev, '^(-?%d+):')
  if pmid and pmid ~= ARGV[2] then redis.call('HDEL', ARGV[5] .. 'mid:' .. pmid, ARGV[1]) end
end
redis.call('SET', KEYS[1], ARGV[2] .. ':' .. ARGV[3], 'PX', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
";

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[2] .. ':' .. ARGV[3] then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[3] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
";

/// Drops a hash field whose key string no longer names that session (re-checked inside the script).
const CLEAN: &str = r"
if redis.call('GET', KEYS[2]) == ARGV[3] .. ':' .. ARGV[2] then return 0 end
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
";

const REMOVE: &str = r"
local removed = 0
if redis.call('GET', KEYS[1]) == ARGV[2] .. ':' .. ARGV[3] then
  redis.call('DEL', KEYS[1])
  removed = 1
end
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[3] then redis.call('HDEL', KEYS[2], ARGV[1]) end
return removed
";

pub struct RedisSessions {
    conn: ConnectionManager,
    prefix: String,
    ttl: Duration,
    online_ttl: Duration,
    add: Script,
    renew: Script,
    remove: Script,
    clean: Script,
}

fn unavailable(e: redis::RedisError) -> SessionError {
    imcloud_common::engine_errors::count("redis");
    SessionError::Unavailable(e.to_string())
}

fn millis(d: Duration) -> u64 {
    d.as_millis().max(1) as u64
}

impl RedisSessions {
    /// Connects to `url` (redis://…); the connection reconnects by itself after Redis restarts.
    pub async fn connect(
        url: &str,
        prefix: &str,
        ttl: Duration,
        online_ttl: Duration,
    ) -> Result<RedisSessions, SessionError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        // Bounded waits: a Redis that is down fails calls within seconds instead of stalling handshakes.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        Ok(RedisSessions {
            conn,
            prefix: prefix.to_string(),
            ttl,
            online_ttl,
            add: Script::new(ADD),
            renew: Script::new(RENEW),
            remove: Script::new(REMOVE),
            clean: Script::new(CLEAN),
        })
    }

    fn key_key(&self, key: &str) -> String {
        format!("{}key:{key}", self.prefix)
    }

    fn mid_key(&self, mid: i64) -> String {
        format!("{}mid:{mid}", self.prefix)
    }

    fn online_key(&self, server: &str) -> String {
        format!("{}online:{server}", self.prefix)
    }

    async fn run(&self, script: &Script, s: &Session) -> Result<i64, SessionError> {
        let mut conn = self.conn.clone();
        script
            .key(self.key_key(&s.key))
            .key(self.mid_key(s.mid))
            .arg(&s.key)
            .arg(s.mid)
            .arg(&s.server)
            .arg(millis(self.ttl))
            .arg(&self.prefix)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// `(mid, server)` from a key string.
    fn parse_owner(v: &str) -> Option<(i64, &str)> {
        let (mid, server) = v.split_once(':')?;
        Some((mid.parse().ok()?, server))
    }
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn add(&self, s: &Session) -> Result<(), SessionError> {
        self.run(&self.add, s).await.map(|_| ())
    }

    async fn renew(&self, s: &Session) -> Result<bool, SessionError> {
        Ok(self.run(&self.renew, s).await? == 1)
    }

    async fn remove(&self, s: &Session) -> Result<bool, SessionError> {
        Ok(self.run(&self.remove, s).await? == 1)
    }

    async fn sessions_by_keys(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<Session>>, SessionError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = keys.iter().map(|k| self.key_key(k)).collect();
        let mut conn = self.conn.clone();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&names)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(keys
            .iter()
            .zip(values)
            .map(|(key, v)| {
                let v = v?;
                let (mid, server) = Self::parse_owner(&v)?;
                Some(Session {
                    mid,
                    key: key.clone(),
                    server: server.to_string(),
                })
            })
            .collect())
    }

    async fn sessions_by_mids(&self, mids: &[i64]) -> Result<Vec<Session>, SessionError> {
        if mids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for &mid in mids {
            pipe.hgetall(self.mid_key(mid));
        }
        let hashes: Vec<Vec<(String, String)>> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let candidates: Vec<Session> = mids
            .iter()
            .zip(hashes)
            .flat_map(|(&mid, fields)| {
                fields
                    .into_iter()
                    .map(move |(key, server)| Session { mid, key, server })
            })
            .collect();
        let keys: Vec<String> = candidates.iter().map(|s| s.key.clone()).collect();
        let owners = self.sessions_by_keys(&keys).await?;
        let mut live = Vec::new();
        for (candidate, owner) in candidates.into_iter().zip(owners) {
            if owner.as_ref() == Some(&candidate) {
                live.push(candidate);
                continue;
            }
            // Best effort, and atomic: the script re-checks, so a session re-added meanwhile is kept.
            let cleaned = self
                .clean
                .key(self.mid_key(candidate.mid))
                .key(self.key_key(&candidate.key))
                .arg(&candidate.key)
                .arg(&candidate.server)
                .arg(candidate.mid)
                .invoke_async::<i64>(&mut conn)
                .await;
            if let Err(e) = cleaned {
                tracing::debug!("cleaning a stale session field: {e}");
            }
        }
        Ok(live)
    }

    async fn put_online(&self, server: &str, online: &ServerOnline) -> Result<(), SessionError> {
        let json =
            serde_json::to_string(online).map_err(|e| SessionError::Unavailable(e.to_string()))?;
        let mut conn = self.conn.clone();
        conn.pset_ex::<_, _, ()>(self.online_key(server), json, millis(self.online_ttl))
            .await
            .map_err(unavailable)
    }

    async fn online(&self, servers: &[String]) -> Result<Vec<Option<ServerOnline>>, SessionError> {
        if servers.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = servers.iter().map(|s| self.online_key(s)).collect();
        let mut conn = self.conn.clone();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&names)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(values
            .into_iter()
            .map(|v| {
                v.and_then(|json| {
                    serde_json::from_str(&json)
                        .map_err(|e| tracing::warn!("bad online report in Redis: {e}"))
                        .ok()
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Redis the tests use: `IMCLOUD_TEST_REDIS_URL`, else the local one.
    pub fn test_url() -> String {
        std::env::var("IMCLOUD_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_string())
    }

    fn test_prefix() -> String {
        format!(
            "{}:",
            imcloud_common::test_name::unique_test_name("imcloud-test")
        )
    }

    async fn store(prefix: &str, ttl: Duration) -> RedisSessions {
        RedisSessions::connect(&test_url(), prefix, ttl, ttl)
            .await
            .unwrap_or_else(|e| panic!("Redis at {} is needed for this test: {e}", test_url()))
    }

    async fn clean(prefix: &str) {
        let client = redis::Client::open(test_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = conn.keys(format!("{prefix}*")).await.unwrap();
        if !keys.is_empty() {
            let _: () = conn.del(keys).await.unwrap();
        }
    }

    #[tokio::test]
    async fn conformance() {
        let prefix = test_prefix();
        let s = store(&prefix, Duration::from_secs(2)).await;
        crate::sessions_conformance::run(&s, Duration::from_secs(2)).await;
        clean(&prefix).await;
    }

    #[tokio::test]
    async fn stale_hash_fields_are_not_returned() {
        let prefix = test_prefix();
        let s = store(&prefix, Duration::from_secs(60)).await;
        let a = Session {
            mid: 1,
            key: "a".into(),
            server: "c1".into(),
        };
        s.add(&a).await.unwrap();
        // The key string lapses (as if its connection died) while the mid hash lives on.
        let mut conn = s.conn.clone();
        let _: () = conn.del(s.key_key("a")).await.unwrap();
        assert!(s.sessions_by_mids(&[1]).await.unwrap().is_empty());
        let left: Vec<(String, String)> = conn.hgetall(s.mid_key(1)).await.unwrap();
        assert!(left.is_empty(), "stale field cleaned: {left:?}");
        // A key that moves to another user leaves the old user's hash.
        s.add(&a).await.unwrap();
        s.add(&Session {
            mid: 2,
            key: "a".into(),
            server: "c2".into(),
        })
        .await
        .unwrap();
        assert!(s.sessions_by_mids(&[1]).await.unwrap().is_empty());
        assert_eq!(
            s.sessions_by_keys(&["a".into()]).await.unwrap()[0]
                .as_ref()
                .map(|x| x.mid),
            Some(2)
        );
        clean(&prefix).await;
    }

    /// Runs the cleanup script on one hash field.
    async fn clean_field(s: &RedisSessions, mid: i64, key: &str, server: &str) -> i64 {
        let mut conn = s.conn.clone();
        let mut invocation = s.clean.key(s.mid_key(mid));
        invocation.key(s.key_key(key)).arg(key).arg(server).arg(mid);
        invocation.invoke_async(&mut conn).await.unwrap()
    }

    #[tokio::test]
    async fn cleanup_keeps_a_field_whose_session_came_back() {
        let prefix = test_prefix();
        let s = store(&prefix, Duration::from_secs(60)).await;
        let a = Session {
            mid: 1,
            key: "a".into(),
            server: "c1".into(),
        };
        s.add(&a).await.unwrap();
        // A reader saw the field as stale, but the session was re-added before its cleanup ran.
        let mut conn = s.conn.clone();
        assert_eq!(
            clean_field(&s, 1, "a", "c1").await,
            0,
            "live session's field is kept"
        );
        assert_eq!(s.sessions_by_mids(&[1]).await.unwrap(), vec![a.clone()]);
        let _: () = conn.del(s.key_key("a")).await.unwrap();
        assert_eq!(
            clean_field(&s, 1, "a", "c1").await,
            1,
            "a really stale field is dropped"
        );
        clean(&prefix).await;
    }

    #[tokio::test]
    async fn deployments_with_different_prefixes_do_not_see_each_other() {
        let (p1, p2) = (test_prefix(), format!("{}other:", test_prefix()));
        let (s1, s2) = (
            store(&p1, Duration::from_secs(60)).await,
            store(&p2, Duration::from_secs(60)).await,
        );
        s1.add(&Session {
            mid: 1,
            key: "k".into(),
            server: "c".into(),
        })
        .await
        .unwrap();
        assert_eq!(
            s2.sessions_by_keys(&["k".into()]).await.unwrap(),
            vec![None]
        );
        clean(&p1).await;
        clean(&p2).await;
    }
}
