//! Which comets a client should connect to: goim's weighted node list, least loaded first.
//!
//! `weighted` orders comets by `weight / (connections + 1)` and leaves out draining ones; `port_of` reads a
//! port from an address.

use imcloud_common::NodeInfo;

/// Orders comets by weight per connection, best first. Draining comets take no new clients: left out.
pub fn weighted(mut comets: Vec<NodeInfo>) -> Vec<NodeInfo> {
    comets.retain(|n| !n.draining);
    let score = |n: &NodeInfo| n.weight as f64 / (n.connections as f64 + 1.0);
    comets.sort_by(|a, b| score(b).total_cmp(&score(a)).then_with(|| a.id.cmp(&b.id)));
    comets
}

/// The port of a `host:port` address, or 0.
pub fn port_of(addr: &str) -> i32 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use imcloud_common::Role;

    use super::*;

    #[test]
    fn least_loaded_comes_first() {
        let mut a = NodeInfo::new(Role::Comet, "a");
        a.connections = 100;
        let mut b = NodeInfo::new(Role::Comet, "b");
        b.connections = 10;
        let mut c = NodeInfo::new(Role::Comet, "c");
        c.connections = 100;
        c.weight = 20;
        let mut d = NodeInfo::new(Role::Comet, "d");
        d.draining = true;
        let ids: Vec<String> = weighted(vec![a, b, c, d])
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(
            ids,
            vec!["c", "b", "a"],
            "best first, draining comets left out"
        );
        assert_eq!(port_of("127.0.0.1:3102"), 3102);
        assert_eq!(port_of("[::1]:3101"), 3101);
        assert_eq!(port_of("nope"), 0);
    }
}
