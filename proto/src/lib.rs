//! The imcloud wire protocol: the goim frame codec and ops, and the gRPC and queue messages.

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
