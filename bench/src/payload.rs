//! The benchmark message: a send timestamp and a sequence number, padded to the payload size, so a receiver
//! can compute latency and tell losses from duplicates. Targets that carry only JSON (Centrifugo) get the
//! same message as text ([`to_text`]: both numbers in hex, the same size), which the receiver turns back
//! into the binary form ([`decode_text`]) before counting it.

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

/// The text form of a message made by [`encode`]: 16 hex digits of timestamp, 16 of sequence number,
/// padded to the message's size.
pub fn to_text(msg: &[u8]) -> String {
    let word = |r: std::ops::Range<usize>| {
        msg.get(r)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_be_bytes)
    };
    let mut s = format!("{:016x}{:016x}", word(0..8), word(8..16));
    while s.len() < msg.len() {
        s.push('x');
    }
    s
}

#[cfg(test)]
pub fn encode_text(seq: u64, size: usize) -> String {
    to_text(&encode(seq, size))
}

/// The binary header of a message in text form (timestamp and sequence number), or None when it is not one.
pub fn decode_text(text: &str) -> Option<Bytes> {
    let sent = u64::from_str_radix(text.get(0..16)?, 16).ok()?;
    let seq = u64::from_str_radix(text.get(16..32)?, 16).ok()?;
    let mut b = BytesMut::with_capacity(HEADER);
    b.put_u64(sent);
    b.put_u64(seq);
    Some(b.freeze())
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

    #[test]
    fn text_form_round_trips_to_the_binary_header() {
        let t = encode_text(42, 64);
        assert_eq!(t.len(), 64);
        let (seq, age) = decode(&decode_text(&t).unwrap()).unwrap();
        assert_eq!(seq, 42);
        assert!(age < 10_000_000, "age {age} µs");
        assert!(decode_text("0123").is_none());
        assert!(decode_text(&"g".repeat(32)).is_none());
    }
}
