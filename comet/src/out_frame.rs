//! A frame on its way to a client, encoded once for every transport.
//!
//! The bytes are a complete websocket binary frame (server frames are unmasked, so the same bytes suit
//! every websocket recipient) whose payload is one goim frame. The goim TCP transport writes the payload
//! alone, and for an op 9 batch only its inner frames. A room push is encoded into one [`OutFrame`] and
//! every recipient's outbox holds a clone of the same `Bytes`: no recipient copies or frames it again.

use bytes::{BufMut, Bytes, BytesMut};
use imcloud_proto::frame::{HEADER_LEN, VERSION};
use imcloud_proto::{Frame, op};

use crate::ws_codec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFrame {
    /// Websocket header, then the goim frame.
    bytes: Bytes,
    /// Length of the websocket header (2, 4 or 10).
    ws_header: u8,
    /// Whether the goim frame is an op 9 batch.
    raw: bool,
}

impl OutFrame {
    /// One goim frame (a reply, a heartbeat answer, a close reason).
    pub fn frame(f: &Frame) -> OutFrame {
        let mut buf = start(f.len());
        let ws_header = buf.len() as u8;
        f.encode_into(&mut buf);
        OutFrame {
            bytes: buf.freeze(),
            ws_header,
            raw: f.op == op::RAW,
        }
    }

    /// An op 9 batch of `frames`: an outer goim header whose body is the frames back to back.
    pub fn raw_batch<'a>(frames: impl IntoIterator<Item = &'a Frame> + Clone) -> OutFrame {
        let inner: usize = frames.clone().into_iter().map(Frame::len).sum();
        let mut buf = start(HEADER_LEN + inner);
        let ws_header = buf.len() as u8;
        buf.put_i32((HEADER_LEN + inner) as i32);
        buf.put_i16(HEADER_LEN as i16);
        buf.put_i16(VERSION);
        buf.put_i32(op::RAW);
        buf.put_i32(0);
        for f in frames {
            f.encode_into(&mut buf);
        }
        OutFrame {
            bytes: buf.freeze(),
            ws_header,
            raw: true,
        }
    }

    /// The complete websocket frame.
    pub fn websocket(&self) -> &Bytes {
        &self.bytes
    }

    /// The goim frame alone.
    pub fn goim(&self) -> Bytes {
        self.bytes.slice(self.ws_header as usize..)
    }

    /// What goim TCP writes: the frame, or for an op 9 batch its inner frames without the outer header.
    pub fn goim_stream(&self) -> Bytes {
        let skip = if self.raw { HEADER_LEN } else { 0 };
        self.bytes.slice(self.ws_header as usize + skip..)
    }

    /// Bytes held in memory (what outbox bounds count).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// A buffer holding the websocket header of a binary frame with a `payload`-byte payload.
fn start(payload: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(ws_codec::MAX_SERVER_HEADER + payload);
    ws_codec::put_header(&mut buf, ws_codec::OPCODE_BINARY, payload);
    buf
}

#[cfg(test)]
mod tests {
    use imcloud_proto::frame::split_raw_batch;

    use super::*;

    #[test]
    fn one_encoding_serves_both_transports() {
        let f = Frame::new(op::AUTH_REPLY, 7, Bytes::from_static(b"ok"));
        let out = OutFrame::frame(&f);
        assert_eq!(out.goim(), f.encode());
        assert_eq!(out.goim_stream(), f.encode());
        assert_eq!(
            &out.websocket()[..2],
            &[0x82, 18],
            "FIN + binary, 18-byte payload"
        );
        assert_eq!(out.len(), 20);
    }

    #[test]
    fn batches_drop_their_outer_header_on_tcp() {
        let frames = vec![
            Frame::new(1000, 0, Bytes::from(vec![b'a'; 200])),
            Frame::new(1001, 0, Bytes::from_static(b"b")),
        ];
        let out = OutFrame::raw_batch(&frames);
        assert_eq!(out.goim(), imcloud_proto::frame::encode_raw_batch(&frames));
        let ws = out.websocket();
        assert_eq!(ws[0], 0x82);
        assert_eq!(ws[1], 126, "a 16-bit length follows");
        assert_eq!(
            u16::from_be_bytes([ws[2], ws[3]]) as usize,
            out.goim().len()
        );
        let inner = out.goim_stream();
        let mut stream = BytesMut::from(&inner[..]);
        assert_eq!(
            Frame::decode_stream(&mut stream, 1024).unwrap().unwrap(),
            frames[0]
        );
        assert_eq!(
            split_raw_batch(&out.goim().slice(HEADER_LEN..), 1024).unwrap(),
            frames
        );
    }
}
