//! The load generator (`imcloud bench`): opens many authenticated connections against a running imcloud
//! and measures what they cost the server and how fast pushes fan out to them. A benchmark, not a test:
//! it prints figures; docs/performance.md records them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use imcloud_proto::op;
use tokio::sync::Semaphore;

use crate::client::{GoimClient, auth_body, sign_token};

/// Where and how to connect.
pub struct Target {
    pub ws_url: String,
    pub secret: String,
    /// Local addresses to spread connections over (each gives ~28k ephemeral ports).
    pub sources: Vec<IpAddr>,
    /// Connections opened at once.
    pub concurrency: usize,
}

impl Target {
    fn server_addr(&self) -> Result<SocketAddr> {
        let hostport = self
            .ws_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap_or_default();
        hostport
            .parse()
            .with_context(|| format!("bench needs ws://IP:PORT/sub, got {}", self.ws_url))
    }
}

/// Opens `n` authenticated connections (mids `first_mid..`), all in `room`.
pub async fn open(
    target: &Target,
    n: usize,
    first_mid: i64,
    room: &str,
) -> Result<Vec<GoimClient>> {
    let server = target.server_addr()?;
    let sem = Arc::new(Semaphore::new(target.concurrency.max(1)));
    let mut pending = FuturesUnordered::new();
    for i in 0..n {
        let source = target.sources[i % target.sources.len()];
        let mid = first_mid + i as i64;
        let token = sign_token(&target.secret, mid, 3600).map_err(anyhow::Error::msg)?;
        let (url, room, sem) = (target.ws_url.clone(), room.to_string(), sem.clone());
        pending.push(async move {
            let _permit = sem.acquire().await;
            let mut c = GoimClient::connect_ws_from(&url, server, source).await?;
            c.auth(
                auth_body(mid, "", &room, &[], &token),
                Duration::from_secs(30),
            )
            .await?;
            Ok::<_, crate::client::ClientError>(c)
        });
    }
    let mut clients = Vec::with_capacity(n);
    while let Some(r) = pending.next().await {
        clients.push(r.with_context(|| format!("connection {} of {n}", clients.len() + 1))?);
    }
    Ok(clients)
}

/// Resident memory of a process, in KiB (from /proc).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("no process {pid}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")
}

/// Idle cost: server RSS before and after `n` authenticated connections.
pub async fn idle(target: &Target, n: usize, server_pid: u32) -> Result<()> {
    let before = rss_kib(server_pid)?;
    let started = Instant::now();
    let clients = open(target, n, 1, "").await?;
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(server_pid)?;
    println!("connections:            {n}");
    println!(
        "connect+auth:           {:.1} s ({:.0} conn/s)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    println!("server RSS before:      {before} KiB");
    println!("server RSS after:       {after} KiB");
    println!(
        "server RSS per conn:    {:.2} KiB",
        (after.saturating_sub(before)) as f64 / n as f64
    );
    drop(clients);
    Ok(())
}

/// Fan-out: `n` clients in one room, `messages` room pushes through the HTTP API; every client must get every
/// message. Reports throughput (deliveries per second) and push-to-client latency.
pub async fn fanout(
    target: &Target,
    api: &str,
    api_key: &str,
    n: usize,
    messages: usize,
) -> Result<()> {
    let room = "bench://fanout";
    let clients = open(target, n, 1_000_000, room).await?;
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n * messages)));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for mut c in clients {
        let (lat, delivered) = (latencies.clone(), delivered.clone());
        readers.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(messages);
            while mine.len() < messages {
                let f = match c.recv_timeout(Duration::from_secs(60)).await {
                    Ok(f) => f,
                    Err(e) => return Err(e),
                };
                if f.op != 1000 {
                    continue;
                }
                let sent = std::str::from_utf8(&f.body)
                    .ok()
                    .and_then(|s| s.parse::<u128>().ok())
                    .unwrap_or(0);
                mine.push(now_micros().saturating_sub(sent) as u64);
                delivered.fetch_add(1, Ordering::Relaxed);
            }
            lat.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
            Ok(())
        }));
    }
    let http = reqwest::Client::new();
    let url = format!(
        "{}/goim/push/room?operation=1000&type=bench&room=fanout",
        api.trim_end_matches('/')
    );
    let started = Instant::now();
    for _ in 0..messages {
        let resp = http
            .post(&url)
            .bearer_auth(api_key)
            .body(now_micros().to_string())
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "push failed: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
    }
    let pushed = started.elapsed();
    for r in readers {
        r.await?.context("a client missed messages")?;
    }
    let took = started.elapsed();
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap_or_else(|e| e.into_inner()));
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let total = delivered.load(Ordering::Relaxed);
    println!("clients x messages:     {n} x {messages} = {total} deliveries (all received)");
    println!(
        "push calls:             {:.2} s ({:.0} pushes/s)",
        pushed.as_secs_f64(),
        messages as f64 / pushed.as_secs_f64()
    );
    println!(
        "all delivered after:    {:.2} s ({:.0} deliveries/s)",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );
    println!(
        "latency p50/p99/max:    {:.1} / {:.1} / {:.1} ms",
        pct(0.5) as f64 / 1e3,
        pct(0.99) as f64 / 1e3,
        pct(1.0) as f64 / 1e3
    );
    Ok(())
}

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// Keeps connections open with heartbeats until Ctrl-C (for watching a server under a steady load).
pub async fn hold(mut clients: Vec<GoimClient>, heartbeat: Duration) -> Result<()> {
    let mut tick = tokio::time::interval(heartbeat);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for c in &mut clients {
                    c.send(op::HEARTBEAT, Vec::new()).await?;
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
