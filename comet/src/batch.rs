//! A push as it reaches a comet: one or more frames, encoded once as an op 9 raw batch inside a websocket
//! frame ([`OutFrame`]) and shared by every recipient. A connection whose op filter rejects some of the
//! frames gets its own smaller batch.
//!
//! `Batch::disconnect_reason()` is the body of an op 6 frame in the push, if any: the server closing those
//! connections, which `grpc.rs` turns into kicks instead of a delivery.

use imcloud_proto::Frame;
use imcloud_proto::protocol::Proto;

use crate::op_filter::OpFilter;
use crate::out_frame::OutFrame;

pub struct Batch {
    frames: Vec<Frame>,
    shared: OutFrame,
}

impl Batch {
    pub fn new(protos: Vec<Proto>) -> Batch {
        let frames: Vec<Frame> = protos.into_iter().map(Frame::from).collect();
        let shared = OutFrame::raw_batch(&frames);
        Batch { frames, shared }
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
