//! The op 25 body: a persistent room message with its place in the room's history, sent only to
//! connections that joined the room with op 23 (docs/protocol.md, room history and recovery).
//!
//! Big-endian: `epoch u64 | offset u64 | op i32 | room length u16 | room (UTF-8) | message`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes before the room id.
const FIXED: usize = 8 + 8 + 4 + 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub epoch: u64,
    pub offset: u64,
    /// The application op the message was pushed with.
    pub op: i32,
    pub room: String,
    pub body: Bytes,
}

impl Publication {
    pub fn encode(epoch: u64, offset: u64, op: i32, room: &str, body: &[u8]) -> Bytes {
        let mut b = BytesMut::with_capacity(FIXED + room.len() + body.len());
        b.put_u64(epoch);
        b.put_u64(offset);
        b.put_i32(op);
        b.put_u16(room.len() as u16);
        b.put_slice(room.as_bytes());
        b.put_slice(body);
        b.freeze()
    }

    /// `None` when the body is too short or the room is not UTF-8.
    pub fn parse(body: &Bytes) -> Option<Publication> {
        let mut b = body.clone();
        if b.remaining() < FIXED {
            return None;
        }
        let (epoch, offset, op) = (b.get_u64(), b.get_u64(), b.get_i32());
        let len = usize::from(b.get_u16());
        if b.remaining() < len {
            return None;
        }
        let room = String::from_utf8(b.split_to(len).to_vec()).ok()?;
        Some(Publication {
            epoch,
            offset,
            op,
            room,
            body: b,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = Publication::encode(1_765_000_000_000_000, 42, 1000, "live://1", b"hi");
        assert_eq!(b.len(), FIXED + 8 + 2);
        let p = Publication::parse(&b).unwrap();
        assert_eq!(
            (p.epoch, p.offset, p.op, p.room.as_str(), &p.body[..]),
            (1_765_000_000_000_000, 42, 1000, "live://1", &b"hi"[..])
        );
        assert_eq!(Publication::parse(&b.slice(..FIXED + 3)), None);
        assert_eq!(Publication::parse(&Bytes::from_static(b"short")), None);
    }
}
