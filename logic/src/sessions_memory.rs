//! The embedded session store: sharded in-memory maps with the same TTL rules as the Redis store.
//!
//! 32 shards, each of key -> (mid, comet, expiry) and mid -> its connections, with keys and comet ids shared
//! as `Arc<str>`. Expired entries are invisible to lookups and swept every `max(ttl, 1 s)`; a key added again
//! for another mid leaves the old mid's list.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::sessions::{ServerOnline, Session, SessionError, SessionStore};

const SHARDS: usize = 32;

/// One connection's session as the key map holds it. Keys and comet ids are shared `Arc<str>`s: the key
/// between both maps, the comet id between every session on that comet (about 0.3 KiB less per session
/// than owned strings and a map per user).
#[derive(Debug, Clone)]
struct KeyEntry {
    mid: i64,
    server: Arc<str>,
    expires: Instant,
}

/// One of a user's connections, in the user's list.
#[derive(Debug, Clone)]
struct MidEntry {
    key: Arc<str>,
    server: Arc<str>,
    expires: Instant,
}

pub struct MemorySessions {
    ttl: Duration,
    online_ttl: Duration,
    hasher: RandomState,
    keys: Vec<Mutex<HashMap<Arc<str>, KeyEntry>>>,
    /// A user's connections; most users have one, so a list sized to fit rather than a map.
    mids: Vec<Mutex<HashMap<i64, Vec<MidEntry>>>>,
    /// Comet ids in use, shared by their sessions.
    servers: Mutex<HashSet<Arc<str>>>,
    online: Mutex<HashMap<String, (ServerOnline, Instant)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is a single map operation, so a poisoned map is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemorySessions {
    /// Sessions live `ttl` without renewal; online reports live `online_ttl`.
    /// A background task sweeps expired entries while the store is alive.
    pub fn new(ttl: Duration, online_ttl: Duration) -> Arc<MemorySessions> {
        let store = Arc::new(MemorySessions {
            ttl,
            online_ttl,
            hasher: RandomState::new(),
            keys: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            mids: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            servers: Mutex::new(HashSet::new()),
            online: Mutex::new(HashMap::new()),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            let weak = Arc::downgrade(&store);
            tokio::spawn(sweep(weak, ttl.max(Duration::from_secs(1))));
        }
        store
    }

    fn shard<T: Hash + ?Sized>(&self, v: &T) -> usize {
        (self.hasher.hash_one(v) as usize) % SHARDS
    }

    fn key_shard(&self, key: &str) -> MutexGuard<'_, HashMap<Arc<str>, KeyEntry>> {
        lock(&self.keys[self.shard(key)])
    }

    fn mid_shard(&self, mid: i64) -> MutexGuard<'_, HashMap<i64, Vec<MidEntry>>> {
        lock(&self.mids[self.shard(&mid)])
    }

    /// The shared copy of a comet id.
    fn server(&self, id: &str) -> Arc<str> {
        let mut servers = lock(&self.servers);
        if let Some(s) = servers.get(id) {
            return s.clone();
        }
        let s: Arc<str> = Arc::from(id);
        servers.insert(s.clone());
        s
    }

    fn sweep_expired(&self) {
        let now = Instant::now();
        for shard in &self.keys {
            lock(shard).retain(|_, e| e.expires > now);
        }
        for shard in &self.mids {
            let mut m = lock(shard);
            m.retain(|_, conns| {
                conns.retain(|c| c.expires > now);
                conns.shrink_to_fit();
                !conns.is_empty()
            });
        }
        // Comet ids no session uses any more.
        lock(&self.servers).retain(|s| Arc::strong_count(s) > 1);
        lock(&self.online).retain(|_, (_, exp)| *exp > now);
    }
}

async fn sweep(store: Weak<MemorySessions>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        match store.upgrade() {
            Some(s) => s.sweep_expired(),
            None => return,
        }
    }
}

/// Drops `key` from a user's list; forgets the user when no connection is left.
fn drop_key(mids: &mut HashMap<i64, Vec<MidEntry>>, mid: i64, key: &str, server: Option<&str>) {
    if let Some(conns) = mids.get_mut(&mid) {
        conns.retain(|c| &*c.key != key || server.is_some_and(|s| &*c.server != s));
        if conns.is_empty() {
            mids.remove(&mid);
        }
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn add(&self, s: &Session) -> Result<(), SessionError> {
        let expires = Instant::now() + self.ttl;
        let key: Arc<str> = Arc::from(s.key.as_str());
        let server = self.server(&s.server);
        let previous = self.key_shard(&s.key).insert(
            key.clone(),
            KeyEntry {
                mid: s.mid,
                server: server.clone(),
                expires,
            },
        );
        if let Some(prev) = previous.filter(|p| p.mid != s.mid) {
            // The key moved to another user: drop it from the old user's list.
            drop_key(&mut self.mid_shard(prev.mid), prev.mid, &s.key, None);
        }
        let mut mids = self.mid_shard(s.mid);
        let conns = mids.entry(s.mid).or_default();
        let entry = MidEntry {
            key,
            server,
            expires,
        };
        match conns.iter_mut().find(|c| *c.key == *s.key) {
            Some(c) => *c = entry,
            None => {
                conns.reserve_exact(1);
                conns.push(entry);
            }
        }
        Ok(())
    }

    async fn renew(&self, s: &Session) -> Result<bool, SessionError> {
        let now = Instant::now();
        let expires = now + self.ttl;
        {
            let mut keys = self.key_shard(&s.key);
            match keys.get_mut(s.key.as_str()) {
                Some(e) if e.expires > now && e.mid == s.mid && *e.server == *s.server => {
                    e.expires = expires
                }
                _ => return Ok(false),
            }
        }
        let mut mids = self.mid_shard(s.mid);
        let conn = mids
            .get_mut(&s.mid)
            .and_then(|conns| conns.iter_mut().find(|c| *c.key == *s.key));
        match conn {
            Some(c) if *c.server == *s.server => {
                c.expires = expires;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn remove(&self, s: &Session) -> Result<bool, SessionError> {
        let now = Instant::now();
        let removed = {
            let mut keys = self.key_shard(&s.key);
            match keys.get(s.key.as_str()) {
                Some(e) if e.mid == s.mid && *e.server == *s.server => {
                    keys.remove(s.key.as_str()).is_some_and(|e| e.expires > now)
                }
                _ => false,
            }
        };
        drop_key(&mut self.mid_shard(s.mid), s.mid, &s.key, Some(&s.server));
        Ok(removed)
    }

    async fn sessions_by_keys(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<Session>>, SessionError> {
        let now = Instant::now();
        Ok(keys
            .iter()
            .map(|k| {
                self.key_shard(k)
                    .get(k.as_str())
                    .filter(|e| e.expires > now)
                    .map(|e| Session {
                        mid: e.mid,
                        key: k.clone(),
                        server: e.server.to_string(),
                    })
            })
            .collect())
    }

    async fn sessions_by_mids(&self, mids: &[i64]) -> Result<Vec<Session>, SessionError> {
        let now = Instant::now();
        let mut out = Vec::new();
        for &mid in mids {
            if let Some(conns) = self.mid_shard(mid).get(&mid) {
                out.extend(conns.iter().filter(|c| c.expires > now).map(|c| Session {
                    mid,
                    key: c.key.to_string(),
                    server: c.server.to_string(),
                }));
            }
        }
        Ok(out)
    }

    async fn put_online(&self, server: &str, online: &ServerOnline) -> Result<(), SessionError> {
        lock(&self.online).insert(
            server.to_string(),
            (online.clone(), Instant::now() + self.online_ttl),
        );
        Ok(())
    }

    async fn online(&self, servers: &[String]) -> Result<Vec<Option<ServerOnline>>, SessionError> {
        let now = Instant::now();
        let map = lock(&self.online);
        Ok(servers
            .iter()
            .map(|s| {
                map.get(s)
                    .filter(|(_, exp)| *exp > now)
                    .map(|(o, _)| o.clone())
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let store = MemorySessions::new(Duration::from_secs(2), Duration::from_secs(2));
        crate::sessions_conformance::run(store.as_ref(), Duration::from_secs(2)).await;
    }
}
