//! Opening many subscribers at once (spread over source addresses and tokio worker threads), and keeping
//! them alive with heartbeats.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::task::JoinHandle;

use crate::subscriber::{Endpoint, Prepared, Subscriber, Topic};

/// How connections are opened.
#[derive(Clone)]
pub struct Dialing {
    /// Local addresses to connect from, round robin (each gives about 28,000 ephemeral ports).
    pub sources: Vec<IpAddr>,
    /// Connection attempts in flight at once.
    pub concurrency: usize,
}

/// Opens `n` subscribers with ids `first_id..` on `topic`. Tokens and requests are prepared before the
/// clock starts; the returned duration covers connect, handshake and authentication of all `n`.
pub async fn open(
    endpoint: &Endpoint,
    dialing: &Dialing,
    first_id: i64,
    n: usize,
    topic: Topic<'_>,
) -> Result<(Vec<Subscriber>, Duration)> {
    open_then(endpoint, dialing, first_id, n, topic, |sub| sub).await
}

/// [`open`], handing each subscriber to `then` as soon as it is authenticated (e.g. to a task that keeps it
/// alive while the others connect); returns what `then` made of them.
pub async fn open_then<T, F>(
    endpoint: &Endpoint,
    dialing: &Dialing,
    first_id: i64,
    n: usize,
    topic: Topic<'_>,
    then: F,
) -> Result<(Vec<T>, Duration)>
where
    T: Send + 'static,
    F: Fn(Subscriber) -> T + Clone + Send + 'static,
{
    let mut work = Vec::with_capacity(n);
    for i in 0..n {
        let id = first_id + i as i64;
        let source = dialing.sources[i % dialing.sources.len().max(1)];
        work.push((i, source, endpoint.prepare(id, topic)?));
    }
    work.reverse();
    let work: Arc<Mutex<Vec<(usize, IpAddr, Prepared)>>> = Arc::new(Mutex::new(work));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..dialing.concurrency.clamp(1, n.max(1)) {
        let (work, endpoint, then) = (work.clone(), endpoint.clone(), then.clone());
        workers.push(tokio::spawn(async move {
            let mut opened = Vec::new();
            loop {
                let next = work.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some((i, source, prepared)) = next else {
                    return Ok::<_, anyhow::Error>(opened);
                };
                let sub = endpoint
                    .connect(prepared, source)
                    .await
                    .with_context(|| format!("connection {} of {n} (from {source})", i + 1))?;
                opened.push(then(sub));
            }
        }));
    }
    let mut subs = Vec::with_capacity(n);
    for w in workers {
        subs.extend(w.await??);
    }
    Ok((subs, started.elapsed()))
}

/// Keeps every subscriber alive: a heartbeat every `every`, and whatever the server sends is read and
/// dropped. Aborting the handles closes the connections.
pub fn hold(subs: Vec<Subscriber>, every: Duration) -> Vec<JoinHandle<()>> {
    subs.into_iter()
        .map(|mut sub| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => if sub.heartbeat().await.is_err() { return },
                        r = sub.next_payload() => if r.is_err() { return },
                    }
                }
            })
        })
        .collect()
}
