//! The benchmark message: a send timestamp and a sequence number, padded to the payload size, so a receiver
//! can compute latency and tell losses from duplicates.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// Timestamp (8 bytes) + sequence number (8 bytes).
pub const HEADER: usize = 16;

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A message of `size` bytes (at least [`HEADER`]) stamped with the current time.
pub fn encode(seq: u64, size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size.max(HEADER));
    b.put_u64(now_micros());
    b.put_u64(seq);
    b.resize(size.max(HEADER), b'x');
    b.freeze()
}

/// (sequence number, microseconds since it was sent), or None for a message that is not ours.
pub fn decode(msg: &[u8]) -> Option<(u64, u64)> {
    let sent = u64::from_be_bytes(msg.get(0..8)?.try_into().ok()?);
    let seq = u64::from_be_bytes(msg.get(8..16)?.try_into().ok()?);
    Some((seq, now_micros().saturating_sub(sent)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_pads_and_stamps() {
        let m = encode(42, 64);
        assert_eq!(m.len(), 64);
        let (seq, age) = decode(&m).unwrap();
        assert_eq!(seq, 42);
        assert!(age < 10_000_000, "age {age} µs");
        assert_eq!(encode(1, 3).len(), HEADER);
        assert!(decode(b"short").is_none());
    }
}
