//! The life of one client connection, whatever its transport: auth (op 7 -> logic.Connect -> op 8),
//! then a loop that writes queued pushes, answers heartbeats and room/sub ops, forwards op 4 to logic,
//! and closes on a protocol error, a missed heartbeat deadline, a kick or shutdown.
//!
//! 1. Handshake, within `handshake_timeout_ms` of the accept (upgrade, op 7 and `Logic.Connect`): a first
//!    frame other than op 7 closes with `Protocol`, a refusal by logic with `AuthFailed(<its message>)`.
//!    The `Channel` (an empty outbox, the op filter from `accepts`, the auth room) goes into its bucket, then
//!    op 8 is written. If the handshake fails after logic accepted it (an invalid room id, or op 8 cannot be
//!    written), `Logic.Disconnect` is called, so no session lingers.
//! 2. The loop: each turn first looks at the hard stop and the drain kick (`drain::leave`: what is queued,
//!    op 22, then the close) and the other kicks (`Replaced`, `SlowConsumer`, `HeartbeatTimeout` from the
//!    comet's deadline sweep in `heartbeat.rs`, or `ByServer` after the connection's op 4 commands are
//!    answered (at most 2 s) and what the outbox holds is written), then
//!    waits in an unbiased `select!` (neither a stream of pushes nor a chatty client starves the other
//!    direction) for: the outbox's wake-up (pushes and kicks share it; `Comet::wake_all` after the hard
//!    stop); the outbox (up to `WRITE_BATCH` = 64 frames fed once the previous ones are written); client
//!    frames (rate limited; op 2 moves the deadline, `heartbeat_secs × heartbeat_max_misses` ahead, and
//!    renews the session in the background at most every `heartbeat_secs / 2`).
//! 3. The end: the outbox closes and the channel leaves its bucket and rooms. A server-side reason is
//!    counted in `imcloud_comet_closed_total{reason}` and told (op 6, then the close); a client that left is
//!    told nothing and not counted. Unless the connection was replaced, `Logic.Disconnect` (5 s timeout,
//!    at most `DISCONNECTS_IN_FLIGHT` = 64 calls at once per comet).
//!
//! An idle connection's task is what each connection costs most (1,024 bytes in a release build, 3,200
//! before: docs/benchmarks.md, "Where an idle connection's bytes go"). The rare, large futures (auth,
//! close, disconnect) are boxed, the transport is borrowed rather than moved, and the loop waits on one
//! notification and the socket only; the heartbeat deadline lives in the channel (8 bytes) instead of a
//! timer (112).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use imcloud_common::rate_limit::{Bucket, Rate};
use imcloud_proto::logic::{ConnectReq, DisconnectReq, HeartbeatReq};
use imcloud_proto::{Frame, op};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::channel::{Channel, ChannelState, Kick, valid_room};
use crate::comet::Comet;
use crate::command;
use crate::drain;
use crate::op_filter::{OpFilter, parse_ops};
use crate::out_frame::OutFrame;
use crate::recovery;
use crate::transport::{CloseReason, Incoming, ReadError, Transport};

/// Most queued frames written before one flush.
const WRITE_BATCH: usize = 64;
/// Longest wait for logic on behalf of the connection (disconnect, heartbeat renewal).
const LOGIC_TIMEOUT: Duration = command::LOGIC_TIMEOUT;

/// Runs a connection to its end. `deadline` bounds the handshake (upgrade and auth).
/// The transport is borrowed, not moved: an `async fn` keeps a moved argument and its own copy of it side by
/// side for its whole life, and the connection's task is what every idle connection costs.
pub async fn serve<T: Transport>(
    comet: Arc<Comet>,
    t: &mut T,
    ip: IpAddr,
    deadline: Instant,
    shutdown: CancellationToken,
) {
    let auth = tokio::select! {
        // The rare, large futures (logic RPCs, close) are boxed so an idle connection's task stays small.
        r = timeout_at(deadline, Box::pin(authenticate(&comet, t, ip))) => match r {
            Ok(r) => r,
            Err(_) => Err(CloseReason::AuthFailed("handshake timeout".into())),
        },
        _ = shutdown.cancelled() => Err(CloseReason::Shutdown),
    };
    let ch = match auth {
        Ok(v) => v,
        Err(reason) => {
            metrics::counter!("imcloud_comet_closed_total", "reason" => reason.kind()).increment(1);
            Box::pin(t.close(&reason)).await;
            return;
        }
    };
    metrics::gauge!("imcloud_comet_connections").increment(1.0);
    metrics::counter!("imcloud_comet_connects_total").increment(1);
    let reason = run(&comet, t, &ch, &shutdown).await;
    ch.outbox.close();
    comet.bucket(&ch.key).remove(&ch);
    metrics::gauge!("imcloud_comet_connections").decrement(1.0);
    if let Some(reason) = reason {
        metrics::counter!("imcloud_comet_closed_total", "reason" => reason.kind()).increment(1);
        tracing::debug!(mid = ch.mid, key = %ch.key, "closing: {}", reason.text());
        Box::pin(t.close(&reason)).await;
    }
    if ch.kick_reason() != Kick::Replaced {
        // A replaced connection's session now belongs to its successor: leave it in place.
        Box::pin(disconnect(&comet, ch.mid, &ch.key)).await;
    }
}

/// Tells logic a session has ended, as one of at most [`crate::comet::DISCONNECTS_IN_FLIGHT`] calls
/// at once; the wait for a turn counts in the call's timeout.
async fn disconnect(comet: &Comet, mid: i64, key: &str) {
    let req = DisconnectReq {
        mid,
        key: key.to_string(),
        server: comet.id.clone(),
    };
    let call = async {
        let _turn = comet
            .disconnect_slots
            .acquire()
            .await
            .map_err(|_| tonic::Status::unavailable("the comet is stopping"))?;
        comet.logic.clone().disconnect(req).await
    };
    if let Err(e) = timeout(LOGIC_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("logic did not answer")))
    {
        tracing::warn!(mid, key, "logic.Disconnect: {}", e.message());
    }
}

async fn authenticate<T: Transport>(
    comet: &Comet,
    t: &mut T,
    ip: IpAddr,
) -> Result<Arc<Channel>, CloseReason> {
    let frame = loop {
        match t.next().await {
            Ok(Incoming::Frame(f)) => break f,
            Ok(Incoming::Written) => {}
            Err(ReadError::Gone) => {
                return Err(CloseReason::AuthFailed("closed before auth".into()));
            }
            Err(ReadError::Close(r)) => return Err(r),
        }
    };
    if frame.op != op::AUTH {
        return Err(CloseReason::Protocol(format!(
            "first frame must be op {} (auth), got op {}",
            op::AUTH,
            frame.op
        )));
    }
    let req = ConnectReq {
        server: comet.id.clone(),
        cookie: String::new(),
        token: frame.body.to_vec(),
        client_ip: ip.to_string(),
    };
    let reply = match comet.logic.clone().connect(req).await {
        Ok(r) => r.into_inner(),
        Err(s) => return Err(CloseReason::AuthFailed(s.message().to_string())),
    };
    let room = Some(reply.room_id).filter(|r| !r.is_empty());
    if let Some(Err(e)) = room.as_deref().map(valid_room) {
        disconnect(comet, reply.mid, &reply.key).await;
        return Err(CloseReason::Protocol(e));
    }
    let state = ChannelState {
        filter: OpFilter::from_accepts(&reply.accepts),
        rooms: room.iter().cloned().collect(),
        auth_room: room,
        positions: Vec::new(),
        recoveries: 0,
    };
    let ch = Arc::new(Channel::new(
        comet.next_conn_id(),
        reply.mid,
        reply.key,
        ip,
        comet.new_outbox(),
        state,
    ));
    ch.set_deadline_ms(comet.clock_ms() + comet.heartbeat_deadline_ms());
    comet.bucket(&ch.key).put(ch.clone());
    t.feed(&OutFrame::frame(&Frame::new(
        op::AUTH_REPLY,
        frame.seq,
        Bytes::new(),
    )));
    if t.flush().await.is_err() {
        comet.bucket(&ch.key).remove(&ch);
        disconnect(comet, ch.mid, &ch.key).await;
        return Err(CloseReason::AuthFailed(
            "client went away during auth".into(),
        ));
    }
    Ok(ch)
}

/// The authenticated loop. Returns the reason to tell the client, or `None` when the client left.
///
/// No branch blocks: writes progress inside `t.next()` while it waits for the client, and the outbox is
/// drained into the transport only once what was fed before has been written, so a client that stops
/// reading fills its outbox (and is closed as a slow consumer) while kicks, shutdown and the heartbeat
/// deadline are still seen. Every branch is cancel-safe: `outbox.woken`, `t.next` and the timers keep
/// their state outside the futures `select!` drops, and the kick and the queue are read at every turn.
async fn run<T: Transport>(
    comet: &Arc<Comet>,
    t: &mut T,
    ch: &Arc<Channel>,
    shutdown: &CancellationToken,
) -> Option<CloseReason> {
    // When the session was last renewed in logic, on the comet's clock.
    let mut last_renew_ms = comet.clock_ms();
    // Every client frame (op 4, heartbeats, room and sub ops) takes from this bucket.
    let mut frames = Bucket::new(Rate::per_sec(comet.settings.frames_per_sec));
    loop {
        // The hard stop wakes every connection (`Comet::wake_all`) after it is cancelled.
        if shutdown.is_cancelled() {
            return Some(drain::leave(comet, t, ch));
        }
        // Kicks and pushes wake this task through one notification (the outbox's): look at both each turn.
        match ch.kick_reason() {
            Kick::None => {}
            Kick::HeartbeatTimeout => return Some(CloseReason::HeartbeatTimeout),
            Kick::Drain => return Some(drain::leave(comet, t, ch)),
            Kick::Replaced => return Some(CloseReason::Replaced),
            Kick::ByServer => {
                // A command whose own effect closes this connection (delete_account) gets its reply
                // first. Boxed: the wait would otherwise sit in every idle connection's task.
                Box::pin(commands_answered(ch)).await;
                // Deliver what was queued before the kick, then say why.
                while let Some(f) = ch.outbox.try_pop() {
                    t.feed(&f);
                }
                return Some(CloseReason::ByServer(ch.kick_message().to_string()));
            }
            Kick::SlowConsumer => return Some(CloseReason::SlowConsumer),
        }
        let can_feed = t.unwritten() == 0 && !ch.outbox.is_empty();
        tokio::select! {
            // Unbiased: neither a stream of pushes nor a chatty client can starve the other direction.
            // A push, a kick or the hard stop since the last turn: looked at at the top of the loop.
            () = ch.outbox.woken() => {}
            () = std::future::ready(()), if can_feed => {
                for _ in 0..WRITE_BATCH {
                    match ch.outbox.try_pop() {
                        Some(f) => t.feed(&f),
                        None => break,
                    }
                }
            }
            io = t.next() => {
                let frame = match io {
                    Ok(Incoming::Frame(f)) => f,
                    Ok(Incoming::Written) => continue,
                    Err(ReadError::Gone) => return None,
                    Err(ReadError::Close(r)) => return Some(r),
                };
                if frames.take().is_err() {
                    return Some(CloseReason::RateLimited(comet.settings.frames_per_sec));
                }
                if frame.op == op::HEARTBEAT {
                    let now = comet.clock_ms();
                    ch.set_deadline_ms(now + comet.heartbeat_deadline_ms());
                    let renew_every = comet.settings.heartbeat_interval.as_millis() as u64 / 2;
                    if now.saturating_sub(last_renew_ms) >= renew_every {
                        last_renew_ms = now;
                        renew_session(comet, ch);
                    }
                }
                let reply = match handle(comet, ch, frame) {
                    Ok(r) => r,
                    Err(reason) => return Some(reason),
                };
                if let Some(reply) = reply {
                    t.feed(&OutFrame::frame(&reply));
                }
            }
        }
    }
}

/// Longest a close by the server waits for the connection's op 4 commands to be answered.
const COMMAND_REPLY_GRACE: Duration = Duration::from_secs(2);

/// Waits until no op 4 command of `ch` is waiting for logic (their replies are then in the outbox), for
/// at most [`COMMAND_REPLY_GRACE`].
async fn commands_answered(ch: &Channel) {
    let until = tokio::time::Instant::now() + COMMAND_REPLY_GRACE;
    while ch.commands_in_flight() > 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Renews the session in logic without holding up the connection.
fn renew_session(comet: &Arc<Comet>, ch: &Channel) {
    let req = HeartbeatReq {
        mid: ch.mid,
        key: ch.key.clone(),
        server: comet.id.clone(),
    };
    let mut logic = comet.logic.clone();
    tokio::spawn(async move {
        match timeout(LOGIC_TIMEOUT, logic.heartbeat(req)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("logic.Heartbeat: {}", e.message()),
            Err(_) => tracing::warn!("logic.Heartbeat timed out"),
        }
    });
}

fn room_body(body: &[u8]) -> Result<String, CloseReason> {
    let room = std::str::from_utf8(body)
        .map_err(|_| CloseReason::Protocol("room id is not UTF-8".into()))?;
    Ok(room.trim().to_string())
}

/// JSON reply of the multi-room ops: the connection's rooms after the change, or why it failed.
fn rooms_reply(ch: &Channel, error: Option<String>) -> Bytes {
    let st = ch.state();
    let v = match error {
        None => {
            serde_json::json!({"code": 0, "message": "ok", "rooms": st.rooms, "auth_room": st.auth_room})
        }
        Some(e) => {
            serde_json::json!({"code": -400, "message": e, "rooms": st.rooms, "auth_room": st.auth_room})
        }
    };
    serde_json::to_vec(&v).unwrap_or_default().into()
}

/// Handles one client frame after auth; returns the reply to send, if any. Never waits: op 4 goes to
/// logic on a task of its own ([`command::dispatch`]).
fn handle(
    comet: &Arc<Comet>,
    ch: &Arc<Channel>,
    frame: Frame,
) -> Result<Option<Frame>, CloseReason> {
    let seq = frame.seq;
    let reply = |op: i32, body: Bytes| Ok(Some(Frame::new(op, seq, body)));
    match frame.op {
        op::HEARTBEAT => {
            let room = ch.state().auth_room.clone();
            let online = room.map(|r| comet.room_online(&r)).unwrap_or(0);
            reply(
                op::HEARTBEAT_REPLY,
                Bytes::copy_from_slice(&online.to_be_bytes()),
            )
        }
        op::SEND_MSG => Ok(command::dispatch(comet, ch, frame)),
        op::RECOVER => Ok(recovery::start(comet, ch, frame)),
        op::CHANGE_ROOM => {
            let room = room_body(&frame.body)?;
            let target = if room.is_empty() {
                None
            } else {
                Some(room.as_str())
            };
            if let Some(r) = target {
                valid_room(r).map_err(CloseReason::Protocol)?;
            }
            comet
                .bucket(&ch.key)
                .change_auth_room(ch, target, comet.settings.max_rooms)
                .map_err(CloseReason::Protocol)?;
            reply(op::CHANGE_ROOM_REPLY, frame.body)
        }
        op::JOIN_ROOM => {
            let room = room_body(&frame.body)?;
            let result = valid_room(&room).and_then(|_| {
                comet
                    .bucket(&ch.key)
                    .join(ch, &room, comet.settings.max_rooms)
            });
            reply(op::JOIN_ROOM_REPLY, rooms_reply(ch, result.err()))
        }
        op::LEAVE_ROOM => {
            let room = room_body(&frame.body)?;
            comet.bucket(&ch.key).leave(ch, &room);
            reply(op::LEAVE_ROOM_REPLY, rooms_reply(ch, None))
        }
        op::SUB | op::UNSUB => {
            let ops = parse_ops(&frame.body).map_err(CloseReason::Protocol)?;
            let mut st = ch.state();
            if frame.op == op::SUB {
                st.filter.sub(&ops);
                drop(st);
                reply(op::SUB_REPLY, frame.body)
            } else {
                st.filter.unsub(&ops);
                drop(st);
                reply(op::UNSUB_REPLY, frame.body)
            }
        }
        op::AUTH => Err(CloseReason::Protocol("already authenticated".into())),
        other => Err(CloseReason::Protocol(format!("unsupported op {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comet::CometSettings;

    /// A transport that never yields, to size the connection task.
    struct Idle;
    impl Transport for Idle {
        async fn next(&mut self) -> Result<Incoming, ReadError> {
            std::future::pending().await
        }
        fn feed(&mut self, _frame: &OutFrame) {}
        fn unwritten(&self) -> usize {
            0
        }
        async fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
        async fn close(&mut self, _reason: &CloseReason) {}
    }

    #[tokio::test]
    async fn an_idle_connection_task_is_small() {
        let settings = CometSettings {
            handshake_timeout: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_max_misses: 1,
            conn_queue_bytes: 1,
            outbox_budget_bytes: 1,
            max_client_body: 16,
            frames_per_sec: 1,
            max_rooms: 1,
        };
        let comet = Arc::new(Comet::for_tests(settings, 1));
        let mut t = Idle;
        let fut = serve(
            comet,
            &mut t,
            [127, 0, 0, 1].into(),
            Instant::now(),
            CancellationToken::new(),
        );
        let size = std::mem::size_of_val(&fut);
        eprintln!("idle connection task future: {size} bytes");
        // Logic RPC futures are boxed; what stays inline is the select state of one connection: 392 bytes
        // with this zero-sized transport in a debug build when written. A timer or a second notification
        // back in the loop's select! (112 and 88 bytes) would fail this bound.
        assert!(size < 480, "connection task future is {size} bytes");
    }
}
