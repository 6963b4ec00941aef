//! The embedded session store: sharded in-memory maps with the same TTL rules as the Redis store.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::sessions::{ServerOnline, Session, SessionError, SessionStore};

const SHARDS: usize = 32;

#[derive(Debug, Clone)]
struct KeyEntry {
    mid: i64,
    server: String,
    expires: Instant,
}

type MidEntry = HashMap<String, (String, Instant)>;

pub struct MemorySessions {
    ttl: Duration,
    online_ttl: Duration,
    hasher: RandomState,
    keys: Vec<Mutex<HashMap<String, KeyEntry>>>,
    mids: Vec<Mutex<HashMap<i64, MidEntry>>>,
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
            online: Mutex::new(HashMap::new()),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            let weak = Arc::downgrade(&store);
            tokio::spawn(sweep(weak, ttl.max(Duration::from_secs(1))));
        }
        store
    }

    fn shard<T: Hash>(&self, v: &T) -> usize {
        (self.hasher.hash_one(v) as usize) % SHARDS
    }

    fn sweep_expired(&self) {
        let now = Instant::now();
        for shard in &self.keys {
            lock(shard).retain(|_, e| e.expires > now);
        }
        for shard in &self.mids {
            let mut m = lock(shard);
            m.retain(|_, keys| {
                keys.retain(|_, (_, exp)| *exp > now);
                !keys.is_empty()
            });
        }
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

#[async_trait]
impl SessionStore for MemorySessions {
    async fn add(&self, s: &Session) -> Result<(), SessionError> {
        let expires = Instant::now() + self.ttl;
        let previous = lock(&self.keys[self.shard(&s.key)]).insert(
            s.key.clone(),
            KeyEntry {
                mid: s.mid,
                server: s.server.clone(),
                expires,
            },
        );
        if let Some(prev) = previous.filter(|p| p.mid != s.mid) {
            // The key moved to another user: drop it from the old user's list.
            if let Some(keys) = lock(&self.mids[self.shard(&prev.mid)]).get_mut(&prev.mid) {
                keys.remove(&s.key);
            }
        }
        lock(&self.mids[self.shard(&s.mid)])
            .entry(s.mid)
            .or_default()
            .insert(s.key.clone(), (s.server.clone(), expires));
        Ok(())
    }

    async fn renew(&self, s: &Session) -> Result<bool, SessionError> {
        let now = Instant::now();
        let expires = now + self.ttl;
        {
            let mut keys = lock(&self.keys[self.shard(&s.key)]);
            match keys.get_mut(&s.key) {
                Some(e) if e.expires > now && e.mid == s.mid && e.server == s.server => {
                    e.expires = expires
                }
                _ => return Ok(false),
            }
        }
        let mut mids = lock(&self.mids[self.shard(&s.mid)]);
        match mids.get_mut(&s.mid).and_then(|k| k.get_mut(&s.key)) {
            Some(entry) if entry.0 == s.server => {
                entry.1 = expires;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn remove(&self, s: &Session) -> Result<bool, SessionError> {
        let now = Instant::now();
        let removed = {
            let mut keys = lock(&self.keys[self.shard(&s.key)]);
            match keys.get(&s.key) {
                Some(e) if e.mid == s.mid && e.server == s.server => {
                    keys.remove(&s.key).is_some_and(|e| e.expires > now)
                }
                _ => false,
            }
        };
        let mut mids = lock(&self.mids[self.shard(&s.mid)]);
        if let Some(keys) = mids.get_mut(&s.mid) {
            if keys
                .get(&s.key)
                .is_some_and(|(server, _)| *server == s.server)
            {
                keys.remove(&s.key);
            }
            if keys.is_empty() {
                mids.remove(&s.mid);
            }
        }
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
                lock(&self.keys[self.shard(k)])
                    .get(k)
                    .filter(|e| e.expires > now)
                    .map(|e| Session {
                        mid: e.mid,
                        key: k.clone(),
                        server: e.server.clone(),
                    })
            })
            .collect())
    }

    async fn sessions_by_mids(&self, mids: &[i64]) -> Result<Vec<Session>, SessionError> {
        let now = Instant::now();
        let mut out = Vec::new();
        for &mid in mids {
            if let Some(keys) = lock(&self.mids[self.shard(&mid)]).get(&mid) {
                out.extend(keys.iter().filter(|(_, (_, exp))| *exp > now).map(
                    |(key, (server, _))| Session {
                        mid,
                        key: key.clone(),
                        server: server.clone(),
                    },
                ));
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
