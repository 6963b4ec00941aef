//! The embedded registry: the nodes of one process, with the same watch semantics as etcd: a `BTreeMap`
//! plus one `watch` channel per role. Entries live until they are deregistered (no leases: every node
//! shares the process).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::node::{NodeInfo, Role};
use crate::registry::{Registry, RegistryError};

pub struct MemoryRegistry {
    nodes: Mutex<BTreeMap<(Role, String), NodeInfo>>,
    watchers: BTreeMap<Role, watch::Sender<Vec<NodeInfo>>>,
    /// Never changes: an entry here lives as long as the process.
    lapses: watch::Sender<u64>,
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        MemoryRegistry {
            nodes: Mutex::new(BTreeMap::new()),
            watchers: Role::ALL
                .into_iter()
                .map(|r| (r, watch::channel(Vec::new()).0))
                .collect(),
            lapses: watch::channel(0).0,
        }
    }
}

impl MemoryRegistry {
    pub fn new() -> MemoryRegistry {
        MemoryRegistry::default()
    }

    fn nodes_of(nodes: &BTreeMap<(Role, String), NodeInfo>, role: Role) -> Vec<NodeInfo> {
        nodes
            .iter()
            .filter(|((r, _), _)| *r == role)
            .map(|(_, n)| n.clone())
            .collect()
    }

    fn publish(&self, nodes: &BTreeMap<(Role, String), NodeInfo>, role: Role) {
        let list = Self::nodes_of(nodes, role);
        if let Some(tx) = self.watchers.get(&role) {
            tx.send_if_modified(|cur| {
                let changed = *cur != list;
                if changed {
                    *cur = list;
                }
                changed
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Role, String), NodeInfo>> {
        // A panic while holding this lock leaves the map consistent (single inserts/removes), so recover it.
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Registry for MemoryRegistry {
    async fn register(&self, node: NodeInfo) -> Result<(), RegistryError> {
        if node.id.is_empty() {
            return Err(RegistryError::BadEntry("empty node id".into()));
        }
        let mut nodes = self.lock();
        let role = node.role;
        nodes.insert((role, node.id.clone()), node);
        self.publish(&nodes, role);
        Ok(())
    }

    async fn deregister(&self, role: Role, id: &str) -> Result<(), RegistryError> {
        let mut nodes = self.lock();
        nodes.remove(&(role, id.to_string()));
        self.publish(&nodes, role);
        Ok(())
    }

    async fn list(&self, role: Role) -> Result<Vec<NodeInfo>, RegistryError> {
        Ok(Self::nodes_of(&self.lock(), role))
    }

    fn watch(&self, role: Role) -> watch::Receiver<Vec<NodeInfo>> {
        match self.watchers.get(&role) {
            Some(tx) => tx.subscribe(),
            None => watch::channel(Vec::new()).1,
        }
    }

    fn lapses(&self) -> watch::Receiver<u64> {
        self.lapses.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        crate::registry_conformance::run(&MemoryRegistry::new()).await;
    }
}
