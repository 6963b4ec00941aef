//! gRPC channels between nodes: plain HTTP/2 to `host:port`, connected on first use, with bounded waits.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// A lazily connected channel to `addr` (`host:port`). Errors when the address is not a valid URI authority.
pub fn lazy_channel(addr: &str) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad gRPC address {addr:?}: {e}"))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    Ok(endpoint.connect_lazy())
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
