//! The scenarios: idle (memory per connection and connect rate), and [`delivery`]: fanout (one room, many
//! subscribers), cost (a fanout that also reads the target's memory and CPU time: the cost curve) or push
//! (one user per message through the push API). Each returns a [`Report`]. (The multi-process scale run is
//! in `scale.rs`.)

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::delivery::{self, Outcome, Plan};
use crate::fleet::{self, Dialing};
use crate::proc_stats::{cpu_secs, cpu_sum_secs, rss_kib, rss_sum_kib};
use crate::publisher::{Publisher, PushApi, Via};
use crate::report::Report;
use crate::subscriber::{Endpoint, Topic};

/// One client process can hold about this many sockets here (20,000 open files, minus its own).
pub const MAX_CONNECTIONS_PER_PROCESS: usize = 19_900;

/// The target as the report names it.
pub struct Labels {
    pub target: String,
    pub about: String,
}

pub struct Idle {
    pub connections: usize,
    /// The target's process, for its resident memory before and after.
    pub server_pid: Option<u32>,
    pub heartbeat: Duration,
    /// Time between the last connection and the second memory reading.
    pub settle: Duration,
}

pub async fn idle(
    endpoint: &Endpoint,
    dialing: &Dialing,
    labels: &Labels,
    args: Idle,
) -> Result<Report> {
    check_capacity(args.connections)?;
    let before = args.server_pid.map(rss_kib).transpose()?;
    let (subs, took) = fleet::open(endpoint, dialing, 1, args.connections, Topic::User).await?;
    let held = fleet::hold(subs, args.heartbeat);
    tokio::time::sleep(args.settle).await;
    let alive = held.iter().filter(|h| !h.is_finished()).count();
    let after = args.server_pid.map(rss_kib).transpose()?;
    for h in &held {
        h.abort();
    }

    let mut r = Report::new("idle", &labels.target, &labels.about);
    r.param("connections", args.connections)
        .param("sources", dialing.sources.len())
        .param("concurrency", dialing.concurrency)
        .param("settle s", args.settle.as_secs());
    let n = args.connections as f64;
    r.figure("connect + auth", took.as_secs_f64(), "s")
        .figure("connect rate", n / took.as_secs_f64().max(1e-9), "conn/s")
        .figure("alive after settle", alive as f64, "conn");
    if let (Some(b), Some(a)) = (before, after) {
        r.figure("server RSS before", b as f64, "KiB")
            .figure("server RSS after", a as f64, "KiB")
            .figure(
                "memory per connection",
                a.saturating_sub(b) as f64 / n,
                "KiB",
            );
    }
    if alive < args.connections {
        bail!(
            "{} of {} connections closed while idle\n{}",
            args.connections - alive,
            args.connections,
            r.text()
        );
    }
    Ok(r)
}

pub struct Delivery {
    pub subscribers: usize,
    pub messages: usize,
    pub payload: usize,
    pub rate: u64,
    pub inflight: usize,
    pub via: Via,
    pub patience: Duration,
    /// Messages per latency window (0 = no windows).
    pub window: usize,
    /// The target's processes: their memory growth per subscriber and CPU time per delivery are reported.
    pub server_pids: Vec<u32>,
}

/// fanout and cost (`room` set: every subscriber in that room) or push (`room` None: one user per message).
pub async fn delivery(
    endpoint: &Endpoint,
    dialing: &Dialing,
    api: &PushApi,
    labels: &Labels,
    args: Delivery,
    scenario: &str,
    room: Option<&str>,
) -> Result<Report> {
    check_capacity(args.subscribers)?;
    let rss_before = rss_sum_kib(&args.server_pids)?;
    // Ids apart from the idle scenario's, so a run right after it never meets a lingering session.
    let first_id = if room.is_some() { 1_000_000 } else { 2_000_000 };
    let topic = room.map_or(Topic::User, Topic::Room);
    let (subs, _) = fleet::open(endpoint, dialing, first_id, args.subscribers, topic).await?;
    let publisher = Publisher::connect(endpoint, args.via, api)
        .await
        .context("connecting the publisher")?;
    if !args.server_pids.is_empty() {
        // As in the idle scenario: let the target settle its new connections before reading its memory.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let rss_subscribed = rss_sum_kib(&args.server_pids)?;
    let (server_cpu0, own_cpu0) = (cpu_sum_secs(&args.server_pids)?, cpu_secs(None)?);
    let inflight = if publisher.can_clone() {
        args.inflight.max(1)
    } else {
        1
    };
    let plan = Plan {
        messages: args.messages,
        payload: args.payload,
        rate: args.rate,
        inflight,
        room: room.map(str::to_string),
        first_id,
        users: args.subscribers,
        patience: args.patience,
        window: args.window,
    };
    let out = delivery::run(subs, publisher, plan).await?;
    let (server_cpu, own_cpu) = (
        cpu_sum_secs(&args.server_pids)? - server_cpu0,
        cpu_secs(None)? - own_cpu0,
    );

    let mut r = Report::new(scenario, &labels.target, &labels.about);
    r.param("subscribers", args.subscribers)
        .param("messages", args.messages)
        .param("payload B", args.payload)
        .param(
            "rate",
            if args.rate == 0 {
                "flat out".to_string()
            } else {
                format!("{}/s", args.rate)
            },
        )
        .param("publishers in flight", inflight);
    if endpoint.kind == crate::subscriber::Kind::Imcloud {
        r.param("via", format!("{:?}", args.via).to_lowercase());
    }
    add_outcome(&mut r, &out, args.messages);
    for (k, w) in out.windows.iter().enumerate() {
        let (from, to) = (k * args.window, ((k + 1) * args.window).min(args.messages));
        r.figure(
            &format!("latency p99, messages {from}-{to}"),
            w.ms(0.99),
            "ms",
        );
    }
    if !args.server_pids.is_empty() {
        let thousands = (out.delivered as f64 / 1000.0).max(1e-9);
        r.param("server processes", args.server_pids.len())
            .figure(
                "server RSS per subscriber",
                rss_subscribed.saturating_sub(rss_before) as f64 / args.subscribers.max(1) as f64,
                "KiB",
            )
            .figure("server RSS subscribed", rss_subscribed as f64, "KiB")
            .figure("server CPU", server_cpu, "s")
            .figure(
                "server CPU per 1,000 deliveries",
                server_cpu * 1000.0 / thousands,
                "ms",
            )
            .figure(
                "generator CPU per 1,000 deliveries",
                own_cpu * 1000.0 / thousands,
                "ms",
            );
    }
    if let Some(e) = &out.receive_error {
        eprintln!("a subscriber failed: {e}");
    }
    Ok(r)
}

fn add_outcome(r: &mut Report, out: &Outcome, messages: usize) {
    let secs = |d: Duration| d.as_secs_f64().max(1e-9);
    r.figure(
        "accepted",
        messages as f64 / secs(out.publish_elapsed),
        "msg/s",
    )
    .figure("deliveries", out.delivered as f64, "")
    .figure("lost", out.lost() as f64, "")
    .figure("duplicates", out.duplicates as f64, "")
    .figure(
        "delivery rate",
        out.delivered as f64 / secs(out.elapsed),
        "deliveries/s",
    )
    .figure("latency p50", out.latency.ms(0.5), "ms")
    .figure("latency p99", out.latency.ms(0.99), "ms")
    .figure("latency p99.9", out.latency.ms(0.999), "ms")
    .figure("latency max", out.latency.max_ms(), "ms")
    .figure("publish call p50", out.call.ms(0.5), "ms")
    .figure("publish call p99", out.call.ms(0.99), "ms");
}

pub fn check_capacity(n: usize) -> Result<()> {
    if n > MAX_CONNECTIONS_PER_PROCESS {
        bail!(
            "{n} connections do not fit in one generator process (at most {MAX_CONNECTIONS_PER_PROCESS} \
             with 20,000 open files): run several generators side by side, each with its own --sources"
        );
    }
    Ok(())
}
