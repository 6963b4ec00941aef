//! What a comet lets one client do: how many connections it may hold at once overall
//! (`IMCLOUD_COMET_MAX_CONNECTIONS`, within the process's descriptor budget) and per client IP
//! (`IMCLOUD_COMET_MAX_CONNS_PER_IP`), how fast an IP may open new ones
//! (`IMCLOUD_COMET_CONNECTS_PER_SEC_PER_IP`), and how many frames a connection may send per second
//! (`IMCLOUD_COMET_FRAMES_PER_SEC`, enforced in `connection.rs`; rooms per connection are bounded in
//! `bucket.rs`). IPv6 clients are counted per /64.
//!
//! Admission happens in the accept loop, before any byte is read: over the overall cap the socket is
//! closed at once; over a per-IP limit a plaintext client is told why (websocket: HTTP 429 with
//! `Retry-After`; goim TCP: op 6 with the reason) and closed, a TLS client is closed before its handshake.
//! Each refusal is counted in `imcloud_connections_refused_total{listener="comet", reason}`.
//!
//! Invariant: an admitted connection holds an [`Admission`] until its task ends; dropping it returns its
//! overall and per-IP slots, so the per-IP map only holds addresses with open connections.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use imcloud_common::Config;
use imcloud_common::fd_budget::{ConnectionCap, ConnectionPermit};
use imcloud_common::rate_limit::{DEFAULT_SLOTS, KeyedLimiter, Rate, ip_key, retry_after_secs};
use imcloud_proto::{Frame, op};
use tokio::io::{AsyncWrite, AsyncWriteExt};

const SHARDS: usize = 16;

/// Why a connection was refused at accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The comet holds as many connections as it may.
    Cap,
    /// This IP holds as many connections as it may.
    ConnsPerIp(u32),
    /// This IP opens connections too fast; it may retry after this long.
    ConnectRate(Duration),
}

impl Refused {
    fn label(&self) -> &'static str {
        match self {
            Refused::Cap => "cap",
            Refused::ConnsPerIp(_) => "conns_per_ip",
            Refused::ConnectRate(_) => "connects_per_ip",
        }
    }

    /// What the client is told.
    pub fn text(&self) -> String {
        match self {
            Refused::Cap => "server full".into(),
            Refused::ConnsPerIp(n) => {
                format!("too many connections from your address (at most {n})")
            }
            Refused::ConnectRate(_) => "too many new connections from your address".into(),
        }
    }

    fn retry_after(&self) -> u64 {
        match self {
            Refused::ConnectRate(wait) => retry_after_secs(*wait),
            _ => 10,
        }
    }
}

/// The limits of one comet, shared by its listeners.
#[derive(Debug)]
pub struct CometLimits {
    cap: Arc<ConnectionCap>,
    per_ip: Option<PerIp>,
    connects: Option<KeyedLimiter>,
}

/// Held by an admitted connection.
#[derive(Debug)]
pub struct Admission {
    _cap: ConnectionPermit,
    _ip: Option<IpSlot>,
}

impl CometLimits {
    /// `max_connections`: the resolved overall cap (see `IMCLOUD_COMET_MAX_CONNECTIONS`).
    pub fn new(cfg: &Config, max_connections: usize) -> CometLimits {
        CometLimits {
            cap: ConnectionCap::new("comet", max_connections),
            per_ip: (cfg.comet_max_conns_per_ip > 0)
                .then(|| PerIp::new(cfg.comet_max_conns_per_ip)),
            connects: KeyedLimiter::new(
                Rate::per_sec(cfg.comet_connects_per_sec_per_ip),
                DEFAULT_SLOTS,
            ),
        }
    }

    pub fn max_connections(&self) -> usize {
        self.cap.max()
    }

    /// Admits a new connection from `ip`, or says why not (counted).
    pub fn admit(&self, ip: IpAddr) -> Result<Admission, Refused> {
        let result = self.try_admit(ip);
        if let Err(r) = &result
            && *r != Refused::Cap
        {
            // The cap counts its own refusals.
            metrics::counter!("imcloud_connections_refused_total", "listener" => "comet", "reason" => r.label())
                .increment(1);
        }
        result
    }

    fn try_admit(&self, ip: IpAddr) -> Result<Admission, Refused> {
        let key = ip_key(ip);
        if let Some(l) = &self.connects {
            l.take(key).map_err(Refused::ConnectRate)?;
        }
        let ip_slot = match &self.per_ip {
            Some(p) => Some(p.take(key)?),
            None => None,
        };
        let cap = self.cap.try_take().ok_or(Refused::Cap)?;
        Ok(Admission {
            _cap: cap,
            _ip: ip_slot,
        })
    }
}

/// Open connections per IP key, in shards.
#[derive(Debug)]
struct PerIp {
    max: u32,
    hasher: RandomState,
    shards: Arc<[Mutex<HashMap<u128, u32>>]>,
}

#[derive(Debug)]
struct IpSlot {
    key: u128,
    shards: Arc<[Mutex<HashMap<u128, u32>>]>,
    shard: usize,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = self.shards[self.shard]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

impl PerIp {
    fn new(max: u32) -> PerIp {
        PerIp {
            max,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn take(&self, key: u128) -> Result<IpSlot, Refused> {
        let shard = (self.hasher.hash_one(key) as usize) % SHARDS;
        let mut m = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key).or_insert(0);
        if *n >= self.max {
            return Err(Refused::ConnsPerIp(self.max));
        }
        *n += 1;
        Ok(IpSlot {
            key,
            shards: self.shards.clone(),
            shard,
        })
    }
}

/// How a refused plaintext connection is told why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Websocket,
    GoimTcp,
}

/// Tells a refused plaintext client why (within 1 s) and closes the connection.
pub async fn refuse<S: AsyncWrite + Unpin>(mut stream: S, protocol: Protocol, refused: &Refused) {
    let text = refused.text();
    let bytes = match protocol {
        Protocol::Websocket => Bytes::from(format!(
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {}\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
            refused.retry_after(),
            text.len()
        )),
        Protocol::GoimTcp => Frame::new(op::DISCONNECT_REPLY, 0, Bytes::from(text)).encode(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(per_ip: u32, rate: u32) -> Config {
        Config {
            comet_max_conns_per_ip: per_ip,
            comet_connects_per_sec_per_ip: rate,
            ..Config::default()
        }
    }

    #[test]
    fn connections_per_ip_are_counted_and_returned() {
        let l = CometLimits::new(&cfg(2, 0), 100);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = l.admit(a).unwrap();
        let _second = l.admit(a).unwrap();
        assert_eq!(l.admit(a).unwrap_err(), Refused::ConnsPerIp(2));
        assert!(l.admit(b).is_ok(), "another address has its own count");
        drop(first);
        assert!(l.admit(a).is_ok(), "a closed connection frees its slot");
    }

    #[test]
    fn the_overall_cap_holds() {
        let l = CometLimits::new(&cfg(0, 0), 2);
        let _a = l.admit("10.0.0.1".parse().unwrap()).unwrap();
        let _b = l.admit("10.0.0.2".parse().unwrap()).unwrap();
        assert_eq!(
            l.admit("10.0.0.3".parse().unwrap()).unwrap_err(),
            Refused::Cap
        );
    }

    #[test]
    fn connect_bursts_are_limited_per_ip() {
        let l = CometLimits::new(&cfg(0, 5), 1000);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let admitted: Vec<_> = (0..10).filter_map(|_| l.admit(ip).ok()).collect();
        assert_eq!(admitted.len(), 10, "burst of twice the rate");
        assert!(matches!(l.admit(ip), Err(Refused::ConnectRate(_))));
        assert!(l.admit("10.0.0.2".parse().unwrap()).is_ok());
    }

    #[tokio::test]
    async fn refusals_are_explained() {
        let (mut client, server) = tokio::io::duplex(1024);
        refuse(server, Protocol::Websocket, &Refused::ConnsPerIp(3)).await;
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut client, &mut out)
            .await
            .unwrap();
        assert!(out.starts_with("HTTP/1.1 429 "), "{out}");
        assert!(out.contains("Retry-After: 10"));
        assert!(out.ends_with("(at most 3)"));
    }
}
