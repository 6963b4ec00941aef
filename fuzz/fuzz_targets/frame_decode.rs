//! The goim frame decoder on untrusted bytes, in both of the forms clients send frames in:
//! - a websocket message holds exactly one frame: [`Frame::decode`];
//! - goim TCP is a byte stream: [`Frame::decode_stream`], fed in chunks split anywhere.
//!
//! Input: byte 0 (mod 8) is the number of split bytes that follow, each the length of a chunk of the
//! stream (cycled; 0 counts as 1); the rest is the wire.
//!
//! Checks: no panic; a decoded message has a bounded body and re-encodes to exactly its bytes; the stream
//! yields the same frames, then the same error or leftover, however it is split; its frames re-encode to
//! exactly the bytes they were taken from.

#![no_main]

use bytes::{Bytes, BytesMut};
use imcloud_proto::frame::MAX_CLIENT_BODY;
use imcloud_proto::{Frame, FrameError};
use libfuzzer_sys::fuzz_target;

/// The frames a stream yields, then its error if any, then the bytes left over (none after an error).
type Outcome = (Vec<Frame>, Option<FrameError>, Vec<u8>);

fn drain(buf: &mut BytesMut, frames: &mut Vec<Frame>) -> Option<FrameError> {
    loop {
        match Frame::decode_stream(buf, MAX_CLIENT_BODY) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

fn stream(wire: &[u8], chunks: &[usize]) -> Outcome {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < wire.len() {
        let n = chunks
            .get(i % chunks.len().max(1))
            .copied()
            .unwrap_or(wire.len());
        let end = (at + n).min(wire.len());
        buf.extend_from_slice(&wire[at..end]);
        at = end;
        i += 1;
        if let Some(e) = drain(&mut buf, &mut frames) {
            // What follows an error is never read, so the leftover depends on the split: not compared.
            return (frames, Some(e), Vec::new());
        }
    }
    (frames, None, buf.to_vec())
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize % 8).min(rest.len());
    let (splits, wire) = rest.split_at(n);
    let chunks: Vec<usize> = splits.iter().map(|&b| (b as usize).max(1)).collect();

    // One websocket message.
    let message = Bytes::copy_from_slice(wire);
    if let Ok(f) = Frame::decode(&message, MAX_CLIENT_BODY) {
        assert!(f.body.len() <= MAX_CLIENT_BODY);
        assert_eq!(
            f.encode(),
            message,
            "a decoded message re-encodes to its bytes"
        );
    }

    // The TCP stream, whole and in chunks.
    let whole = stream(wire, &[]);
    let split = stream(wire, &chunks);
    assert_eq!(whole, split, "the split points change nothing");
    let (frames, err, leftover) = whole;
    let mut again = BytesMut::new();
    for f in &frames {
        assert!(f.body.len() <= MAX_CLIENT_BODY);
        f.encode_into(&mut again);
    }
    assert_eq!(
        &again[..],
        &wire[..again.len()],
        "frames re-encode to their bytes"
    );
    if err.is_none() {
        assert_eq!(again.len() + leftover.len(), wire.len());
        // Ok(None) leaves at most one incomplete frame behind.
        match leftover.len() {
            0..16 => {}
            _ => {
                let len = i32::from_be_bytes([leftover[0], leftover[1], leftover[2], leftover[3]]);
                assert!(
                    len as usize > leftover.len(),
                    "a complete frame was left behind"
                );
            }
        }
    }
});
