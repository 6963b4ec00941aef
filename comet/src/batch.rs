//! A push as it reaches a comet: one or more frames, encoded once as an op 9 raw batch inside a websocket
//! frame ([`OutFrame`]) and shared by every recipient. A connection whose op filter rejects some of the
//! frames gets its own smaller batch.
//!
//! `Batch::disconnect_reason()` is the body of an op 6 frame in the push, if any: the server closing those
//! connections, which `grpc.rs` turns into kicks instead of a delivery.

//!
//! A room push may hold persistent messages, each with its place in the room's history (epoch, offset).
//! Connections that joined the room with op 23 get those as op 25 publications instead
//! ([`crate::recovery`]); that encoding too is made once and shared, unless a connection drops some of
//! them (a duplicate, or its op filter).

use std::sync::OnceLock;

use imcloud_proto::Frame;
use imcloud_proto::protocol::Proto;

use crate::op_filter::OpFilter;
use crate::out_frame::OutFrame;
use crate::recovery::{Position, publication};

pub struct Batch {
    frames: Vec<Frame>,
    shared: OutFrame,
    /// Per frame: its place in the room's history, for persistent room messages.
    positions: Vec<Option<Position>>,
    /// The room of a room push (set when any message is persistent).
    room: Option<String>,
    /// Every frame for a connection that tracks positions: persistent ones as publications.
    positioned: OnceLock<(Vec<Frame>, OutFrame)>,
}

impl Batch {
    pub fn new(protos: Vec<Proto>) -> Batch {
        Batch::in_room(None, protos)
    }

    /// A push to `room`: its persistent messages keep their positions.
    pub fn room(room: &str, protos: Vec<Proto>) -> Batch {
        Batch::in_room(Some(room), protos)
    }

    fn in_room(room: Option<&str>, protos: Vec<Proto>) -> Batch {
        let positions: Vec<Option<Position>> = protos
            .iter()
            .map(|p| {
                (room.is_some() && p.history_offset > 0).then_some(Position {
                    epoch: p.history_epoch,
                    offset: p.history_offset,
                })
            })
            .collect();
        let frames: Vec<Frame> = protos.into_iter().map(Frame::from).collect();
        let shared = OutFrame::raw_batch(&frames);
        let persistent = positions.iter().any(Option::is_some);
        Batch {
            frames,
            shared,
            positions,
            room: room.filter(|_| persistent).map(str::to_string),
            positioned: OnceLock::new(),
        }
    }

    /// Whether some messages are persistent (room pushes only).
    pub fn has_positions(&self) -> bool {
        self.room.is_some()
    }

    /// The persistent messages: their positions and plain frames, in order.
    pub fn persistent(&self) -> impl Iterator<Item = (Position, &Frame)> {
        self.positions
            .iter()
            .zip(&self.frames)
            .filter_map(|(p, f)| p.map(|p| (p, f)))
    }

    fn positioned(&self) -> &(Vec<Frame>, OutFrame) {
        self.positioned.get_or_init(|| {
            let room = self.room.as_deref().unwrap_or_default();
            let frames: Vec<Frame> = self
                .frames
                .iter()
                .zip(&self.positions)
                .map(|(f, p)| match p {
                    Some(p) => publication(room, *p, f),
                    None => f.clone(),
                })
                .collect();
            let out = OutFrame::raw_batch(&frames);
            (frames, out)
        })
    }

    /// What to send to a connection that tracks positions in this room: persistent messages for which
    /// `keep` says yes (it is asked about every one, in order) as publications, the others as they are,
    /// both through the op filter.
    pub fn for_positions(
        &self,
        filter: &OpFilter,
        mut keep: impl FnMut(Position) -> bool,
    ) -> Option<OutFrame> {
        let wanted: Vec<bool> = self
            .frames
            .iter()
            .zip(&self.positions)
            .map(|(f, p)| {
                let kept = p.is_none_or(&mut keep);
                kept && filter.accepts(f.op)
            })
            .collect();
        let (frames, shared) = self.positioned();
        let n = wanted.iter().filter(|w| **w).count();
        if n == frames.len() {
            Some(shared.clone())
        } else if n == 0 {
            None
        } else {
            Some(OutFrame::raw_batch(
                frames
                    .iter()
                    .zip(&wanted)
                    .filter(|(_, w)| **w)
                    .map(|(f, _)| f),
            ))
        }
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The reason of an op 6 (disconnect) frame in this push: the server closing the connection.
    pub fn disconnect_reason(&self) -> Option<String> {
        self.frames
            .iter()
            .find(|f| f.op == imcloud_proto::op::DISCONNECT_REPLY)
            .map(|f| String::from_utf8_lossy(&f.body).into_owned())
    }

    /// What to send to a connection with `filter`: the shared bytes, a filtered copy, or nothing.
    pub fn for_filter(&self, filter: &OpFilter) -> Option<OutFrame> {
        let accepted = self.frames.iter().filter(|f| filter.accepts(f.op)).count();
        if accepted == self.frames.len() {
            Some(self.shared.clone())
        } else if accepted == 0 {
            None
        } else {
            Some(OutFrame::raw_batch(
                self.frames.iter().filter(|f| filter.accepts(f.op)),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use imcloud_proto::frame::split_raw_batch;

    use super::*;

    fn proto(op: i32, body: &str) -> Proto {
        Proto {
            ver: 1,
            op,
            seq: 0,
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn shared_bytes_unless_filtered() {
        let b = Batch::new(vec![proto(1000, "a"), proto(1001, "b")]);
        let all = b.for_filter(&OpFilter::from_accepts(&[])).unwrap();
        assert_eq!(
            all.websocket().as_ptr(),
            b.shared.websocket().as_ptr(),
            "same allocation for every unfiltered recipient"
        );
        let only = b.for_filter(&OpFilter::from_accepts(&[1001])).unwrap();
        let inner = split_raw_batch(&only.goim().slice(16..), 1024).unwrap();
        assert_eq!(inner.len(), 1);
        assert_eq!(inner[0].body, "b");
        assert!(b.for_filter(&OpFilter::from_accepts(&[7])).is_none());
        assert_eq!(b.disconnect_reason(), None);
        let kick = Batch::new(vec![proto(imcloud_proto::op::DISCONNECT_REPLY, "belogin")]);
        assert_eq!(kick.disconnect_reason().as_deref(), Some("belogin"));
    }
}
