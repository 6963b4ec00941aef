//! `imcloud-bench soak`: steady mixed load for a long run against an imcloud cluster (`scripts/soak`
//! starts the cluster, samples its processes and judges whether they stay flat; docs/reliability.md).
//!
//! Two loads run side by side for `--secs`:
//!
//! - **Pushes** through the api's goim HTTP API at a fixed rate (open loop, at most `--inflight` calls at a
//!   time), in a fixed mix of every ten: 3 to a connection key, 3 to a user (mid), 3 to a room and 1
//!   persistent room push (`persistent=true`). `--subscribers` connections (backend tokens, mids
//!   `--first-mid..`, keys `soak-<tag>-<i>`, spread over the comets) each join one of `--rooms` rooms and
//!   stay connected. Every push names its stream (key, mid, room or persistent room, and which) and its
//!   sequence number in that stream; the sender marks each push the api accepted, each subscriber marks
//!   what it received. At the end: **lost** = accepted pushes some subscriber of the stream never got,
//!   **duplicates** = a push a subscriber got twice, **unexpected** = received although the call failed
//!   (delivered all the same; not an error).
//! - **IM chat** between `--im-pairs` pairs of friends (registered through `/v1`), sending at `--im-rate`
//!   over all pairs, each pair's two users taking turns. Every user holds a websocket (its login token)
//!   that it closes now and then (every `--reconnect-secs` on average, uniformly 0.5x-1.5x), stays away
//!   for 0.5-2.5 s and reopens (on the other comet), then **syncs** as docs/im.md says: the conversation
//!   list, then `after_seq` pages. At the end every user syncs once more, and every seq its conversation's
//!   sends were given must be held: **missing** ones are lost messages.
//!
//! A progress line goes to stderr every `--progress-secs`. The report has the counts; the run fails (exit
//! 1 from `main`) only when setting up fails: `scripts/soak` judges the counts.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use imcloud::client::{GoimClient, auth_body, sign_token};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use crate::im::{Api, User, befriend, users};
use crate::report::Report;

/// Seconds between a connection's heartbeats (the comets close one after 3 x 30 s without).
const HEARTBEAT: Duration = Duration::from_secs(20);
/// The op of pushes and of IM message events.
const PUSH_OP: i32 = 1000;
/// How long a push or IM call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Soak {
    /// `http://host:port` of the api.
    pub api: String,
    pub api_key: String,
    /// IMCLOUD_AUTH_SECRET, to mint the push subscribers' tokens.
    pub secret: String,
    /// The comets' `ws://IP:PORT/sub`.
    pub urls: Vec<String>,
    pub secs: f64,
    /// Pushes per second, all kinds together.
    pub push_rate: u64,
    pub subscribers: usize,
    pub rooms: usize,
    /// Push calls in flight at most.
    pub inflight: usize,
    /// The push subscribers' mids start here (far from the IM users' ids).
    pub first_mid: i64,
    pub im_pairs: usize,
    /// IM sends per second over all pairs.
    pub im_rate: u64,
    /// Mean seconds between an IM user's reconnects.
    pub reconnect_secs: f64,
    /// How long the end waits for the last deliveries.
    pub patience: Duration,
    pub progress_secs: u64,
    /// Makes keys, rooms and emails unique to this run.
    pub tag: String,
    pub label: String,
    pub about: String,
}

/// A growable set of sequence numbers.
#[derive(Default, Clone)]
struct Bits(Vec<u64>);

impl Bits {
    /// Adds `n`; whether it was there already.
    fn set(&mut self, n: u64) -> bool {
        let (w, b) = ((n / 64) as usize, n % 64);
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        let was = self.0[w] & (1 << b) != 0;
        self.0[w] |= 1 << b;
        was
    }

    fn count(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// How many of self's are not in `other`.
    fn not_in(&self, other: &Bits) -> u64 {
        self.0
            .iter()
            .enumerate()
            .map(|(i, w)| u64::from((w & !other.0.get(i).copied().unwrap_or(0)).count_ones()))
            .sum()
    }

    /// The largest n such that 1..=n are all in the set (0 if 1 is not).
    fn contiguous_from_one(&self) -> u64 {
        let mut n = 0;
        loop {
            let next = n + 1;
            let (w, b) = ((next / 64) as usize, next % 64);
            match self.0.get(w) {
                Some(word) if word & (1 << b) != 0 => n = next,
                _ => return n,
            }
        }
    }
}

/// The four kinds of push, and the letter their payload names them by.
const KINDS: [(char, &str); 4] = [
    ('k', "to a key"),
    ('m', "to a mid"),
    ('r', "to a room"),
    ('p', "persistent, to a room"),
];
/// The kind of push `i`: of every ten, 3 keys, 3 mids, 3 rooms, 1 persistent room.
const MIX: [usize; 10] = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3];

/// What one push subscriber received: per kind, the seqs of its stream of that kind.
#[derive(Default)]
struct Got {
    seqs: [Bits; 4],
    duplicates: u64,
}

/// Both sides of the push load.
struct PushBook {
    subscribers: usize,
    rooms: usize,
    /// Per kind, per stream (keys and mids: a subscriber; rooms: a room), the seqs the api accepted.
    accepted: Mutex<[Vec<Bits>; 4]>,
    got: Vec<Mutex<Got>>,
    calls: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    delivered: AtomicU64,
    /// Payloads that were not this run's pushes.
    foreign: AtomicU64,
    reconnects: AtomicU64,
}

impl PushBook {
    /// The stream of kind `k` that subscriber `i` listens to.
    fn stream_of(&self, k: usize, i: usize) -> usize {
        if k < 2 { i } else { i % self.rooms }
    }

    fn receive(&self, i: usize, body: &[u8]) {
        let Some((k, stream, seq)) = parse_push(body) else {
            self.foreign.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if stream != self.stream_of(k, i) {
            self.foreign.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let mut g = self.got[i].lock().unwrap_or_else(|e| e.into_inner());
        if g.seqs[k].set(seq) {
            g.duplicates += 1;
        }
    }

    /// (expected, lost, duplicates, unexpected) over every subscriber.
    fn tally(&self) -> (u64, u64, u64, u64) {
        let acc = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        let (mut expected, mut lost, mut dup, mut unexpected) = (0, 0, 0, 0);
        for i in 0..self.subscribers {
            let g = self.got[i].lock().unwrap_or_else(|e| e.into_inner());
            for k in 0..4 {
                let a = &acc[k][self.stream_of(k, i)];
                expected += a.count();
                lost += a.not_in(&g.seqs[k]);
                unexpected += g.seqs[k].not_in(a);
            }
            dup += g.duplicates;
        }
        (expected, lost, dup, unexpected)
    }
}

/// `soak <kind> <stream> <seq>` → (kind index, stream, seq).
fn parse_push(body: &[u8]) -> Option<(usize, usize, u64)> {
    let text = std::str::from_utf8(body).ok()?;
    let mut parts = text.split_whitespace();
    if parts.next()? != "soak" {
        return None;
    }
    let letter = parts.next()?.chars().next()?;
    let k = KINDS.iter().position(|(c, _)| *c == letter)?;
    let stream = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    Some((k, stream, seq))
}

fn server_of(url: &str) -> Result<SocketAddr> {
    url.strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .and_then(|hp| hp.parse().ok())
        .with_context(|| format!("a comet URL must be ws://IP:PORT/sub, got {url}"))
}

/// A connection authenticated with `auth`.
async fn connect(url: &str, auth: Vec<u8>) -> Result<GoimClient> {
    let server = server_of(url)?;
    let mut c = GoimClient::connect_ws_from(url, server, IpAddr::from([127, 0, 0, 1])).await?;
    c.auth(auth, Duration::from_secs(30)).await?;
    Ok(c)
}

/// Push subscriber `i`: connected until aborted; reconnects (counted) if its connection ends.
fn push_subscriber(
    book: Arc<PushBook>,
    i: usize,
    mut c: GoimClient,
    url: String,
    auth: Vec<u8>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut beat = tokio::time::interval(HEARTBEAT);
            beat.tick().await;
            loop {
                tokio::select! {
                    _ = beat.tick() => if c.send(imcloud_proto::op::HEARTBEAT, Vec::new()).await.is_err() { break },
                    f = c.recv() => match f {
                        Ok(f) if f.op == PUSH_OP => book.receive(i, &f.body),
                        Ok(_) => {}
                        Err(_) => break,
                    },
                }
            }
            book.reconnects.fetch_add(1, Ordering::Relaxed);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Ok(n) = connect(&url, auth.clone()).await {
                    c = n;
                    break;
                }
            }
        }
    })
}

/// One push call; whether the api accepted it.
async fn push_call(
    http: &reqwest::Client,
    base: &str,
    api_key: &str,
    tag: &str,
    first_mid: i64,
    (k, stream, seq): (usize, usize, u64),
) -> Result<()> {
    let body = Bytes::from(format!("soak {} {stream} {seq}", KINDS[k].0));
    let req = match k {
        0 => http.post(format!("{base}/goim/push/keys")).query(&[
            ("operation", "1000".to_string()),
            ("keys", key_of(tag, stream)),
        ]),
        1 => http.post(format!("{base}/goim/push/mids")).query(&[
            ("operation", "1000".to_string()),
            ("mids", (first_mid + stream as i64).to_string()),
        ]),
        _ => http.post(format!("{base}/goim/push/room")).query(&[
            ("operation", "1000".to_string()),
            ("type", "soak".to_string()),
            ("room", room_of(tag, stream)),
            ("persistent", (k == 3).to_string()),
        ]),
    };
    let resp = req.bearer_auth(api_key).body(body).send().await?;
    if !resp.status().is_success() {
        bail!(
            "push refused: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

fn key_of(tag: &str, i: usize) -> String {
    format!("soak-{tag}-{i}")
}

fn room_of(tag: &str, r: usize) -> String {
    format!("{tag}-r{r}")
}

/// An IM user under soak: its conversation and what it holds of it.
struct ImUser {
    index: usize,
    user: User,
    cid: String,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    seqs: Bits,
    live: u64,
    live_duplicates: u64,
    /// Recovered by the sync after a reconnect.
    synced: u64,
    /// Recovered by the last sync, after the run.
    final_synced: u64,
    connects: u64,
    connect_errors: u64,
    sync_errors: u64,
}

/// One pair's conversation and the seqs its sends were given.
struct ImConv {
    path: String,
    senders: [usize; 2],
    sent: Mutex<Bits>,
}

/// A small xorshift for the reconnect jitter (no need for a real generator).
struct Jitter(u64);

impl Jitter {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Syncs `u` as a client does on (re)connect: the conversation list, then `after_seq` pages from the
/// last seq it holds without a gap. Returns how many messages it did not hold.
async fn sync(api: &Api, u: &ImUser) -> Result<u64> {
    let (status, list) = api
        .call(
            Method::GET,
            "/v1/conversations?limit=50",
            Some(&u.user.token),
            None,
        )
        .await?;
    if status != 200 {
        bail!("GET /v1/conversations: {status} {list}");
    }
    let last_seq = list["conversations"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"].as_str() == Some(u.cid.as_str())))
        .and_then(|c| c["last_seq"].as_u64())
        .unwrap_or(0);
    let mut after = u
        .held
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .seqs
        .contiguous_from_one();
    let mut new = 0;
    while after < last_seq {
        let path = format!(
            "/v1/conversations/{}/messages?after_seq={after}&limit=200",
            u.cid
        );
        let (status, page) = api
            .call(Method::GET, &path, Some(&u.user.token), None)
            .await?;
        if status != 200 {
            bail!("GET {path}: {status} {page}");
        }
        let msgs = page["messages"].as_array().cloned().unwrap_or_default();
        let mut held = u.held.lock().unwrap_or_else(|e| e.into_inner());
        for m in &msgs {
            if let Some(seq) = m["seq"].as_u64() {
                after = after.max(seq);
                if !held.seqs.set(seq) {
                    new += 1;
                }
            }
        }
        if msgs.is_empty() || page["has_more"] != Value::Bool(true) {
            break;
        }
    }
    Ok(new)
}

/// An IM user's life: connect (alternating comets), sync, receive for a while, go away, again; until
/// aborted.
fn im_user(
    api: Api,
    urls: Arc<Vec<String>>,
    u: Arc<ImUser>,
    reconnect_secs: f64,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut jitter = Jitter(
            0x9e37_79b9_7f4a_7c15 ^ (u.index as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d),
        );
        let mut attempt = 0usize;
        loop {
            let url = &urls[(u.index + attempt) % urls.len()];
            attempt += 1;
            let auth = auth_body(u.user.id, "", "", &[], &u.user.token);
            let mut c = match connect(url, auth).await {
                Ok(c) => c,
                Err(_) => {
                    u.held
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .connect_errors += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            u.held.lock().unwrap_or_else(|e| e.into_inner()).connects += 1;
            match sync(&api, &u).await {
                Ok(n) => u.held.lock().unwrap_or_else(|e| e.into_inner()).synced += n,
                Err(_) => u.held.lock().unwrap_or_else(|e| e.into_inner()).sync_errors += 1,
            }
            let stay = Duration::from_secs_f64(reconnect_secs * (0.5 + jitter.unit()));
            let until = tokio::time::Instant::now() + stay;
            let mut beat = tokio::time::interval(HEARTBEAT);
            beat.tick().await;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    _ = beat.tick() => if c.send(imcloud_proto::op::HEARTBEAT, Vec::new()).await.is_err() { break },
                    f = c.recv() => match f {
                        Ok(f) if f.op == PUSH_OP => {
                            let Ok(v) = serde_json::from_slice::<Value>(&f.body) else { continue };
                            if v["event"] != "message" || v["data"]["conversation_id"].as_str() != Some(u.cid.as_str()) {
                                continue;
                            }
                            if let Some(seq) = v["data"]["seq"].as_u64() {
                                let mut h = u.held.lock().unwrap_or_else(|e| e.into_inner());
                                if h.seqs.set(seq) { h.live_duplicates += 1 } else { h.live += 1 }
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    },
                }
            }
            drop(c);
            tokio::time::sleep(Duration::from_secs_f64(0.5 + 2.0 * jitter.unit())).await;
        }
    })
}

/// Runs the soak; one report.
pub async fn run(s: Soak) -> Result<Report> {
    if s.urls.is_empty() {
        bail!("no comet URL (--url)");
    }
    let n = s.subscribers.max(1);
    let rooms = s.rooms.clamp(1, n);
    let urls = Arc::new(s.urls.clone());
    let base = s.api.trim_end_matches('/').to_string();
    let http = reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .pool_max_idle_per_host(s.inflight.max(1))
        .tcp_nodelay(true)
        .build()?;

    // The push subscribers, all connected before the first push.
    let t = Instant::now();
    let book = Arc::new(PushBook {
        subscribers: n,
        rooms,
        accepted: Mutex::new([
            vec![Bits::default(); n],
            vec![Bits::default(); n],
            vec![Bits::default(); rooms],
            vec![Bits::default(); rooms],
        ]),
        got: (0..n).map(|_| Mutex::new(Got::default())).collect(),
        calls: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
        delivered: AtomicU64::new(0),
        foreign: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
    });
    let mut subs = Vec::with_capacity(n);
    for i in 0..n {
        let mid = s.first_mid + i as i64;
        let token = sign_token(&s.secret, mid, 7 * 24 * 3600).map_err(anyhow::Error::msg)?;
        let room = format!("soak://{}", room_of(&s.tag, i % rooms));
        let auth = auth_body(mid, &key_of(&s.tag, i), &room, &[], &token);
        let url = urls[i % urls.len()].clone();
        let c = connect(&url, auth.clone())
            .await
            .with_context(|| format!("push subscriber {i} at {url}"))?;
        subs.push(push_subscriber(book.clone(), i, c, url, auth));
    }
    eprintln!(
        "soak: {n} push subscribers in {rooms} rooms connected in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The IM users: pairs of friends, each with its conversation.
    let t = Instant::now();
    let api = Api::new(&s.api, 32)?;
    let pairs = s.im_pairs;
    let all = users(&api, &s.tag, 0, 2 * pairs, 8).await?;
    let mut convs = Vec::with_capacity(pairs);
    let mut cids = Vec::with_capacity(pairs);
    for p in 0..pairs {
        let cid = befriend(&api, &all[2 * p], &all[2 * p + 1])
            .await
            .with_context(|| format!("befriending pair {p}"))?;
        convs.push(ImConv {
            path: format!("/v1/conversations/{cid}/messages"),
            senders: [2 * p, 2 * p + 1],
            sent: Mutex::new(Bits::default()),
        });
        cids.push(cid);
    }
    let im_users: Vec<Arc<ImUser>> = all
        .into_iter()
        .enumerate()
        .map(|(index, user)| {
            Arc::new(ImUser {
                index,
                user,
                cid: cids[index / 2].clone(),
                held: Mutex::new(Held::default()),
            })
        })
        .collect();
    let convs = Arc::new(convs);
    let im_users = Arc::new(im_users);
    let im_tasks: Vec<JoinHandle<()>> = im_users
        .iter()
        .map(|u| {
            im_user(
                api.clone(),
                urls.clone(),
                u.clone(),
                s.reconnect_secs.max(1.0),
            )
        })
        .collect();
    eprintln!(
        "soak: {pairs} IM pairs set up in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The loads, side by side.
    let im_sent = Arc::new(AtomicU64::new(0));
    let im_errors = Arc::new(AtomicU64::new(0));
    let im_first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let start = Instant::now();
    let secs = s.secs.max(1.0);
    let pushes = {
        let (book, http, base, api_key, tag) = (
            book.clone(),
            http.clone(),
            base.clone(),
            s.api_key.clone(),
            s.tag.clone(),
        );
        let (rate, inflight, first_mid) = (s.push_rate.max(1), s.inflight.max(1), s.first_mid);
        tokio::spawn(async move {
            let total = (rate as f64 * secs) as u64;
            let sem = Arc::new(Semaphore::new(inflight));
            let mut tasks = JoinSet::new();
            let mut counts = [0u64; 4];
            for i in 0..total {
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
                let k = MIX[(i % 10) as usize];
                let c = counts[k];
                counts[k] += 1;
                let streams = if k < 2 { book.subscribers } else { book.rooms } as u64;
                let (stream, seq) = ((c % streams) as usize, c / streams);
                let Ok(permit) = sem.clone().acquire_owned().await else {
                    break;
                };
                let (book, http, base, api_key, tag) = (
                    book.clone(),
                    http.clone(),
                    base.clone(),
                    api_key.clone(),
                    tag.clone(),
                );
                tasks.spawn(async move {
                    book.calls.fetch_add(1, Ordering::Relaxed);
                    match push_call(&http, &base, &api_key, &tag, first_mid, (k, stream, seq)).await
                    {
                        Ok(()) => {
                            book.accepted.lock().unwrap_or_else(|e| e.into_inner())[k][stream]
                                .set(seq);
                        }
                        Err(e) => {
                            book.failed.fetch_add(1, Ordering::Relaxed);
                            let mut fe = book.first_error.lock().unwrap_or_else(|e| e.into_inner());
                            if fe.is_none() {
                                *fe = Some(format!("{e:#}"));
                            }
                        }
                    }
                    drop(permit);
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        })
    };
    let sends = {
        let (api, convs, im_users) = (api.clone(), convs.clone(), im_users.clone());
        let (sent, errors, first_error) =
            (im_sent.clone(), im_errors.clone(), im_first_error.clone());
        let rate = s.im_rate;
        tokio::spawn(async move {
            if rate == 0 || convs.is_empty() {
                return;
            }
            let total = (rate as f64 * secs) as usize;
            let sem = Arc::new(Semaphore::new(32));
            let mut tasks = JoinSet::new();
            for j in 0..total {
                let due = start + Duration::from_secs_f64(j as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
                let Ok(permit) = sem.clone().acquire_owned().await else {
                    break;
                };
                let (api, convs, im_users) = (api.clone(), convs.clone(), im_users.clone());
                let (sent, errors, first_error) =
                    (sent.clone(), errors.clone(), first_error.clone());
                tasks.spawn(async move {
                    let conv = &convs[j % convs.len()];
                    let sender = &im_users[conv.senders[(j / convs.len()) % 2]].user;
                    let body = json!({"client_msg_id": format!("soak-{j}"), "content": format!("soak {j}")});
                    let res = api.call(Method::POST, &conv.path, Some(&sender.token), Some(&body)).await;
                    match res {
                        Ok((201, v)) => {
                            if let Some(seq) = v["seq"].as_u64() {
                                conv.sent.lock().unwrap_or_else(|e| e.into_inner()).set(seq);
                                sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        other => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            let mut fe = first_error.lock().unwrap_or_else(|e| e.into_inner());
                            if fe.is_none() {
                                *fe = Some(match other {
                                    Ok((status, v)) => format!("{status} {v}"),
                                    Err(e) => format!("{e:#}"),
                                });
                            }
                        }
                    }
                    drop(permit);
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        })
    };

    // Progress until both loads are done.
    let every = Duration::from_secs(s.progress_secs.max(1));
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    while !(pushes.is_finished() && sends.is_finished()) {
        tick.tick().await;
        let (mut live, mut synced, mut connects) = (0, 0, 0);
        for u in im_users.iter() {
            let h = u.held.lock().unwrap_or_else(|e| e.into_inner());
            live += h.live;
            synced += h.synced;
            connects += h.connects;
        }
        eprintln!(
            "soak {:>5.0} s: pushes {} called, {} failed, {} delivered; IM {} sent, {} errors, {} live, {} synced, {} connects",
            start.elapsed().as_secs_f64(),
            book.calls.load(Ordering::Relaxed),
            book.failed.load(Ordering::Relaxed),
            book.delivered.load(Ordering::Relaxed),
            im_sent.load(Ordering::Relaxed),
            im_errors.load(Ordering::Relaxed),
            live,
            synced,
            connects,
        );
    }
    pushes.await?;
    sends.await?;
    let load_secs = start.elapsed().as_secs_f64();

    // The last deliveries: wait until nothing is missing, or for the patience.
    let waited = Instant::now();
    while waited.elapsed() < s.patience && book.tally().1 > 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for t in subs {
        t.abort();
    }
    for t in im_tasks {
        t.abort();
    }
    let (expected, lost, duplicates, unexpected) = book.tally();
    // Every IM user syncs once more; what it still lacks is lost.
    let (mut im_missing, mut live, mut live_dup, mut synced, mut final_synced) = (0, 0, 0, 0, 0);
    let (mut connects, mut connect_errors, mut sync_errors) = (0, 0, 0);
    for u in im_users.iter() {
        match sync(&api, u).await {
            Ok(k) => {
                u.held
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .final_synced += k
            }
            Err(e) => bail!("the last sync of user {}: {e:#}", u.user.id),
        }
        let conv = &convs[u.index / 2];
        let sent = conv.sent.lock().unwrap_or_else(|e| e.into_inner());
        let h = u.held.lock().unwrap_or_else(|e| e.into_inner());
        im_missing += sent.not_in(&h.seqs);
        live += h.live;
        live_dup += h.live_duplicates;
        synced += h.synced;
        final_synced += h.final_synced;
        connects += h.connects;
        connect_errors += h.connect_errors;
        sync_errors += h.sync_errors;
    }
    let accepted: Vec<u64> = {
        let acc = book.accepted.lock().unwrap_or_else(|e| e.into_inner());
        acc.iter()
            .map(|streams| streams.iter().map(Bits::count).sum())
            .collect()
    };

    let mut rep = Report::new("soak", &s.label, &s.about);
    rep.param("seconds of load", format!("{load_secs:.0}"))
        .param("push rate", format!("{}/s", s.push_rate))
        .param(
            "push mix",
            "3 keys, 3 mids, 3 rooms, 1 persistent room in 10",
        )
        .param("push subscribers", n)
        .param("rooms", rooms)
        .param("IM pairs", pairs)
        .param("IM rate", format!("{}/s", s.im_rate))
        .param(
            "IM reconnect every",
            format!("{:.0} s on average", s.reconnect_secs),
        );
    rep.figure(
        "pushes called",
        book.calls.load(Ordering::Relaxed) as f64,
        "",
    )
    .figure(
        "pushes failed",
        book.failed.load(Ordering::Relaxed) as f64,
        "",
    );
    for (k, (_, name)) in KINDS.iter().enumerate() {
        rep.figure(&format!("pushes accepted {name}"), accepted[k] as f64, "");
    }
    rep.figure("push deliveries expected", expected as f64, "")
        .figure(
            "push deliveries received",
            book.delivered.load(Ordering::Relaxed) as f64,
            "",
        )
        .figure("push deliveries lost", lost as f64, "")
        .figure("push duplicates", duplicates as f64, "")
        .figure(
            "push unexpected (call failed, delivered)",
            unexpected as f64,
            "",
        )
        .figure(
            "push foreign payloads",
            book.foreign.load(Ordering::Relaxed) as f64,
            "",
        )
        .figure(
            "push subscriber reconnects",
            book.reconnects.load(Ordering::Relaxed) as f64,
            "",
        )
        .figure(
            "IM messages sent",
            im_sent.load(Ordering::Relaxed) as f64,
            "",
        )
        .figure(
            "IM send errors",
            im_errors.load(Ordering::Relaxed) as f64,
            "",
        )
        .figure("IM received live", live as f64, "")
        .figure("IM live duplicates", live_dup as f64, "")
        .figure("IM recovered by reconnect syncs", synced as f64, "")
        .figure("IM recovered by the last sync", final_synced as f64, "")
        .figure("IM missing after the last sync", im_missing as f64, "")
        .figure("IM connects", connects as f64, "")
        .figure("IM connect errors", connect_errors as f64, "")
        .figure("IM sync errors", sync_errors as f64, "");
    if let Some(e) = book
        .first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    {
        eprintln!("soak: first push error: {e}");
    }
    if let Some(e) = im_first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    {
        eprintln!("soak: first IM send error: {e}");
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_count_compare_and_find_the_first_gap() {
        let mut a = Bits::default();
        assert!(!a.set(1));
        assert!(a.set(1));
        for n in [2, 3, 70, 200] {
            a.set(n);
        }
        let mut b = Bits::default();
        for n in [1, 2, 70] {
            b.set(n);
        }
        assert_eq!(a.count(), 5);
        assert_eq!(a.not_in(&b), 2);
        assert_eq!(b.not_in(&a), 0);
        assert_eq!(a.contiguous_from_one(), 3);
        assert_eq!(Bits::default().contiguous_from_one(), 0);
    }

    #[test]
    fn push_payloads_parse_and_others_do_not() {
        assert_eq!(parse_push(b"soak p 3 17"), Some((3, 3, 17)));
        assert_eq!(parse_push(b"soak k 0 0"), Some((0, 0, 0)));
        assert_eq!(parse_push(b"soak x 0 0"), None);
        assert_eq!(parse_push(b"{\"event\":\"message\"}"), None);
    }
}
