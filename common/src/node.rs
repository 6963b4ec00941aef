//! What a node says about itself in the registry, and how it turns listen addresses into reachable ones.
//!
//! `Role`, `NodeInfo` (the registry entry: role, id, addresses, weight, connections, version; its JSON is
//! what etcd holds, docs/deployment.md), `advertised()` (a listener bound to 0.0.0.0 is advertised as
//! `advertise_host:port`), `default_advertise_host()` (the first IPv4 address the hostname resolves to,
//! else 127.0.0.1) and `hostname()` (`$HOSTNAME`, then `/etc/hostname`, then `localhost`), from which
//! default node ids are made.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Comet,
    Logic,
    Job,
    Api,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Comet, Role::Logic, Role::Job, Role::Api];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Comet => "comet",
            Role::Logic => "logic",
            Role::Job => "job",
            Role::Api => "api",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A registry entry. Addresses are reachable ones (never 0.0.0.0); empty when the role has no such listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub role: Role,
    pub id: String,
    #[serde(default)]
    pub grpc_addr: String,
    #[serde(default)]
    pub ws_addr: String,
    #[serde(default)]
    pub tcp_addr: String,
    /// Comet wss listener, when on.
    #[serde(default)]
    pub wss_addr: String,
    #[serde(default)]
    pub http_addr: String,
    /// Relative capacity, used to weigh comets for new clients.
    pub weight: u32,
    /// Live client connections (comets).
    #[serde(default)]
    pub connections: u64,
    pub version: String,
    /// A comet that is draining (SIGTERM): still delivering to the connections it holds, but no longer
    /// offered to new clients (`/goim/nodes/weighted`, reconnect hints). It leaves the registry when empty.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
}

impl NodeInfo {
    pub fn new(role: Role, id: impl Into<String>) -> NodeInfo {
        NodeInfo {
            role,
            id: id.into(),
            grpc_addr: String::new(),
            ws_addr: String::new(),
            tcp_addr: String::new(),
            wss_addr: String::new(),
            http_addr: String::new(),
            weight: 1,
            connections: 0,
            version: env!("CARGO_PKG_VERSION").to_string(),
            draining: false,
        }
    }
}

/// The address other nodes use to reach a listener bound at `bound`: an unspecified IP is replaced by `host`.
pub fn advertised(bound: SocketAddr, host: &str) -> String {
    if bound.ip().is_unspecified() {
        match host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", bound.port()),
            _ => format!("{host}:{}", bound.port()),
        }
    } else {
        bound.to_string()
    }
}

/// The host this node advertises when none is configured: the IP its hostname resolves to, else loopback.
pub fn default_advertise_host() -> String {
    let name = hostname();
    (name.as_str(), 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut it| it.find(|a| a.is_ipv4()))
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".to_string())
}

pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_replaced() {
        assert_eq!(
            advertised("0.0.0.0:3102".parse().unwrap(), "10.1.2.3"),
            "10.1.2.3:3102"
        );
        assert_eq!(
            advertised("[::]:3102".parse().unwrap(), "::1"),
            "[::1]:3102"
        );
        assert_eq!(
            advertised("127.0.0.2:9".parse().unwrap(), "10.1.2.3"),
            "127.0.0.2:9"
        );
    }

    #[test]
    fn node_info_is_json() {
        let n = NodeInfo::new(Role::Comet, "c1");
        let back: NodeInfo = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
        assert_eq!(back, n);
    }
}
