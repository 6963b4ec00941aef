//! The IM tier under load (`imcloud-bench im`): users of the `/v1` JSON API (register, log in, befriend,
//! form groups, send) and their websocket connections, against an api and a comet (a standalone, as
//! `scripts/im-load` starts it). Scenarios:
//!
//! - `spread`: N conversations (private chats of two friends; `--members K` above 2 makes them groups of
//!   K), messages sent round robin over them at a fixed rate, each conversation's members taking turns.
//!   The schedule is open loop: every send has a due time and its latency counts from that time, so a
//!   server that stalls shows as latency rather than as a slower schedule; sends still due when the run's
//!   time is up, every call slot being taken, are not sent (and counted). `--rate 0` sends flat out with
//!   `--inflight` calls at a time instead.
//! - `hot`: the same into one conversation.
//! - `fanout`: one group of M members, every member connected over the websocket (goim frames, its login
//!   token); the owner sends one message at a time, timed from the send call until the last member's
//!   websocket has it (op 1000 `message` carrying that content).
//!
//! Each scenario runs `--runs` times on the same users and conversations (set up once, with a short
//! warm-up). The report has every run, the medians, and the 1-minute load average when each run began,
//! because the cores are shared. Every send's reply carries its seq: at the end each conversation's seqs
//! must be exactly 1..n (no gap, no duplicate), or the run fails.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, stream};
use imcloud::client::{GoimClient, auth_body};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::latency::Latencies;
use crate::proc_stats::cpu_secs;
use crate::report::Report;

/// The op of an IM message event.
const MESSAGE_OP: i32 = 1000;
/// Every user's password (the generator registers them).
const PASSWORD: &str = "load test password";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Spread,
    Hot,
    Fanout,
}

pub struct ImLoad {
    /// `http://host:port` of the api.
    pub api: String,
    /// The comet's `ws://IP:PORT/sub` (fanout).
    pub ws_url: String,
    pub scenarios: Vec<Scenario>,
    /// Conversations of the spread scenario.
    pub conversations: usize,
    /// Members of each spread and hot conversation: 2 = a private chat of two friends, more = a group.
    pub members: usize,
    /// Sends per second (0 = flat out with `inflight` calls at a time).
    pub rate: u64,
    pub hot_rate: u64,
    pub secs: f64,
    pub warmup_secs: f64,
    /// Send calls in flight at most.
    pub inflight: usize,
    pub runs: usize,
    /// Members of the fanout group (the owner, who sends, included).
    pub group_size: usize,
    /// Messages per fanout run, one at a time.
    pub fanout_messages: usize,
    /// Registrations, logins and joins at a time while setting up.
    pub setup_concurrency: usize,
    pub sources: Vec<IpAddr>,
    /// How long the fanout waits for the last member.
    pub patience: Duration,
    /// Makes this run's emails unique (several runs against one database).
    pub tag: String,
    pub label: String,
    pub about: String,
}

/// The `/v1` API as its users call it.
#[derive(Clone)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub(crate) fn new(base: &str, pool: usize) -> Result<Api> {
        Ok(Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(pool)
                .tcp_nodelay(true)
                .build()?,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// Status and JSON body (Null when the body is not JSON).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// A call that must succeed.
    pub(crate) async fn ok(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<Value> {
        let (status, v) = self.call(method.clone(), path, token, Some(body)).await?;
        if status >= 300 {
            bail!("{method} {path}: {status} {v}");
        }
        Ok(v)
    }
}

pub(crate) struct User {
    pub(crate) id: i64,
    pub(crate) token: String,
}

/// Registers and logs in one user.
async fn user(api: &Api, email: &str) -> Result<User> {
    let u = api
        .ok(
            Method::POST,
            "/v1/users",
            None,
            &json!({"email": email, "nickname": "load", "password": PASSWORD}),
        )
        .await?;
    let id = u["id"].as_i64().context("registration without an id")?;
    let s = api
        .ok(
            Method::POST,
            "/v1/sessions",
            None,
            &json!({"email": email, "password": PASSWORD}),
        )
        .await?;
    let token = s["token"].as_str().context("login without a token")?;
    Ok(User {
        id,
        token: token.to_string(),
    })
}

/// Users `first..first + n` of this run, `concurrency` at a time.
pub(crate) async fn users(
    api: &Api,
    tag: &str,
    first: usize,
    n: usize,
    concurrency: usize,
) -> Result<Vec<User>> {
    stream::iter(first..first + n)
        .map(|i| {
            let email = format!("im-{tag}-{i}@example.com");
            async move {
                user(api, &email)
                    .await
                    .with_context(|| format!("user {email}"))
            }
        })
        .buffered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Makes `a` and `b` friends; their private conversation's id.
pub(crate) async fn befriend(api: &Api, a: &User, b: &User) -> Result<String> {
    let r = api
        .ok(
            Method::POST,
            "/v1/friend-requests",
            Some(&a.token),
            &json!({"to_user_id": b.id}),
        )
        .await?;
    let rid = r["id"].as_i64().context("friend request without an id")?;
    api.ok(
        Method::POST,
        &format!("/v1/friend-requests/{rid}/accept"),
        Some(&b.token),
        &json!({}),
    )
    .await?;
    Ok(format!("u-{}-{}", a.id.min(b.id), a.id.max(b.id)))
}

/// A group owned by `members[0]` that every other member joins; its conversation id.
async fn group(api: &Api, members: &[User], concurrency: usize) -> Result<String> {
    let (owner, others) = members.split_first().context("a group needs an owner")?;
    let g = api
        .ok(
            Method::POST,
            "/v1/groups",
            Some(&owner.token),
            &json!({"name": "load", "max_members": members.len().max(2)}),
        )
        .await?;
    let gid = g["id"].as_i64().context("group without an id")?;
    let joined: Vec<Result<Value>> = stream::iter(others)
        .map(|u| {
            let path = format!("/v1/groups/{gid}/join");
            async move {
                api.ok(Method::POST, &path, Some(&u.token), &json!({}))
                    .await
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for j in joined {
        j.context("joining the group")?;
    }
    Ok(format!("g-{gid}"))
}

/// A conversation under load: its send path, its members' tokens (who take turns) and the seqs its
/// sends were given.
struct Conv {
    path: String,
    senders: Vec<String>,
    seqs: Mutex<Vec<i64>>,
}

/// Conversations of `members` users each (2: friends; more: a group), from `all` in order.
async fn conversations(api: &Api, load: &ImLoad, all: &[User]) -> Result<Vec<Conv>> {
    let k = load.members.max(2);
    let chunks: Vec<&[User]> = all.chunks_exact(k).collect();
    let cids: Vec<Result<String>> = stream::iter(chunks.iter())
        .map(|c| async move {
            if k == 2 {
                befriend(api, &c[0], &c[1]).await
            } else {
                group(api, c, 4).await
            }
        })
        .buffered(load.setup_concurrency.max(1))
        .collect()
        .await;
    let mut out = Vec::with_capacity(chunks.len());
    for (c, cid) in chunks.iter().zip(cids) {
        let cid = cid.context("setting up a conversation")?;
        out.push(Conv {
            path: format!("/v1/conversations/{cid}/messages"),
            senders: c.iter().map(|u| u.token.clone()).collect(),
            seqs: Mutex::new(Vec::new()),
        });
    }
    Ok(out)
}

/// What one run of sends measured.
#[derive(Default)]
struct Sends {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    /// From each send's due time to its reply.
    latency: Latencies,
    /// From each call's start to its reply.
    call: Latencies,
}

struct SendRun {
    /// Sends still due when the run's time was up, because every call slot was taken.
    not_sent: usize,
    accepted: f64,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    call_p99: f64,
    load1: f64,
    /// The generator's own CPU seconds per second of the run (how much of the 2 cores it took).
    own_cpu: f64,
}

/// The 1-minute load average.
fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// How one send went: its latencies in microseconds (from its due time, from the call's start), or
/// what went wrong.
type SendResult = Result<(u64, u64), String>;

/// One send: message `i` of run `run` into conversation `i % n`, from its next member in turn.
async fn send_one(api: &Api, convs: &[Conv], run: usize, i: usize, due: Instant) -> SendResult {
    let conv = &convs[i % convs.len()];
    let sender = &conv.senders[(i / convs.len()) % conv.senders.len()];
    let body =
        json!({"client_msg_id": format!("r{run}-{i}"), "content": format!("load {run} {i}")});
    let t = Instant::now();
    let res = api
        .call(Method::POST, &conv.path, Some(sender), Some(&body))
        .await;
    let done = Instant::now();
    match res {
        Ok((201, v)) => {
            if let Some(seq) = v["seq"].as_i64() {
                conv.seqs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(seq);
            }
            Ok((
                done.saturating_duration_since(due).as_micros() as u64,
                (done - t).as_micros() as u64,
            ))
        }
        Ok((status, v)) => Err(format!("{status} {v}")),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// Counts one send into the run's totals (one histogram each for the run, not one per send).
fn merge(all: &Mutex<Sends>, one: SendResult) {
    let mut a = all.lock().unwrap_or_else(|e| e.into_inner());
    match one {
        Ok((latency, call)) => {
            a.ok += 1;
            a.latency.record(latency);
            a.call.record(call);
        }
        Err(e) => {
            a.errors += 1;
            if a.first_error.is_none() {
                a.first_error = Some(e);
            }
        }
    }
}

/// Sends for `secs` at `rate` (open loop, at most `inflight` calls at once) or, with rate 0, flat out
/// with `inflight` calls at a time.
async fn send_run(
    api: &Api,
    convs: &Arc<Vec<Conv>>,
    run: usize,
    rate: u64,
    secs: f64,
    inflight: usize,
) -> Result<SendRun> {
    let stats = Arc::new(Mutex::new(Sends::default()));
    let inflight = inflight.max(1);
    let load1 = load1();
    let cpu0 = cpu_secs(None)?;
    let start = Instant::now();
    let mut not_sent = 0usize;
    if rate > 0 {
        let total = (rate as f64 * secs) as usize;
        let deadline = start + Duration::from_secs_f64(secs);
        let sem = Arc::new(Semaphore::new(inflight));
        let mut tasks = JoinSet::new();
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
            // A server slower than the schedule holds every permit: what is still due when the run's
            // time is up is not sent (and counted).
            let Ok(permit) =
                tokio::time::timeout_at(deadline.into(), sem.clone().acquire_owned()).await
            else {
                not_sent = total - i;
                break;
            };
            let permit = permit?;
            let (api, convs, stats) = (api.clone(), convs.clone(), stats.clone());
            tasks.spawn(async move {
                let s = send_one(&api, &convs, run, i, due).await;
                merge(&stats, s);
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    } else {
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        for _ in 0..inflight {
            let (api, convs, stats, next) =
                (api.clone(), convs.clone(), stats.clone(), next.clone());
            tasks.spawn(async move {
                while start.elapsed().as_secs_f64() < secs {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let s = send_one(&api, &convs, run, i, Instant::now()).await;
                    merge(&stats, s);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let own_cpu = (cpu_secs(None)? - cpu0) / elapsed;
    let s = std::mem::take(&mut *stats.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(SendRun {
        not_sent,
        accepted: s.ok as f64 / elapsed,
        ok: s.ok,
        errors: s.errors,
        first_error: s.first_error,
        p50: s.latency.ms(0.5),
        p99: s.latency.ms(0.99),
        p999: s.latency.ms(0.999),
        max: s.latency.max_ms(),
        call_p99: s.call.ms(0.99),
        load1,
        own_cpu,
    })
}

/// Conversations whose seqs are not exactly 1..n.
fn seq_faults(convs: &[Conv]) -> usize {
    convs
        .iter()
        .filter(|c| {
            let mut seqs = c.seqs.lock().unwrap_or_else(|e| e.into_inner()).clone();
            seqs.sort_unstable();
            seqs.iter().enumerate().any(|(k, s)| *s != k as i64 + 1)
        })
        .count()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The spread or hot scenario on conversations already set up.
async fn sends(
    api: &Api,
    load: &ImLoad,
    scenario: &str,
    convs: Vec<Conv>,
    rate: u64,
) -> Result<Report> {
    let convs = Arc::new(convs);
    if load.warmup_secs > 0.0 {
        send_run(api, &convs, 0, rate, load.warmup_secs, load.inflight).await?;
    }
    let mut runs = Vec::new();
    for run in 1..=load.runs.max(1) {
        if run > 1 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let r = send_run(api, &convs, run, rate, load.secs, load.inflight).await?;
        eprintln!(
            "{scenario} run {run}: {:.0} sends/s accepted, p50 {:.2} ms, p99 {:.2} ms, {} errors, {} not sent in time, load {:.2}",
            r.accepted, r.p50, r.p99, r.errors, r.not_sent, r.load1
        );
        runs.push(r);
    }
    let errors: u64 = runs.iter().map(|r| r.errors).sum();
    let faults = seq_faults(&convs);

    let mut rep = Report::new(&format!("im {scenario}"), &load.label, &load.about);
    rep.param("conversations", convs.len())
        .param("members per conversation", load.members.max(2))
        .param(
            "rate",
            if rate == 0 {
                "flat out".to_string()
            } else {
                format!("{rate}/s")
            },
        )
        .param("secs per run", load.secs)
        .param("calls in flight at most", load.inflight)
        .param("runs", runs.len());
    for (k, r) in runs.iter().enumerate() {
        let n = k + 1;
        rep.figure(&format!("#{n} accepted"), r.accepted, "sends/s")
            .figure(&format!("#{n} latency p50"), r.p50, "ms")
            .figure(&format!("#{n} latency p99"), r.p99, "ms")
            .figure(&format!("#{n} latency p99.9"), r.p999, "ms")
            .figure(&format!("#{n} latency max"), r.max, "ms")
            .figure(&format!("#{n} call p99"), r.call_p99, "ms")
            .figure(&format!("#{n} errors"), r.errors as f64, "")
            .figure(&format!("#{n} not sent in time"), r.not_sent as f64, "")
            .figure(&format!("#{n} load average"), r.load1, "")
            .figure(&format!("#{n} generator CPU"), r.own_cpu, "cores");
    }
    let med = |f: fn(&SendRun) -> f64| median(runs.iter().map(f).collect());
    rep.figure("median accepted", med(|r| r.accepted), "sends/s")
        .figure("median latency p50", med(|r| r.p50), "ms")
        .figure("median latency p99", med(|r| r.p99), "ms")
        .figure("median load average", med(|r| r.load1), "")
        .figure(
            "sends stored",
            runs.iter().map(|r| r.ok).sum::<u64>() as f64,
            "",
        )
        .figure("errors", errors as f64, "")
        .figure("conversations with seq gaps or repeats", faults as f64, "");
    if let Some(e) = runs.iter().find_map(|r| r.first_error.clone()) {
        eprintln!("{scenario}: first error: {e}");
    }
    if faults > 0 && errors == 0 {
        bail!(
            "{faults} conversations' seqs are not 1..n although every send succeeded\n{}",
            rep.text()
        );
    }
    Ok(rep)
}

/// Receipts of one fanout message: when each member's websocket had it.
struct Watch {
    times: Mutex<Vec<Instant>>,
    all: Notify,
    members: usize,
}

impl Watch {
    fn hit(&self) {
        let mut t = self.times.lock().unwrap_or_else(|e| e.into_inner());
        t.push(Instant::now());
        if t.len() == self.members {
            self.all.notify_one();
        }
    }
}

/// Connects and authenticates every member; each connection's task reports the fanout messages it gets
/// ("fanout <k>") to `watches[k]`, and sends heartbeats.
async fn connect_members(
    load: &ImLoad,
    members: &[User],
    watches: &Arc<Vec<Watch>>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let server: SocketAddr = load
        .ws_url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .and_then(|hp| hp.parse().ok())
        .with_context(|| format!("--url must be ws://IP:PORT/sub, got {}", load.ws_url))?;
    let sources = if load.sources.is_empty() {
        vec![IpAddr::from([127, 0, 0, 1])]
    } else {
        load.sources.clone()
    };
    let clients: Vec<Result<GoimClient>> = stream::iter(members.iter().enumerate())
        .map(|(i, u)| {
            let source = sources[i % sources.len()];
            let url = load.ws_url.clone();
            async move {
                let mut c = GoimClient::connect_ws_from(&url, server, source).await?;
                c.auth(
                    auth_body(u.id, "", "", &[], &u.token),
                    Duration::from_secs(30),
                )
                .await?;
                Ok::<_, anyhow::Error>(c)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut tasks = Vec::new();
    for c in clients {
        let mut c = c.context("connecting a member")?;
        let watches = watches.clone();
        tasks.push(tokio::spawn(async move {
            let mut beat = tokio::time::interval(Duration::from_secs(20));
            beat.tick().await;
            loop {
                tokio::select! {
                    _ = beat.tick() => if c.send(imcloud_proto::op::HEARTBEAT, Vec::new()).await.is_err() { return },
                    f = c.recv() => {
                        let Ok(f) = f else { return };
                        if f.op != MESSAGE_OP {
                            continue;
                        }
                        let Ok(v) = serde_json::from_slice::<Value>(&f.body) else { continue };
                        let k = v["data"]["content"]
                            .as_str()
                            .and_then(|s| s.strip_prefix("fanout "))
                            .and_then(|s| s.parse::<usize>().ok());
                        if let Some(w) = k.and_then(|k| watches.get(k)) {
                            w.hit();
                        }
                    }
                }
            }
        }));
    }
    Ok(tasks)
}

/// The fanout scenario: one group, all members connected, one message at a time.
async fn fanout(api: &Api, load: &ImLoad, members: &[User]) -> Result<Report> {
    let n = members.len();
    let per_run = load.fanout_messages.max(1);
    let runs = load.runs.max(1);
    let total = per_run * runs;
    let cid = group(api, members, load.setup_concurrency).await?;
    let path = format!("/v1/conversations/{cid}/messages");
    let watches: Arc<Vec<Watch>> = Arc::new(
        (0..total)
            .map(|_| Watch {
                times: Mutex::new(Vec::with_capacity(n)),
                all: Notify::new(),
                members: n,
            })
            .collect(),
    );
    let t = Instant::now();
    let tasks = connect_members(load, members, &watches).await?;
    let connect_secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let owner = &members[0];
    let mut rep = Report::new("im fanout", &load.label, &load.about);
    rep.param("group members, all connected", n)
        .param(
            "messages",
            format!("{runs} runs x {per_run}, one at a time"),
        )
        .figure("members connected in", connect_secs, "s");
    let mut lasts = Vec::new();
    let mut firsts = Vec::new();
    let mut calls = Vec::new();
    let mut per_member = Latencies::new();
    let mut missing = 0usize;
    for run in 0..runs {
        let mut run_lasts = Vec::new();
        let load1 = load1();
        for m in 0..per_run {
            let k = run * per_run + m;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let t0 = Instant::now();
            api.ok(
                Method::POST,
                &path,
                Some(&owner.token),
                &json!({"client_msg_id": format!("fanout-{k}"), "content": format!("fanout {k}")}),
            )
            .await
            .with_context(|| format!("sending fanout message {k}"))?;
            calls.push(t0.elapsed().as_secs_f64() * 1000.0);
            let w = &watches[k];
            let _ = tokio::time::timeout(load.patience, w.all.notified()).await;
            let times = w.times.lock().unwrap_or_else(|e| e.into_inner()).clone();
            missing += n - times.len();
            for t in &times {
                per_member.record(t.saturating_duration_since(t0).as_micros() as u64);
            }
            if let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) {
                firsts.push(first.saturating_duration_since(t0).as_secs_f64() * 1000.0);
                run_lasts.push(last.saturating_duration_since(t0).as_secs_f64() * 1000.0);
            }
        }
        let med = median(run_lasts.clone());
        eprintln!(
            "fanout run {}: to the last of {n} members, median {med:.2} ms over {per_run} messages, load {load1:.2}",
            run + 1
        );
        rep.figure(
            &format!("#{} to the last member, median", run + 1),
            med,
            "ms",
        )
        .figure(&format!("#{} load average", run + 1), load1, "");
        lasts.extend(run_lasts);
    }
    for t in tasks {
        t.abort();
    }
    rep.figure("to the last member, median", median(lasts.clone()), "ms")
        .figure(
            "to the last member, max",
            lasts.iter().copied().fold(f64::NAN, f64::max),
            "ms",
        )
        .figure("to the first member, median", median(firsts), "ms")
        .figure("per member p50", per_member.ms(0.5), "ms")
        .figure("per member p99", per_member.ms(0.99), "ms")
        .figure("send call, median", median(calls), "ms")
        .figure("deliveries missing", missing as f64, "");
    if missing > 0 {
        bail!(
            "{missing} deliveries did not arrive within {:?}\n{}",
            load.patience,
            rep.text()
        );
    }
    Ok(rep)
}

/// Runs the scenarios in order; one report each.
pub async fn run(load: ImLoad) -> Result<Vec<Report>> {
    let api = Api::new(&load.api, load.inflight.max(load.setup_concurrency))?;
    let k = load.members.max(2);
    let mut reports = Vec::new();
    // Every user made in this run, numbered in its emails. Spread and hot get users of their own (each
    // conversation is new); the fanout group is made of the first users, with more made if needed.
    let mut pool: Vec<User> = Vec::new();
    for s in &load.scenarios {
        let t = Instant::now();
        match s {
            Scenario::Spread | Scenario::Hot => {
                let n = if *s == Scenario::Spread {
                    load.conversations.max(1)
                } else {
                    1
                };
                let first = pool.len();
                pool.extend(users(&api, &load.tag, first, n * k, load.setup_concurrency).await?);
                let convs = conversations(&api, &load, &pool[first..]).await?;
                let name = if *s == Scenario::Spread {
                    "spread"
                } else {
                    "hot"
                };
                eprintln!(
                    "{name}: {n} conversations of {k} set up in {:.1} s",
                    t.elapsed().as_secs_f64()
                );
                let rate = if *s == Scenario::Spread {
                    load.rate
                } else {
                    load.hot_rate
                };
                reports.push(sends(&api, &load, name, convs, rate).await?);
            }
            Scenario::Fanout => {
                let n = load.group_size.max(2);
                if pool.len() < n {
                    let first = pool.len();
                    pool.extend(
                        users(&api, &load.tag, first, n - first, load.setup_concurrency).await?,
                    );
                }
                eprintln!(
                    "fanout: {n} users ready in {:.1} s",
                    t.elapsed().as_secs_f64()
                );
                reports.push(fanout(&api, &load, &pool[..n]).await?);
            }
        }
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn seqs_must_be_one_to_n() {
        let conv = |seqs: Vec<i64>| Conv {
            path: String::new(),
            senders: Vec::new(),
            seqs: Mutex::new(seqs),
        };
        let convs = vec![
            conv(vec![2, 1, 3]),
            conv(vec![1, 3]),
            conv(vec![1, 1, 2]),
            conv(vec![]),
        ];
        assert_eq!(seq_faults(&convs), 2);
    }
}
