//! Room recovery on the comet side: op 23 (join a room with a position and recover what was missed),
//! op 24 (its reply) and op 25 (a persistent message with its position). See docs/protocol.md.
//!
//! Only connections that sent op 23 for a room see any of this: their persistent messages in that room
//! arrive as op 25 publications carrying the room, epoch and offset. Everyone else (every goim client)
//! gets the same messages as plain application frames, as before.
//!
//! **The seam.** Op 23 puts the connection in the room at once and sets the room's state to
//! `Recovering`, then asks logic for the history after the client's position. Live persistent messages
//! that arrive meanwhile wait in a buffer (non-persistent ones are delivered at once). Every live message
//! was appended to the history before job sent it, so a history read started after it arrived includes
//! it; one that arrives during the read may or may not be in it. When logic answers, under the
//! connection's state lock: op 24, then the recovered publications and the buffered ones whose offset is
//! above the last recovered one, in one op 9; from then on the room is `Live` and every persistent
//! message is delivered only if its offset is above the last one delivered in the same epoch (a
//! redelivery after a job takeover is dropped; a message of another epoch is delivered and its epoch
//! adopted). So the client gets each missed message once, in order, before the live ones.
//!
//! **Bounded.** The buffer holds at most [`BUFFER_MAX`] messages. When it is full the recovery is given up:
//! op 24 says `recovered: false` with reason `buffer_full` at once, the buffered messages follow and the
//! room is live from the last of them (logic's late answer is ignored). The client syncs the gap from the
//! application, as for any failed recovery.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use imcloud_proto::logic::RecoverReq;
use imcloud_proto::{Frame, Publication, op};
use serde::Deserialize;
use tokio::time::timeout;

use crate::batch::Batch;
use crate::channel::{Channel, ChannelState, valid_room};
use crate::comet::Comet;
use crate::out_frame::OutFrame;

/// Live persistent messages one recovering room of one connection may hold.
pub const BUFFER_MAX: usize = 1024;
/// Most bytes of messages one recovery replays (also under half the connection's queue), well inside the
/// 4 MiB a gRPC reply may carry.
const MAX_REPLAY_BYTES: usize = 2 << 20;
/// Longest wait for logic's answer.
const LOGIC_TIMEOUT: Duration = Duration::from_secs(5);

/// A persistent message's place in its room's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub epoch: u64,
    pub offset: u64,
}

/// Where a connection is in one room it joined with op 23.
#[derive(Debug)]
pub enum RoomPos {
    /// Waiting for logic's answer to attempt `attempt` (asked by the op 23 with `seq`); live persistent
    /// messages wait in `buffer`.
    Recovering {
        attempt: u64,
        seq: i32,
        buffer: Vec<(Position, Frame)>,
    },
    /// The last persistent message delivered.
    Live(Position),
}

/// A persistent message as an op 25 publication ([`imcloud_proto::Publication`]).
pub fn publication(room: &str, p: Position, f: &Frame) -> Frame {
    let body = Publication::encode(p.epoch, p.offset, f.op, room, &f.body);
    Frame::new(op::PUBLICATION, 0, body)
}

/// The op 23 body.
#[derive(Deserialize)]
struct RecoverBody {
    room: String,
    /// The client's last position; absent: first join, nothing to recover.
    epoch: Option<u64>,
    #[serde(default)]
    offset: u64,
}

/// The op 24 body.
#[allow(clippy::too_many_arguments)]
fn reply(
    st: &ChannelState,
    room: &str,
    code: i32,
    message: &str,
    recovered: bool,
    reason: Option<&str>,
    pos: Position,
    publications: usize,
) -> Bytes {
    let v = serde_json::json!({
        "code": code,
        "message": message,
        "room": room,
        "epoch": pos.epoch,
        "offset": pos.offset,
        "recovered": recovered,
        "reason": reason,
        "publications": publications,
        "rooms": st.rooms,
        "auth_room": st.auth_room,
    });
    serde_json::to_vec(&v).unwrap_or_default().into()
}

/// Handles op 23: returns the reply to send now when the request is refused; otherwise the connection is
/// in the room, recovering, and op 24 follows when logic answers.
pub fn start(comet: &Arc<Comet>, ch: &Arc<Channel>, frame: Frame) -> Option<Frame> {
    let seq = frame.seq;
    let refuse = |room: &str, message: String| {
        let body = reply(
            &ch.state(),
            room,
            -400,
            &message,
            false,
            None,
            Position::default(),
            0,
        );
        Some(Frame::new(op::RECOVER_REPLY, seq, body))
    };
    let req: RecoverBody = match serde_json::from_slice(&frame.body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                "",
                format!("body must be JSON {{\"room\", \"epoch\"?, \"offset\"?}}: {e}"),
            );
        }
    };
    let room = req.room.trim().to_string();
    if let Err(e) = valid_room(&room) {
        return refuse(&room, e);
    }
    // Positions first, then the room: no live message can reach it in between as a plain frame.
    let attempt = ch.state().begin_recovery(&room, seq);
    if let Err(e) = comet
        .bucket(&ch.key)
        .join(ch, &room, comet.settings.max_rooms)
    {
        ch.state().positions.retain(|(r, _)| *r != room);
        return refuse(&room, e);
    }
    let from = req.epoch.map(|epoch| Position {
        epoch,
        offset: req.offset,
    });
    let rpc = RecoverReq {
        room: room.clone(),
        epoch: from.map_or(0, |p| p.epoch),
        offset: from.map_or(0, |p| p.offset),
        max_bytes: (comet.settings.conn_queue_bytes / 2).clamp(1, MAX_REPLAY_BYTES) as u64,
    };
    let mut logic = comet.logic.clone();
    let ch = ch.clone();
    tokio::spawn(async move {
        let answer = match timeout(LOGIC_TIMEOUT, logic.recover(rpc)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(s.message().to_string()),
            Err(_) => Err("logic timed out".to_string()),
        };
        finish(&ch, &room, attempt, seq, from, answer);
    });
    None
}

/// Logic answered: op 24, the recovered and buffered publications, and the room goes live.
fn finish(
    ch: &Channel,
    room: &str,
    attempt: u64,
    seq: i32,
    from: Option<Position>,
    answer: Result<imcloud_proto::logic::RecoverReply, String>,
) {
    let mut st = ch.state();
    let Some(RoomPos::Recovering {
        attempt: current,
        buffer,
        ..
    }) = st.position_mut(room)
    else {
        return; // given up (buffer full), left, or asked again
    };
    if *current != attempt {
        return;
    }
    let buffer = std::mem::take(buffer);
    let (code, message, recovered, reason, mut last, recovered_frames) = match answer {
        Ok(r) => {
            let last = Position {
                epoch: r.epoch,
                offset: r.offset,
            };
            // The op filter applies to recovered messages as to live ones.
            let frames: Vec<Frame> = r
                .publications
                .into_iter()
                .filter(|p| st.filter.accepts(p.op))
                .map(|p| {
                    let pos = Position {
                        epoch: p.history_epoch,
                        offset: p.history_offset,
                    };
                    publication(room, pos, &Frame::from(p))
                })
                .collect();
            match from {
                // A first join: the stream simply starts here.
                None => (0, "ok".to_string(), true, None, last, Vec::new()),
                Some(_) => {
                    let reason = (!r.recovered).then_some(r.reason);
                    (0, "ok".to_string(), r.recovered, reason, last, frames)
                }
            }
        }
        Err(e) => (
            -503,
            format!("room history unavailable: {e}"),
            false,
            Some("unavailable".to_string()),
            Position::default(),
            Vec::new(),
        ),
    };
    let count = recovered_frames.len();
    let mut frames = recovered_frames;
    let filter_accepts = |f: &Frame| st.filter.accepts(f.op);
    let mut live = Vec::new();
    for (p, f) in buffer {
        if p.epoch == last.epoch && p.offset <= last.offset {
            continue;
        }
        last = p;
        if filter_accepts(&f) {
            live.push(publication(room, p, &f));
        }
    }
    frames.extend(live);
    *st.position_mut(room).expect("checked above") = RoomPos::Live(last);
    let rooms_reply = reply(
        &st,
        room,
        code,
        &message,
        recovered,
        reason.as_deref(),
        last,
        count,
    );
    // Under the state lock, so no live message of this room can slip in before these.
    ch.send(OutFrame::frame(&Frame::new(
        op::RECOVER_REPLY,
        seq,
        rooms_reply,
    )));
    if !frames.is_empty() {
        ch.send(OutFrame::raw_batch(&frames));
    }
    metrics::counter!("imcloud_comet_recoveries_total", "recovered" => if recovered { "true" } else { "false" })
        .increment(1);
}

impl ChannelState {
    /// The position of a room joined with op 23.
    pub fn position_mut(&mut self, room: &str) -> Option<&mut RoomPos> {
        self.positions
            .iter_mut()
            .find(|(r, _)| r == room)
            .map(|(_, p)| p)
    }

    /// Starts a recovery of `room` (asked by the op 23 with `seq`); returns its attempt number.
    fn begin_recovery(&mut self, room: &str, seq: i32) -> u64 {
        self.recoveries += 1;
        let pos = RoomPos::Recovering {
            attempt: self.recoveries,
            seq,
            buffer: Vec::new(),
        };
        match self.position_mut(room) {
            Some(p) => *p = pos,
            None => self.positions.push((room.to_string(), pos)),
        }
        self.recoveries
    }
}

/// Delivers a room push holding persistent messages to a connection that joined `room` with op 23 (the
/// caller holds its state): live, each persistent message once, as a publication; recovering, the
/// persistent ones wait (see the module header). `true` if something was queued.
pub fn push_positioned(ch: &Channel, st: &mut ChannelState, room: &str, batch: &Batch) -> bool {
    let ChannelState {
        filter, positions, ..
    } = &mut *st;
    let Some(pos) = positions
        .iter_mut()
        .find(|(r, _)| r == room)
        .map(|(_, p)| p)
    else {
        return false;
    };
    match pos {
        RoomPos::Live(last) => {
            let out = batch.for_positions(filter, |p| {
                if p.epoch == last.epoch && p.offset <= last.offset {
                    false
                } else {
                    *last = p;
                    true
                }
            });
            out.is_some_and(|b| ch.send(b))
        }
        RoomPos::Recovering { seq, buffer, .. } => {
            // Messages that are not persistent are not part of any recovery: they go now.
            let now = batch
                .for_positions(filter, |_| false)
                .is_some_and(|b| ch.send(b));
            let incoming = batch.persistent().map(|(p, f)| (p, f.clone()));
            if buffer.len() + batch.persistent().count() <= BUFFER_MAX {
                buffer.extend(incoming);
                return now;
            }
            // Full: give the recovery up and go live from the newest message.
            let seq = *seq;
            let mut last = Position::default();
            let mut frames = Vec::new();
            for (p, f) in std::mem::take(buffer).into_iter().chain(incoming) {
                if p.epoch == last.epoch && p.offset <= last.offset {
                    continue;
                }
                last = p;
                if filter.accepts(f.op) {
                    frames.push(publication(room, p, &f));
                }
            }
            *pos = RoomPos::Live(last);
            let body = reply(st, room, 0, "ok", false, Some("buffer_full"), last, 0);
            ch.send(OutFrame::frame(&Frame::new(op::RECOVER_REPLY, seq, body)));
            metrics::counter!("imcloud_comet_recoveries_total", "recovered" => "false")
                .increment(1);
            if !frames.is_empty() {
                ch.send(OutFrame::raw_batch(&frames));
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use imcloud_proto::logic::RecoverReply;
    use imcloud_proto::protocol::Proto;

    use super::*;
    use crate::op_filter::OpFilter;
    use crate::outbox::{Outbox, OutboxBudget};

    const ROOM: &str = "live://1";

    fn channel() -> Channel {
        let state = ChannelState {
            filter: OpFilter::from_accepts(&[]),
            rooms: vec![ROOM.into()],
            auth_room: None,
            positions: Vec::new(),
            recoveries: 0,
        };
        let outbox = Outbox::new(1 << 20, OutboxBudget::new(1 << 30));
        Channel::new(1, 1, "k".into(), [127, 0, 0, 1].into(), outbox, state)
    }

    fn proto(offset: u64, body: &str) -> Proto {
        Proto {
            ver: 1,
            op: 1000,
            body: body.as_bytes().to_vec(),
            history_epoch: if offset > 0 { 7 } else { 0 },
            history_offset: offset,
            ..Default::default()
        }
    }

    fn batch(msgs: &[(u64, &str)]) -> Batch {
        Batch::room(ROOM, msgs.iter().map(|(o, b)| proto(*o, b)).collect())
    }

    /// Everything queued for the client: `R<recovered>` for op 24, `<offset>` for a publication, the body
    /// for a plain message.
    fn sent(ch: &Channel) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(f) = ch.outbox.try_pop() {
            let f = Frame::decode(&f.goim(), 1 << 20).unwrap();
            let inner = if f.op == op::RAW {
                imcloud_proto::frame::split_raw_batch(&f.body, 1 << 20).unwrap()
            } else {
                vec![f]
            };
            for f in inner {
                out.push(match f.op {
                    op::RECOVER_REPLY => {
                        let v: serde_json::Value = serde_json::from_slice(&f.body).unwrap();
                        format!("R{}", v["recovered"])
                    }
                    op::PUBLICATION => Publication::parse(&f.body).unwrap().offset.to_string(),
                    _ => String::from_utf8_lossy(&f.body).into_owned(),
                });
            }
        }
        out
    }

    fn answer(top: u64, recovered: &[u64]) -> RecoverReply {
        RecoverReply {
            epoch: 7,
            offset: top,
            recovered: true,
            reason: String::new(),
            publications: recovered.iter().map(|&o| proto(o, "h")).collect(),
        }
    }

    #[test]
    fn live_messages_during_a_recovery_follow_it_once_in_order() {
        let ch = channel();
        let attempt = ch.state().begin_recovery(ROOM, 3);
        // Arrive while logic reads the history: 6 and 7 (which the read will also return), then 8.
        assert!(!ch.push_room(ROOM, &batch(&[(6, "x"), (7, "x")])));
        assert!(
            ch.push_room(ROOM, &batch(&[(0, "plain"), (8, "x")])),
            "plain goes now"
        );
        finish(
            &ch,
            ROOM,
            attempt,
            3,
            Some(Position {
                epoch: 7,
                offset: 4,
            }),
            Ok(answer(7, &[5, 6, 7])),
        );
        assert_eq!(sent(&ch), ["plain", "Rtrue", "5", "6", "7", "8"]);
        // Live: a redelivery is dropped, the next one goes, another epoch is adopted.
        ch.push_room(ROOM, &batch(&[(8, "x"), (9, "x")]));
        let mut other = proto(1, "y");
        other.history_epoch = 8;
        ch.push_room(ROOM, &Batch::room(ROOM, vec![other]));
        assert_eq!(sent(&ch), ["9", "1"]);
        // A late answer to an old attempt is ignored.
        finish(&ch, ROOM, attempt, 3, None, Ok(answer(9, &[])));
        assert!(sent(&ch).is_empty());
    }

    #[test]
    fn a_full_buffer_gives_the_recovery_up_and_goes_live() {
        let ch = channel();
        let attempt = ch.state().begin_recovery(ROOM, 3);
        for o in 1..=BUFFER_MAX as u64 {
            ch.push_room(ROOM, &batch(&[(o, "x")]));
        }
        assert!(sent(&ch).is_empty(), "buffered");
        ch.push_room(ROOM, &batch(&[(BUFFER_MAX as u64 + 1, "x")]));
        let got = sent(&ch);
        assert_eq!(got[0], "Rfalse");
        assert_eq!(got.len(), BUFFER_MAX + 2);
        assert_eq!(got[BUFFER_MAX + 1], (BUFFER_MAX + 1).to_string());
        finish(&ch, ROOM, attempt, 3, None, Ok(answer(5, &[])));
        assert!(sent(&ch).is_empty(), "logic's late answer is ignored");
    }

    #[test]
    fn goim_connections_get_plain_frames() {
        let ch = channel();
        assert!(ch.push_room(ROOM, &batch(&[(1, "a"), (0, "b")])));
        assert_eq!(sent(&ch), ["a", "b"]);
    }
}
