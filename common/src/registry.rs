//! Discovery: every node registers itself; job and api watch the comets. Embedded: [`crate::registry_memory`];
//! distributed: etcd.

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
}
