//! The scale run: more connections than one process may hold (20,000 open files here), spread over several
//! comets and held by several generator processes, each from source addresses of its own. The coordinator
//! ([`run`]) starts the workers (`imcloud-bench scale-worker`, [`worker`]), waits until every worker has
//! authenticated all its connections in the room, reads each comet's memory, then publishes broadcasts
//! (`POST /goim/push/all`) and room pushes (`POST /goim/push/room`) alternately and collects what every
//! connection received.
//!
//! Coordinator and workers talk over the workers' stdin and stdout, one JSON line each way and per step:
//! the worker prints [`Ready`] when its connections are up, waits for a `go` line, then prints [`Received`]
//! once every connection has all messages or has waited `patience` for the next one. Times that cross
//! processes are Unix microseconds (one machine, one clock).
//!
//! Each worker holds at most 19,900 connections (the machine's 20,000 open files per process).

use std::net::IpAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;

use crate::delivery::Receipt;
use crate::fleet::{self, Dialing};
use crate::latency::Latencies;
use crate::payload;
use crate::proc_stats::rss_kib;
use crate::report::Report;
use crate::scenarios::{Labels, MAX_CONNECTIONS_PER_PROCESS, check_capacity};
use crate::subscriber::{Endpoint, Subscriber, Topic};

/// The first connection's user id (apart from the other scenarios' ids).
const FIRST_ID: i64 = 3_000_000;
/// How long a worker may take to open its connections before the run fails.
const READY_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Scale {
    pub connections: usize,
    /// Generator processes; 0 = as few as fit (at most 19,900 connections each).
    pub workers: usize,
    /// Broadcasts, and as many room pushes.
    pub messages: usize,
    pub payload: usize,
    pub room: String,
    /// The api, `http://host:port`, and its key.
    pub api: String,
    pub api_key: String,
    /// One per comet, in the order of the websocket URLs (connection `id` goes to URL `id % urls`).
    pub comet_pids: Vec<u32>,
    pub patience: Duration,
    pub settle: Duration,
    /// Heartbeat period of the held connections (the comets' heartbeat_secs).
    pub heartbeat: Duration,
}

/// What a worker prints once its connections are authenticated and in the room.
#[derive(Serialize, Deserialize)]
struct Ready {
    connections: usize,
    connect_secs: f64,
}

/// What a worker prints at the end.
#[derive(Serialize, Deserialize)]
struct Received {
    expected: u64,
    delivered: u64,
    duplicates: u64,
    /// Unix microseconds of the last receipt (0 = none).
    last_receipt_us: u64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
    /// Connections that missed something, and the first receiving error.
    incomplete: u64,
    error: Option<String>,
}

/// The coordinator.
pub async fn run(
    endpoint: &Endpoint,
    dialing: &Dialing,
    labels: &Labels,
    secret: &str,
    args: Scale,
) -> Result<Report> {
    if args.api.is_empty() || args.api_key.is_empty() {
        bail!("the scale run publishes through the api: it needs --api and --api-key");
    }
    let workers = if args.workers == 0 {
        args.connections
            .div_ceil(MAX_CONNECTIONS_PER_PROCESS)
            .max(1)
    } else {
        args.workers
    };
    let per_worker = args.connections.div_ceil(workers);
    check_capacity(per_worker)?;
    let urls = endpoint.urls.len();
    if !args.comet_pids.is_empty() && args.comet_pids.len() != urls {
        bail!(
            "give one --server-pid per comet ({} URLs, {} pids)",
            urls,
            args.comet_pids.len()
        );
    }
    let rss_before = args
        .comet_pids
        .iter()
        .map(|&p| rss_kib(p))
        .collect::<Result<Vec<_>>>()?;

    // Start the workers, each with every `workers`-th source address (all of them if there are fewer).
    let per_worker_concurrency = dialing.concurrency.div_ceil(workers).max(4);
    let exe = std::env::current_exe().context("cannot find imcloud-bench's own executable")?;
    let mut procs = Vec::new();
    for w in 0..workers {
        let first = w * per_worker;
        let n = per_worker.min(args.connections.saturating_sub(first));
        if n == 0 {
            break;
        }
        let own: Vec<IpAddr> = if dialing.sources.len() >= workers {
            dialing
                .sources
                .iter()
                .skip(w)
                .step_by(workers)
                .copied()
                .collect()
        } else {
            dialing.sources.clone()
        };
        let sources: Vec<String> = own.iter().map(ToString::to_string).collect();
        let mut cmd = Command::new(&exe);
        cmd.arg("scale-worker")
            .args(["--target", "imcloud"])
            .args(
                endpoint
                    .urls
                    .iter()
                    .flat_map(|(u, _)| ["--url", u.as_str()]),
            )
            .args(["--sources", &sources.join(",")])
            // The connection attempts in flight are shared out too: all workers together open as many at
            // once as one process of the other scenarios (logic authenticates every one of them).
            .args(["--concurrency", &per_worker_concurrency.to_string()])
            .args(["--first-id", &(FIRST_ID + first as i64).to_string()])
            .args(["-n", &n.to_string()])
            .args(["--messages", &(2 * args.messages).to_string()])
            .args(["--room", &args.room])
            .args(["--patience-secs", &args.patience.as_secs().to_string()])
            .args(["--heartbeat-secs", &args.heartbeat.as_secs().to_string()])
            .env("IMCLOUD_AUTH_SECRET", secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting a scale worker")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        procs.push(Worker {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            connections: n,
        });
    }

    // Every worker's connections up.
    let started = Instant::now();
    let mut connect_secs: f64 = 0.0;
    for (i, w) in procs.iter_mut().enumerate() {
        let left = READY_TIMEOUT.saturating_sub(started.elapsed());
        let ready: Ready = w
            .line(left)
            .await
            .with_context(|| format!("worker {} did not get its connections up", i + 1))?;
        if ready.connections != w.connections {
            bail!(
                "worker {} opened {} of {} connections",
                i + 1,
                ready.connections,
                w.connections
            );
        }
        connect_secs = connect_secs.max(ready.connect_secs);
    }
    let all_up = started.elapsed();
    tokio::time::sleep(args.settle).await;
    let rss_after = args
        .comet_pids
        .iter()
        .map(|&p| rss_kib(p))
        .collect::<Result<Vec<_>>>()?;

    // Go: workers start reading, then the pushes go out, broadcast and room push in turn.
    for w in &mut procs {
        w.stdin.write_all(b"go\n").await?;
        w.stdin.flush().await?;
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = args.api.trim_end_matches('/');
    let first_publish_us = payload::now_micros();
    let mut call = Latencies::new();
    for seq in 0..2 * args.messages {
        let req = if seq % 2 == 0 {
            client
                .post(format!("{base}/goim/push/all"))
                .query(&[("operation", "1000"), ("speed", "0")])
        } else {
            client.post(format!("{base}/goim/push/room")).query(&[
                ("operation", "1000"),
                ("type", "bench"),
                ("room", &args.room),
            ])
        };
        let t = Instant::now();
        let resp = req
            .bearer_auth(&args.api_key)
            .body(payload::encode(seq as u64, args.payload))
            .send()
            .await
            .with_context(|| format!("publishing message {seq}"))?;
        if !resp.status().is_success() {
            bail!(
                "push {seq} refused: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        call.record(t.elapsed().as_micros() as u64);
    }

    let mut total = Received {
        expected: 0,
        delivered: 0,
        duplicates: 0,
        last_receipt_us: 0,
        latency_p50_ms: 0.0,
        latency_p99_ms: 0.0,
        latency_max_ms: 0.0,
        incomplete: 0,
        error: None,
    };
    let mut p50s = Vec::new();
    for (i, w) in procs.iter_mut().enumerate() {
        let wait = args.patience * 2 + Duration::from_secs(60);
        let r: Received = w
            .line(wait)
            .await
            .with_context(|| format!("worker {} gave no result", i + 1))?;
        total.expected += r.expected;
        total.delivered += r.delivered;
        total.duplicates += r.duplicates;
        total.incomplete += r.incomplete;
        total.last_receipt_us = total.last_receipt_us.max(r.last_receipt_us);
        total.latency_p99_ms = total.latency_p99_ms.max(r.latency_p99_ms);
        total.latency_max_ms = total.latency_max_ms.max(r.latency_max_ms);
        p50s.push(r.latency_p50_ms);
        if total.error.is_none() {
            total.error = r.error;
        }
    }
    for w in &mut procs {
        let _ = w.child.wait().await;
    }
    p50s.sort_by(f64::total_cmp);

    let mut r = Report::new("scale", &labels.target, &labels.about);
    r.param("connections", args.connections)
        .param("comets", urls)
        .param("generator processes", procs.len())
        .param("sources", dialing.sources.len())
        .param("broadcasts", args.messages)
        .param("room pushes", args.messages)
        .param("payload B", args.payload);
    let elapsed_s = (total.last_receipt_us.saturating_sub(first_publish_us)) as f64 / 1e6;
    r.figure("connect + auth, slowest worker", connect_secs, "s")
        .figure("all connections up", all_up.as_secs_f64(), "s")
        .figure(
            "connect rate",
            args.connections as f64 / all_up.as_secs_f64().max(1e-9),
            "conn/s",
        )
        .figure("expected", total.expected as f64, "")
        .figure("deliveries", total.delivered as f64, "")
        .figure(
            "lost",
            total.expected.saturating_sub(total.delivered) as f64,
            "",
        )
        .figure("duplicates", total.duplicates as f64, "")
        .figure("connections missing a message", total.incomplete as f64, "")
        .figure(
            "delivery rate",
            total.delivered as f64 / elapsed_s.max(1e-9),
            "deliveries/s",
        )
        .figure(
            "latency p50, median worker",
            p50s.get(p50s.len() / 2).copied().unwrap_or(0.0),
            "ms",
        )
        .figure("latency p99, worst worker", total.latency_p99_ms, "ms")
        .figure("latency max", total.latency_max_ms, "ms")
        .figure("publish call p50", call.ms(0.5), "ms")
        .figure("publish call p99", call.ms(0.99), "ms");
    for (c, (b, a)) in rss_before.iter().zip(&rss_after).enumerate() {
        let held = (0..args.connections)
            .filter(|k| (FIRST_ID as usize + k) % urls == c)
            .count();
        r.figure(&format!("comet {} connections", c + 1), held as f64, "")
            .figure(&format!("comet {} RSS after", c + 1), *a as f64, "KiB")
            .figure(
                &format!("comet {} memory per connection", c + 1),
                a.saturating_sub(*b) as f64 / held.max(1) as f64,
                "KiB",
            );
    }
    if let Some(e) = &total.error {
        eprintln!("a subscriber failed: {e}");
    }
    Ok(r)
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    connections: usize,
}

impl Worker {
    /// The worker's next JSON line, within `wait`.
    async fn line<T: for<'de> Deserialize<'de>>(&mut self, wait: Duration) -> Result<T> {
        let line = tokio::time::timeout(wait, self.lines.next_line())
            .await
            .context("timed out")??
            .context("the worker exited")?;
        serde_json::from_str(&line).with_context(|| format!("not a worker line: {line}"))
    }
}

/// What one worker process does: `n` connections with ids `first_id..`, all in `room`, each expecting
/// `messages` messages, waiting up to `patience` for each and sending a heartbeat every `heartbeat`.
pub struct WorkerTask<'a> {
    pub first_id: i64,
    pub n: usize,
    pub messages: usize,
    pub room: &'a str,
    pub patience: Duration,
    pub heartbeat: Duration,
}

/// One worker process (see [`WorkerTask`]).
pub async fn worker(endpoint: &Endpoint, dialing: &Dialing, task: WorkerTask<'_>) -> Result<()> {
    let WorkerTask {
        first_id,
        n,
        messages,
        room,
        patience,
        heartbeat,
    } = task;
    check_capacity(n)?;
    // Each connection is kept alive (heartbeats) from the moment it is up: opening the rest, and the other
    // workers, may take longer than the comet's heartbeat deadline.
    let (go_tx, go_rx) = watch::channel(false);
    let (receivers, took) = fleet::open_then(endpoint, dialing, first_id, n, Topic::Room(room), {
        move |sub| {
            let go = go_rx.clone();
            tokio::spawn(hold_and_receive(sub, messages, patience, heartbeat, go))
        }
    })
    .await?;
    let mut out = tokio::io::stdout();
    let ready = Ready {
        connections: receivers.len(),
        connect_secs: took.as_secs_f64(),
    };
    out.write_all(format!("{}\n", serde_json::to_string(&ready)?).as_bytes())
        .await?;
    out.flush().await?;

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    match stdin.next_line().await? {
        Some(l) if l.trim() == "go" => {}
        other => bail!("expected `go` from the coordinator, got {other:?}"),
    }
    go_tx.send_replace(true);
    let mut latency = Latencies::new();
    let mut got = Received {
        expected: (n * messages) as u64,
        delivered: 0,
        duplicates: 0,
        last_receipt_us: 0,
        latency_p50_ms: 0.0,
        latency_p99_ms: 0.0,
        latency_max_ms: 0.0,
        incomplete: 0,
        error: None,
    };
    let (now, now_us) = (Instant::now(), payload::now_micros());
    for r in receivers {
        let r = r.await?;
        got.delivered += r.delivered;
        got.duplicates += r.duplicates;
        got.incomplete += u64::from((r.delivered as usize) < messages);
        latency.merge(&r.latency);
        if let Some(last) = r.last {
            // An Instant to Unix time: its offset from `now`, which is `now_us`.
            let at = if last >= now {
                now_us + (last - now).as_micros() as u64
            } else {
                now_us.saturating_sub((now - last).as_micros() as u64)
            };
            got.last_receipt_us = got.last_receipt_us.max(at);
        }
        if got.error.is_none() {
            got.error = r.error;
        }
    }
    got.latency_p50_ms = latency.ms(0.5);
    got.latency_p99_ms = latency.ms(0.99);
    got.latency_max_ms = latency.max_ms();
    out.write_all(format!("{}\n", serde_json::to_string(&got)?).as_bytes())
        .await?;
    out.flush().await?;
    Ok(())
}

/// Keeps one connection alive with heartbeats and records the messages (sequence numbers below `want`) it
/// receives, until it has all `want` or, once `go` turned true, none came for `patience`.
async fn hold_and_receive(
    mut sub: Subscriber,
    want: usize,
    patience: Duration,
    heartbeat: Duration,
    mut go: watch::Receiver<bool>,
) -> Receipt {
    let mut r = Receipt::new(want);
    let mut tick = tokio::time::interval(heartbeat);
    tick.tick().await;
    // Before `go` nothing is published, so there is no deadline; after it, `patience` from the last message.
    let mut deadline: Option<tokio::time::Instant> = None;
    while (r.delivered as usize) < want {
        let expire = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = sub.heartbeat().await {
                    r.error = Some(format!("{e:#}"));
                    break;
                }
            }
            changed = go.changed(), if deadline.is_none() => {
                if changed.is_err() || *go.borrow() {
                    deadline = Some(tokio::time::Instant::now() + patience);
                }
            }
            _ = expire => break,
            msg = sub.next_payload() => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        r.error = Some(format!("{e:#}"));
                        break;
                    }
                };
                if r.count(&msg).is_some() && deadline.is_some() {
                    deadline = Some(tokio::time::Instant::now() + patience);
                }
            }
        }
    }
    r
}
