//! Online counts: comets report their room counts; logic sums them over every live comet.
//!
//! `Online::report` stores a comet's report (it lives 3 × `online_renew_secs`) and answers the cached
//! all-comet room totals, which `refresh` recomputes every `online_renew_secs` from the reports of comets
//! still registered, so heartbeat counts lag by up to about two intervals. `totals` (the `/goim/online/*`
//! queries) sums the stored reports live. `top_rooms` ranks one room type.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use imcloud_common::Role;
use imcloud_common::registry::{Registry, RegistryError};

use crate::sessions::{ServerOnline, SessionError, SessionStore};

#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    #[error(transparent)]
    Sessions(#[from] SessionError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Counts summed over all comets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub rooms: HashMap<String, i32>,
    pub conn_count: u64,
    pub ip_count: u64,
}

pub struct Online {
    registry: Arc<dyn Registry>,
    sessions: Arc<dyn SessionStore>,
    /// The last sum, handed back to comets on every report (they answer heartbeats from it).
    cached_rooms: RwLock<Arc<HashMap<String, i32>>>,
}

impl Online {
    pub fn new(registry: Arc<dyn Registry>, sessions: Arc<dyn SessionStore>) -> Online {
        Online {
            registry,
            sessions,
            cached_rooms: RwLock::new(Arc::new(HashMap::new())),
        }
    }

    /// Stores a comet's report and returns the latest all-comet room counts.
    pub async fn report(
        &self,
        server: &str,
        online: &ServerOnline,
    ) -> Result<Arc<HashMap<String, i32>>, OnlineError> {
        self.sessions.put_online(server, online).await?;
        Ok(self
            .cached_rooms
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone())
    }

    /// Sums the live reports of every registered comet now.
    pub async fn totals(&self) -> Result<Totals, OnlineError> {
        let servers: Vec<String> = self
            .registry
            .list(Role::Comet)
            .await?
            .into_iter()
            .map(|n| n.id)
            .collect();
        let mut t = Totals::default();
        for report in self.sessions.online(&servers).await?.into_iter().flatten() {
            t.conn_count += report.conn_count;
            t.ip_count += report.ip_count;
            for (room, n) in report.room_count {
                *t.rooms.entry(room).or_default() += n;
            }
        }
        Ok(t)
    }

    /// Recomputes the cached room counts (run periodically).
    pub async fn refresh(&self) -> Result<(), OnlineError> {
        let t = self.totals().await?;
        *self.cached_rooms.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t.rooms);
        Ok(())
    }
}

/// The `limit` fullest rooms of a type, fullest first (ties by room id).
pub fn top_rooms(rooms: &HashMap<String, i32>, kind: &str, limit: usize) -> Vec<(String, i32)> {
    let prefix = format!("{kind}://");
    let mut v: Vec<(String, i32)> = rooms
        .iter()
        .filter_map(|(id, n)| id.strip_prefix(&prefix).map(|r| (r.to_string(), *n)))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(limit);
    v
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use imcloud_common::NodeInfo;
    use imcloud_common::registry_memory::MemoryRegistry;

    use super::*;
    use crate::sessions_memory::MemorySessions;

    #[tokio::test]
    async fn counts_are_summed_over_registered_comets() {
        let reg = Arc::new(MemoryRegistry::new());
        let sessions = MemorySessions::new(Duration::from_secs(60), Duration::from_secs(60));
        let online = Online::new(reg.clone(), sessions);
        for id in ["c1", "c2"] {
            reg.register(NodeInfo::new(Role::Comet, id)).await.unwrap();
        }
        let r = |pairs: &[(&str, i32)], conns| ServerOnline {
            room_count: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            conn_count: conns,
            ip_count: 1,
        };
        online
            .report("c1", &r(&[("live://1", 2), ("live://2", 1)], 3))
            .await
            .unwrap();
        online
            .report("c2", &r(&[("live://1", 5)], 5))
            .await
            .unwrap();
        online
            .report("gone", &r(&[("live://1", 100)], 100))
            .await
            .unwrap();
        let t = online.totals().await.unwrap();
        assert_eq!(
            t.rooms.get("live://1"),
            Some(&7),
            "unregistered comets are not counted"
        );
        assert_eq!((t.conn_count, t.ip_count), (8, 2));
        online.refresh().await.unwrap();
        assert_eq!(
            online
                .report("c1", &r(&[], 0))
                .await
                .unwrap()
                .get("live://2"),
            Some(&1)
        );
        assert_eq!(top_rooms(&t.rooms, "live", 1), vec![("1".to_string(), 7)]);
        assert!(top_rooms(&t.rooms, "other", 10).is_empty());
    }
}
