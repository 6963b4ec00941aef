//! gRPC between nodes: channels (plain HTTP/2 to `host:port`, connected on first use, with bounded
//! waits; [`discovered_channel`] balances over every registered node of a role and follows the registry),
//! and the settings every node's gRPC server shares ([`server`], [`incoming`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};

use crate::grpc_telemetry::NodeChannel;
use crate::node::Role;
use crate::registry::Registry;

/// Streams a client may have open at once on one connection to a node's gRPC server. h2 closes a
/// connection on which too many small DATA frames sit unread ("too_many_data_frames", ENHANCE_YOUR_CALM):
/// 15,000 clients dropping at once made a comet send 15,000 Disconnect calls together, and logic's server
/// closed the connection, failing every call on it. With this limit the client queues the excess instead.
pub const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// A gRPC server builder with the shared limits. Services are added wrapped in
/// [`crate::grpc_telemetry::ServerTelemetry`] (metrics, trace context).
pub fn server() -> tonic::transport::Server {
    tonic::transport::Server::builder().max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
}

/// Accepted connections of `listener`, with TCP_NODELAY: without it, replies written in several pieces
/// wait for the peer's delayed ACK (about 40 ms on Linux).
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// The endpoint for `addr` (`host:port`); errors when the address is not a valid URI authority.
fn endpoint(addr: &str) -> Result<Endpoint, String> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad gRPC address {addr:?}: {e}"))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true))
}

/// A lazily connected channel to `addr` (`host:port`). Errors when the address is not a valid URI authority.
pub fn lazy_channel(addr: &str) -> Result<NodeChannel, String> {
    Ok(NodeChannel::new(endpoint(addr)?.connect_lazy()))
}

/// A channel spread over the registered nodes of `role` (their gRPC addresses), kept in step with the
/// registry. It starts from a direct read of the registry, so the first call already goes to a registered
/// node. While no node is known it points at `fallback`; when every node has left it keeps the last ones,
/// so calls fail fast (or reach a node that is alive but lost its registration) instead of waiting for a
/// node to appear.
pub async fn discovered_channel(
    registry: &Arc<dyn Registry>,
    role: Role,
    fallback: &str,
) -> Result<NodeChannel, String> {
    let fallback = (format!("fallback:{fallback}"), fallback.to_string());
    endpoint(&fallback.1)?;
    let (channel, tx) = Channel::balance_channel::<String>(64);
    let mut rx = registry.watch(role);
    let mut nodes = match registry.list(role).await {
        Ok(nodes) => nodes,
        Err(e) => {
            tracing::warn!(%role, "listing {role} nodes: {e}; following the registry watch");
            rx.borrow_and_update().clone()
        }
    };
    tokio::spawn(async move {
        let mut current: HashMap<String, String> = HashMap::new();
        loop {
            let mut want: HashMap<String, String> = nodes
                .iter()
                .filter(|n| !n.grpc_addr.is_empty())
                .map(|n| (n.id.clone(), n.grpc_addr.clone()))
                .collect();
            if want.is_empty() {
                if current.is_empty() {
                    want.insert(fallback.0.clone(), fallback.1.clone());
                } else {
                    want = current.clone();
                }
            }
            for (id, addr) in &want {
                if current.get(id) == Some(addr) {
                    continue;
                }
                match endpoint(addr) {
                    Ok(ep) => {
                        tracing::info!(%role, node = %id, %addr, "using {role} node");
                        if tx.send(Change::Insert(id.clone(), ep)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(%role, node = %id, "{e}"),
                }
            }
            // Removals after insertions, so the channel is never left without an endpoint (a node whose
            // address changed was replaced by its insertion).
            for id in current.keys() {
                if !want.contains_key(id) && tx.send(Change::Remove(id.clone())).await.is_err() {
                    return;
                }
            }
            current = want;
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
            nodes = rx.borrow_and_update().clone();
        }
    });
    Ok(NodeChannel::new(channel))
}

/// How comet and api reach logic: discovered through etcd when it is configured, else IMCLOUD_LOGIC_ADDR.
pub async fn logic_channel(
    cfg: &crate::Config,
    registry: &Arc<dyn Registry>,
) -> Result<NodeChannel, String> {
    if cfg.etcd_endpoints.trim().is_empty() {
        lazy_channel(&cfg.logic_addr)
    } else {
        discovered_channel(registry, Role::Logic, &cfg.logic_addr).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_are_checked() {
        assert!(lazy_channel("127.0.0.1:3119").is_ok());
        assert!(lazy_channel("not a host:port").is_err());
    }
}
