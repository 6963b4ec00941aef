//! Upstream op 4 commands: forwarded to `Logic.Receive` off the connection's loop, so a slow logic never
//! holds up the connection's reads, writes, kicks or shutdown. The op 5 reply (same seq) goes through the
//! connection's outbox, in order with the pushes queued before it.
//!
//! Bounded: at most [`MAX_IN_FLIGHT`] commands per connection wait for logic at once; one more is
//! answered at once with code -429 and never reaches logic.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use imcloud_proto::logic::ReceiveReq;
use imcloud_proto::{Frame, op};
use tokio::time::timeout;

use crate::channel::Channel;
use crate::comet::Comet;
use crate::out_frame::OutFrame;

/// Commands of one connection waiting for logic at once.
pub const MAX_IN_FLIGHT: u32 = 8;
/// Longest wait for logic's answer to one command.
pub const LOGIC_TIMEOUT: Duration = Duration::from_secs(5);

const BUSY: &[u8] = br#"{"code":-429,"message":"too many commands in flight on this connection: wait for their replies"}"#;

/// Starts `frame` (op 4) on its way to logic; returns the reply to send now, if it was refused.
pub fn dispatch(comet: &Arc<Comet>, ch: &Arc<Channel>, frame: Frame) -> Option<Frame> {
    let seq = frame.seq;
    if !ch.begin_command(MAX_IN_FLIGHT) {
        metrics::counter!("imcloud_comet_commands_refused_total").increment(1);
        return Some(Frame::new(
            op::SEND_MSG_REPLY,
            seq,
            Bytes::from_static(BUSY),
        ));
    }
    let req = ReceiveReq {
        mid: ch.mid,
        key: ch.key.clone(),
        proto: Some((&frame).into()),
    };
    let mut logic = comet.logic.clone();
    let ch = ch.clone();
    tokio::spawn(async move {
        let body = match timeout(LOGIC_TIMEOUT, logic.receive(req)).await {
            Ok(Ok(r)) => r.into_inner().body,
            Ok(Err(s)) => {
                serde_json::to_vec(&serde_json::json!({"code": -500, "message": s.message()}))
                    .unwrap_or_default()
            }
            Err(_) => br#"{"code":-500,"message":"logic timed out"}"#.to_vec(),
        };
        // Queued before the command counts as done, so that a close waiting for the commands in flight
        // (`connection.rs`) writes the reply first. A connection that closed meanwhile refuses it.
        ch.send(OutFrame::frame(&Frame::new(op::SEND_MSG_REPLY, seq, body)));
        ch.end_command();
    });
    None
}
