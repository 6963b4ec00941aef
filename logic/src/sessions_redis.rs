//! The Redis session store, on a single Redis or on Redis Cluster. Key scheme (all under a configurable
//! prefix, default `imcloud:`, so several deployments can share one Redis):
//!
//! | key | type | value | TTL |
//! |---|---|---|---|
//! | `{prefix}key:{key}` | string | `{mid}:{server}` | session TTL, renewed by heartbeats |
//! | `{prefix}mid:{mid}` | hash | field key -> server | session TTL, renewed by heartbeats |
//! | `{prefix}online:{server}` | string | JSON [`ServerOnline`] | online TTL, renewed by each report |
//!
//! A key's string is the source of truth: a hash field whose key string is missing or names another
//! session is stale (a hash has one TTL for all its fields) and is ignored and cleaned up on read.
//!
//! Cluster-safe by construction: every script and every pipeline touches one key, so no command ever
//! spans two hash slots, and multi-key reads (`MGET`) are split by slot by the cluster client. The
//! price is that add, renew and remove are each two single-key steps sent together rather than one
//! atomic script; the string always decides, so a reader between the two steps sees at worst a
//! connection missing from its user's list for a moment, and a renew puts a lost hash field back.
//!
//! Tests (on `IMCLOUD_TEST_REDIS_URL` and `IMCLOUD_TEST_REDIS_CLUSTER_URLS`; they fail without them): the
//! conformance suite on both, stale fields not returned, a field lost to a racing cleanup restored by the
//! next renew, keys spread over the cluster's slots, and two prefixes not seeing each other.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::try_join_all;
use imcloud_common::redis_conn::RedisConn;
use redis::{AsyncCommands, Script};

use crate::sessions::{ServerOnline, Session, SessionError, SessionStore};

/// Key prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "imcloud:";

/// Extends a key string's TTL if it still names this session.
const RENEW_KEY: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// Deletes a key string if it still names this session.
const DEL_KEY_IF: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
";

/// Deletes a hash field if it still holds this server.
const HDEL_IF: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
";

pub struct RedisSessions {
    conn: RedisConn,
    prefix: String,
    ttl: Duration,
    online_ttl: Duration,
    renew_key: Script,
    del_key_if: Script,
    hdel_if: Script,
}

fn unavailable(e: redis::RedisError) -> SessionError {
    imcloud_common::engine_errors::count("redis");
    SessionError::Unavailable(e.to_string())
}

fn millis(d: Duration) -> u64 {
    d.as_millis().max(1) as u64
}

impl RedisSessions {
    /// Connects to one Redis at `url` (redis://…); the connection reconnects by itself after Redis
    /// restarts.
    pub async fn connect(
        url: &str,
        prefix: &str,
        ttl: Duration,
        online_ttl: Duration,
    ) -> Result<RedisSessions, SessionError> {
        let conn = RedisConn::single(url).await.map_err(unavailable)?;
        Ok(Self::with(conn, prefix, ttl, online_ttl))
    }

    /// Connects to a Redis Cluster through any of its `nodes` (redis://…); the client learns the slot
    /// map from them and follows it as it changes.
    pub async fn connect_cluster(
        nodes: &[String],
        prefix: &str,
        ttl: Duration,
        online_ttl: Duration,
    ) -> Result<RedisSessions, SessionError> {
        let conn = RedisConn::cluster(nodes).await.map_err(unavailable)?;
        Ok(Self::with(conn, prefix, ttl, online_ttl))
    }

    fn with(conn: RedisConn, prefix: &str, ttl: Duration, online_ttl: Duration) -> RedisSessions {
        RedisSessions {
            conn,
            prefix: prefix.to_string(),
            ttl,
            online_ttl,
            renew_key: Script::new(RENEW_KEY),
            del_key_if: Script::new(DEL_KEY_IF),
            hdel_if: Script::new(HDEL_IF),
        }
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

    fn owner(s: &Session) -> String {
        format!("{}:{}", s.mid, s.server)
    }

    /// `(mid, server)` from a key string.
    fn parse_owner(v: &str) -> Option<(i64, &str)> {
        let (mid, server) = v.split_once(':')?;
        Some((mid.parse().ok()?, server))
    }

    /// Writes `s`'s field in its user's hash and gives the hash a full TTL (one key, so one slot).
    async fn index(&self, s: &Session) -> Result<(), SessionError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .hset(self.mid_key(s.mid), &s.key, &s.server)
            .ignore()
            .pexpire(self.mid_key(s.mid), millis(self.ttl) as i64)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// Drops `key`'s field from `mid`'s hash if it still holds `server`.
    async fn unindex(&self, mid: i64, key: &str, server: &str) -> Result<bool, SessionError> {
        let mut conn = self.conn.clone();
        let n: i64 = self
            .hdel_if
            .key(self.mid_key(mid))
            .arg(key)
            .arg(server)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(n == 1)
    }
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn add(&self, s: &Session) -> Result<(), SessionError> {
        let mut conn = self.conn.clone();
        let set = async {
            redis::cmd("SET")
                .arg(self.key_key(&s.key))
                .arg(Self::owner(s))
                .arg("PX")
                .arg(millis(self.ttl))
                .arg("GET")
                .query_async::<Option<String>>(&mut conn)
                .await
                .map_err(unavailable)
        };
        let (prev, ()) = tokio::try_join!(set, self.index(s))?;
        // The key belonged to another user: leave that user's list.
        if let Some((pmid, pserver)) = prev.as_deref().and_then(Self::parse_owner)
            && pmid != s.mid
        {
            self.unindex(pmid, &s.key, pserver).await?;
        }
        Ok(())
    }

    async fn renew(&self, s: &Session) -> Result<bool, SessionError> {
        let mut conn = self.conn.clone();
        let renewed: i64 = self
            .renew_key
            .key(self.key_key(&s.key))
            .arg(Self::owner(s))
            .arg(millis(self.ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if renewed != 1 {
            return Ok(false);
        }
        // The string proves the session live: (re)write its field, which also repairs one that a
        // reader's cleanup dropped while the session was being re-added.
        self.index(s).await?;
        Ok(true)
    }

    async fn remove(&self, s: &Session) -> Result<bool, SessionError> {
        let mut conn = self.conn.clone();
        let del = async {
            self.del_key_if
                .key(self.key_key(&s.key))
                .arg(Self::owner(s))
                .invoke_async::<i64>(&mut conn)
                .await
                .map_err(unavailable)
        };
        let (removed, _) = tokio::try_join!(del, self.unindex(s.mid, &s.key, &s.server))?;
        Ok(removed == 1)
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
        // One HGETALL per user, sent together: on a multiplexed connection they share round trips,
        // and on a cluster each goes to its own slot's node.
        let hashes = try_join_all(mids.iter().map(|&mid| {
            let mut conn = self.conn.clone();
            let name = self.mid_key(mid);
            async move {
                conn.hgetall::<_, Vec<(String, String)>>(name)
                    .await
                    .map_err(unavailable)
            }
        }))
        .await?;
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
            // Best effort: the field is dropped only if it still holds that server. A session re-added
            // in between gets its field back at its next renew.
            if let Err(e) = self
                .unindex(candidate.mid, &candidate.key, &candidate.server)
                .await
            {
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

    /// The Redis Cluster the tests use: the comma-separated seed nodes in
    /// `IMCLOUD_TEST_REDIS_CLUSTER_URLS` (`.ci/run` starts a 3-master cluster), else 127.0.0.1:7001-7003.
    pub fn test_cluster_urls() -> Vec<String> {
        std::env::var("IMCLOUD_TEST_REDIS_CLUSTER_URLS")
            .unwrap_or_else(|_| {
                "redis://127.0.0.1:7001/,redis://127.0.0.1:7002/,redis://127.0.0.1:7003/".into()
            })
            .split(',')
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect()
    }

    fn test_prefix() -> String {
        format!(
            "{}:",
            imcloud_common::test_name::unique_test_name("imcloud-test")
        )
    }

    /// Both stores the tests run on.
    #[derive(Clone, Copy, Debug)]
    enum Deployment {
        Single,
        Cluster,
    }

    async fn store(on: Deployment, prefix: &str, ttl: Duration) -> RedisSessions {
        match on {
            Deployment::Single => RedisSessions::connect(&test_url(), prefix, ttl, ttl)
                .await
                .unwrap_or_else(|e| panic!("Redis at {} is needed for this test: {e}", test_url())),
            Deployment::Cluster => {
                RedisSessions::connect_cluster(&test_cluster_urls(), prefix, ttl, ttl)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "a Redis Cluster at {:?} is needed for this test: {e}",
                            test_cluster_urls()
                        )
                    })
            }
        }
    }

    /// Deletes the test's keys, on every node it may have written to.
    async fn clean(on: Deployment, prefix: &str) {
        let urls = match on {
            Deployment::Single => vec![test_url()],
            Deployment::Cluster => test_cluster_urls(),
        };
        for url in urls {
            let client = redis::Client::open(url).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let keys: Vec<String> = conn.keys(format!("{prefix}*")).await.unwrap();
            for key in keys {
                // One at a time: on a cluster node, a DEL of keys in several slots is refused.
                let _: () = conn.del(key).await.unwrap();
            }
        }
    }

    async fn conformance(on: Deployment) {
        let prefix = test_prefix();
        let s = store(on, &prefix, Duration::from_secs(2)).await;
        crate::sessions_conformance::run(&s, Duration::from_secs(2)).await;
        clean(on, &prefix).await;
    }

    #[tokio::test]
    async fn conformance_on_a_single_redis() {
        conformance(Deployment::Single).await;
    }

    #[tokio::test]
    async fn conformance_on_a_redis_cluster() {
        conformance(Deployment::Cluster).await;
    }

    async fn stale_hash_fields_are_not_returned(on: Deployment) {
        let prefix = test_prefix();
        let s = store(on, &prefix, Duration::from_secs(60)).await;
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
        let left: Vec<(String, String)> = conn.hgetall(s.mid_key(1)).await.unwrap();
        assert!(left.is_empty(), "the old owner's field is gone: {left:?}");
        assert!(s.sessions_by_mids(&[1]).await.unwrap().is_empty());
        assert_eq!(
            s.sessions_by_keys(&["a".into()]).await.unwrap()[0]
                .as_ref()
                .map(|x| x.mid),
            Some(2)
        );
        clean(on, &prefix).await;
    }

    #[tokio::test]
    async fn stale_hash_fields_are_not_returned_on_a_single_redis() {
        stale_hash_fields_are_not_returned(Deployment::Single).await;
    }

    #[tokio::test]
    async fn stale_hash_fields_are_not_returned_on_a_redis_cluster() {
        stale_hash_fields_are_not_returned(Deployment::Cluster).await;
    }

    #[tokio::test]
    async fn a_field_lost_to_a_racing_cleanup_comes_back_at_the_next_renew() {
        let prefix = test_prefix();
        let s = store(Deployment::Single, &prefix, Duration::from_secs(60)).await;
        let a = Session {
            mid: 1,
            key: "a".into(),
            server: "c1".into(),
        };
        s.add(&a).await.unwrap();
        // A reader saw the field as stale, but the session was re-added before its cleanup ran.
        assert!(s.unindex(1, "a", "c1").await.unwrap());
        assert!(s.sessions_by_mids(&[1]).await.unwrap().is_empty());
        assert!(s.renew(&a).await.unwrap(), "the key string is live");
        assert_eq!(s.sessions_by_mids(&[1]).await.unwrap(), vec![a.clone()]);
        assert!(
            !s.unindex(1, "a", "c2").await.unwrap(),
            "a field holding another server is kept"
        );
        clean(Deployment::Single, &prefix).await;
    }

    #[tokio::test]
    async fn users_and_keys_spread_over_the_cluster_slots_and_all_come_back() {
        let prefix = test_prefix();
        let s = store(Deployment::Cluster, &prefix, Duration::from_secs(60)).await;
        let sessions: Vec<Session> = (0..200)
            .map(|i| Session {
                mid: i % 50,
                key: format!("key-{i}"),
                server: format!("c{}", i % 3),
            })
            .collect();
        for x in &sessions {
            s.add(x).await.unwrap();
        }
        let keys: Vec<String> = sessions.iter().map(|x| x.key.clone()).collect();
        let got = s.sessions_by_keys(&keys).await.unwrap();
        assert_eq!(got, sessions.iter().cloned().map(Some).collect::<Vec<_>>());
        let mids: Vec<i64> = (0..50).collect();
        let mut by_mids = s.sessions_by_mids(&mids).await.unwrap();
        by_mids.sort_by(|a, b| a.key.cmp(&b.key));
        let mut want = sessions.clone();
        want.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(by_mids, want);
        clean(Deployment::Cluster, &prefix).await;
    }

    #[tokio::test]
    async fn deployments_with_different_prefixes_do_not_see_each_other() {
        let (p1, p2) = (test_prefix(), format!("{}other:", test_prefix()));
        let (s1, s2) = (
            store(Deployment::Single, &p1, Duration::from_secs(60)).await,
            store(Deployment::Single, &p2, Duration::from_secs(60)).await,
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
        clean(Deployment::Single, &p1).await;
        clean(Deployment::Single, &p2).await;
    }
}
