//! Discovery: every node registers itself; job watches the comets (its delivery workers), comet and api
//! watch the logic nodes, and logic lists the comets (node lists, online totals). Embedded:
//! [`crate::registry_memory`]; distributed: etcd (`registry_etcd`), picked by `imcloud/src/adapters.rs`.
//!
//! What every implementation promises (and `registry_conformance` checks): `register` creates or replaces
//! the entry of (role, id) and refuses an empty id; `deregister` removes it; `list(role)` is sorted by id;
//! `watch(role)` is a `tokio::sync::watch` of the live list; `lapses()` counts registrations that expired
//! under a live node and were written again.

use async_trait::async_trait;
use tokio::sync::watch;

use crate::node::{NodeInfo, Role};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    #[error("bad registry entry: {0}")]
    BadEntry(String),
}

#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Creates or replaces this node's entry; it stays until [`Registry::deregister`] or until the node dies.
    async fn register(&self, node: NodeInfo) -> Result<(), RegistryError>;
    /// Removes a node's entry (graceful shutdown).
    async fn deregister(&self, role: Role, id: &str) -> Result<(), RegistryError>;
    /// The live nodes of a role, sorted by id.
    async fn list(&self, role: Role) -> Result<Vec<NodeInfo>, RegistryError>;
    /// The live nodes of a role, sorted by id, kept current.
    fn watch(&self, role: Role) -> watch::Receiver<Vec<NodeInfo>>;
    /// Counts the lapses of this registry's registrations: an entry that vanished while its node was
    /// alive but could not renew it (a paused process, a partition from the registry), so that the other
    /// nodes saw the node leave, and that was written again. Nodes the others may have given up on
    /// meanwhile act on a change: a comet closes its connections, because job ended the deliveries
    /// addressed to it. The embedded registry never lapses.
    fn lapses(&self) -> watch::Receiver<u64>;
}
