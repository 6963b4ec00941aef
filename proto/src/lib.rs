//! The imcloud wire protocol: the goim frame codec and ops, and the gRPC and queue messages.
//!
//! Re-exports [`Frame`] and [`op`]; includes the modules generated from `proto/proto/*.proto`: `protocol`
//! (`Proto`, one frame as carried between services), `comet` (the `Comet` service job and logic call:
//! `PushMsg`, `PushMsgs`, `Broadcast`, `BroadcastRoom`, `Rooms`), `logic` (the `Logic` service: comet-,
//! api- and backend-facing RPCs) and `queue` (`PushMsg`, the queue payload: type PUSH/ROOM/BROADCAST,
//! operation, speed, server, room, keys, msg); converts between `Frame` and `protocol::Proto`; and
//! `push_msg::Type::label()` (`push`, `room`, `broadcast`), the `type` label of every metric.

pub mod frame;
pub mod op;
pub mod publication;
pub mod reconnect_hint;

pub use frame::{Frame, FrameError};
pub use publication::Publication;
pub use reconnect_hint::ReconnectHint;

pub mod protocol {
    tonic::include_proto!("imcloud.protocol");
}
pub mod comet {
    tonic::include_proto!("imcloud.comet");
}
pub mod logic {
    tonic::include_proto!("imcloud.logic");
}
pub mod queue {
    tonic::include_proto!("imcloud.queue");
}

impl queue::push_msg::Type {
    /// The `type` label of push metrics.
    pub fn label(self) -> &'static str {
        match self {
            queue::push_msg::Type::Push => "push",
            queue::push_msg::Type::Room => "room",
            queue::push_msg::Type::Broadcast => "broadcast",
        }
    }
}

impl From<&Frame> for protocol::Proto {
    fn from(f: &Frame) -> Self {
        protocol::Proto {
            ver: f.ver as i32,
            op: f.op,
            seq: f.seq,
            body: f.body.to_vec(),
            accepted_unix_us: 0,
            ..Default::default()
        }
    }
}

impl From<protocol::Proto> for Frame {
    fn from(p: protocol::Proto) -> Self {
        Frame {
            ver: p.ver as i16,
            op: p.op,
            seq: p.seq,
            body: p.body.into(),
        }
    }
}
