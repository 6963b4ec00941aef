//! The goim binary frame: `packLen i32 | headerLen i16 (=16) | ver i16 | op i32 | seq i32 | body`,
//! all big-endian; packLen counts the header too.
//!
//! `Header::parse` checks a header; `Frame::decode` reads one websocket message (the body slices the
//! received buffer instead of copying it) and `Frame::decode_stream` frames a TCP byte stream;
//! `encode_raw_batch` and `split_raw_batch` build and split op 9 batches without copying the inner frames.
//! The decoding rules are in docs/protocol.md; the proptests here and `tests/frame_vectors.rs` check them.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::op;

/// Length of the fixed frame header.
pub const HEADER_LEN: usize = 16;
/// The protocol version imcloud writes.
pub const VERSION: i16 = 1;
/// goim's bound on a client-to-server body.
pub const MAX_CLIENT_BODY: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("truncated frame: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("bad header length {0} (must be 16)")]
    HeaderLen(i16),
    #[error("bad packet length {0}")]
    PackLen(i32),
    #[error("body of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("{0} unexpected bytes after the frame")]
    Trailing(usize),
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub ver: i16,
    pub op: i32,
    pub seq: i32,
    pub body: Bytes,
}

/// The fields of a header, before the body has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub pack_len: usize,
    pub ver: i16,
    pub op: i32,
    pub seq: i32,
}

impl Header {
    /// Parses and validates a header; `max_body` bounds the body length it announces.
    pub fn parse(buf: &[u8], max_body: usize) -> Result<Header, FrameError> {
        if buf.len() < HEADER_LEN {
            return Err(FrameError::Truncated {
                need: HEADER_LEN,
                have: buf.len(),
            });
        }
        let mut b = &buf[..HEADER_LEN];
        let pack_len = b.get_i32();
        let header_len = b.get_i16();
        let ver = b.get_i16();
        let op = b.get_i32();
        let seq = b.get_i32();
        if header_len as usize != HEADER_LEN {
            return Err(FrameError::HeaderLen(header_len));
        }
        if pack_len < HEADER_LEN as i32 {
            return Err(FrameError::PackLen(pack_len));
        }
        let body_len = pack_len as usize - HEADER_LEN;
        if body_len > max_body {
            return Err(FrameError::TooLarge {
                len: body_len,
                max: max_body,
            });
        }
        Ok(Header {
            pack_len: pack_len as usize,
            ver,
            op,
            seq,
        })
    }
}

impl Frame {
    pub fn new(op: i32, seq: i32, body: impl Into<Bytes>) -> Frame {
        Frame {
            ver: VERSION,
            op,
            seq,
            body: body.into(),
        }
    }

    /// Encoded length of this frame.
    pub fn len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn encode_into(&self, buf: &mut BytesMut) {
        put_header(buf, self.body.len(), self.ver, self.op, self.seq);
        buf.put_slice(&self.body);
    }

    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.len());
        self.encode_into(&mut buf);
        buf.freeze()
    }

    /// Decodes exactly one frame filling `buf` (one websocket message). The body shares `buf`'s memory.
    pub fn decode(buf: &Bytes, max_body: usize) -> Result<Frame, FrameError> {
        let h = Header::parse(buf, max_body)?;
        if buf.len() < h.pack_len {
            return Err(FrameError::Truncated {
                need: h.pack_len,
                have: buf.len(),
            });
        }
        if buf.len() > h.pack_len {
            return Err(FrameError::Trailing(buf.len() - h.pack_len));
        }
        Ok(Frame {
            ver: h.ver,
            op: h.op,
            seq: h.seq,
            body: buf.slice(HEADER_LEN..h.pack_len),
        })
    }

    /// Takes one frame off the front of a byte stream (goim TCP). `Ok(None)` means more bytes are needed.
    pub fn decode_stream(buf: &mut BytesMut, max_body: usize) -> Result<Option<Frame>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let h = Header::parse(buf, max_body)?;
        if buf.len() < h.pack_len {
            buf.reserve(h.pack_len - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(h.pack_len);
        frame.advance(HEADER_LEN);
        Ok(Some(Frame {
            ver: h.ver,
            op: h.op,
            seq: h.seq,
            body: frame.freeze(),
        }))
    }
}

fn put_header(buf: &mut BytesMut, body_len: usize, ver: i16, op: i32, seq: i32) {
    buf.put_i32((HEADER_LEN + body_len) as i32);
    buf.put_i16(HEADER_LEN as i16);
    buf.put_i16(ver);
    buf.put_i32(op);
    buf.put_i32(seq);
}

/// Encodes frames as one op 9 raw batch: an outer header whose body is the inner frames back to back.
/// This is the websocket form; on goim TCP the inner frames are written without the outer header.
pub fn encode_raw_batch<'a>(frames: impl IntoIterator<Item = &'a Frame> + Clone) -> Bytes {
    let inner: usize = frames.clone().into_iter().map(Frame::len).sum();
    let mut buf = BytesMut::with_capacity(HEADER_LEN + inner);
    put_header(&mut buf, inner, VERSION, op::RAW, 0);
    for f in frames {
        f.encode_into(&mut buf);
    }
    buf.freeze()
}

/// Splits the body of an op 9 frame into its inner frames.
pub fn split_raw_batch(body: &Bytes, max_body: usize) -> Result<Vec<Frame>, FrameError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let rest = &body[at..];
        let h = Header::parse(rest, max_body)?;
        if rest.len() < h.pack_len {
            return Err(FrameError::Truncated {
                need: h.pack_len,
                have: rest.len(),
            });
        }
        // The inner bodies share the batch's memory.
        out.push(Frame {
            ver: h.ver,
            op: h.op,
            seq: h.seq,
            body: body.slice(at + HEADER_LEN..at + h.pack_len),
        });
        at += h.pack_len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_frame(max_body: usize) -> impl Strategy<Value = Frame> {
        (
            any::<i16>(),
            any::<i32>(),
            any::<i32>(),
            proptest::collection::vec(any::<u8>(), 0..=max_body),
        )
            .prop_map(|(ver, op, seq, body)| Frame {
                ver,
                op,
                seq,
                body: body.into(),
            })
    }

    proptest! {
        #[test]
        fn round_trip(f in arb_frame(MAX_CLIENT_BODY)) {
            let bytes = f.encode();
            prop_assert_eq!(bytes.len(), f.len());
            prop_assert_eq!(Frame::decode(&bytes, MAX_CLIENT_BODY)?, f);
        }

        #[test]
        fn stream_round_trip(frames in proptest::collection::vec(arb_frame(64), 1..8), split in 0usize..200) {
            let mut wire = BytesMut::new();
            for f in &frames { f.encode_into(&mut wire); }
            let wire = wire.freeze();
            let split = split.min(wire.len());
            let mut buf = BytesMut::from(&wire[..split]);
            let mut got = Vec::new();
            while let Some(f) = Frame::decode_stream(&mut buf, 64)? { got.push(f); }
            buf.extend_from_slice(&wire[split..]);
            while let Some(f) = Frame::decode_stream(&mut buf, 64)? { got.push(f); }
            prop_assert_eq!(got, frames);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn truncated_input_is_an_error(f in arb_frame(256), cut in 1usize..300) {
            let bytes = f.encode();
            let cut = cut.min(bytes.len());
            let short = bytes.slice(..bytes.len() - cut);
            let is_truncated = matches!(Frame::decode(&short, 256), Err(FrameError::Truncated { .. }));
            prop_assert!(is_truncated);
        }

        #[test]
        fn wrong_header_length_is_an_error(f in arb_frame(64), hl in any::<i16>().prop_filter("not 16", |h| *h != 16)) {
            let mut bytes = BytesMut::from(&f.encode()[..]);
            bytes[4..6].copy_from_slice(&hl.to_be_bytes());
            prop_assert_eq!(Frame::decode(&bytes.clone().freeze(), 64), Err(FrameError::HeaderLen(hl)));
            let mut stream = bytes.clone();
            prop_assert_eq!(Frame::decode_stream(&mut stream, 64), Err(FrameError::HeaderLen(hl)));
        }

        #[test]
        fn oversize_body_is_an_error(extra in 1usize..1000) {
            let f = Frame::new(op::SEND_MSG, 1, vec![0u8; MAX_CLIENT_BODY + extra]);
            let bytes = f.encode();
            prop_assert_eq!(
                Frame::decode(&bytes, MAX_CLIENT_BODY),
                Err(FrameError::TooLarge { len: MAX_CLIENT_BODY + extra, max: MAX_CLIENT_BODY })
            );
            // A stream rejects it from the header alone, before the body arrives.
            let mut head = BytesMut::from(&bytes[..HEADER_LEN]);
            let is_too_large = matches!(Frame::decode_stream(&mut head, MAX_CLIENT_BODY), Err(FrameError::TooLarge { .. }));
            prop_assert!(is_too_large);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Frame::decode(&Bytes::from(bytes.clone()), MAX_CLIENT_BODY);
            let mut b = BytesMut::from(&bytes[..]);
            let _ = Frame::decode_stream(&mut b, MAX_CLIENT_BODY);
            let _ = split_raw_batch(&Bytes::from(bytes), MAX_CLIENT_BODY);
        }

        #[test]
        fn raw_batch_round_trip(frames in proptest::collection::vec(arb_frame(64), 0..8)) {
            let batch = encode_raw_batch(&frames);
            let outer = Frame::decode(&batch, usize::MAX >> 1)?;
            prop_assert_eq!(outer.op, op::RAW);
            prop_assert_eq!(split_raw_batch(&outer.body, 64)?, frames);
        }
    }

    #[test]
    fn negative_pack_length_is_rejected() {
        let mut bytes = BytesMut::from(&Frame::new(2, 0, Bytes::new()).encode()[..]);
        bytes[0..4].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(
            Frame::decode(&bytes.freeze(), 16),
            Err(FrameError::PackLen(-5))
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = BytesMut::from(&Frame::new(2, 0, Bytes::new()).encode()[..]);
        bytes.put_u8(7);
        assert_eq!(
            Frame::decode(&bytes.freeze(), 16),
            Err(FrameError::Trailing(1))
        );
    }
}
