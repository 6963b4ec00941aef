//! Op 9 batches: the body of a raw batch split into its inner frames ([`split_raw_batch`], which clients
//! run on what the server sends), and the comet's encoding of frames into a batch ([`OutFrame::raw_batch`]).
//!
//! Input: byte 0 picks the body bound (even: 16 MiB, as the Rust client; odd: goim's 4096), the rest is
//! the body of an op 9 frame.
//!
//! Checks: no panic; the inner frames of a split body re-encode to exactly that body; the comet's batch
//! of those frames is one websocket binary frame whose goim frame is op 9 and splits into the same
//! frames, and whose goim TCP form decodes as a stream into the same frames.

#![no_main]

use bytes::{Bytes, BytesMut};
use imcloud_comet::out_frame::OutFrame;
use imcloud_proto::frame::{HEADER_LEN, MAX_CLIENT_BODY, split_raw_batch};
use imcloud_proto::{Frame, op};
use libfuzzer_sys::fuzz_target;

const BIG: usize = 16 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let max_body = if mode % 2 == 0 { BIG } else { MAX_CLIENT_BODY };
    let body = Bytes::copy_from_slice(body);
    let Ok(frames) = split_raw_batch(&body, max_body) else {
        return;
    };
    let mut again = BytesMut::new();
    for f in &frames {
        assert!(f.body.len() <= max_body);
        f.encode_into(&mut again);
    }
    assert_eq!(again, body, "inner frames re-encode to the body");

    let out = OutFrame::raw_batch(&frames);
    let ws = out.websocket();
    assert_eq!(ws[0], 0x82, "one final binary frame");
    let goim = out.goim();
    let announced = match ws[1] {
        126 => u16::from_be_bytes([ws[2], ws[3]]) as usize,
        127 => u64::from_be_bytes(ws[2..10].try_into().unwrap()) as usize,
        n => n as usize,
    };
    assert_eq!(announced, goim.len());
    let outer = Frame::decode(&goim, BIG).expect("the comet's batch decodes");
    assert_eq!(outer.op, op::RAW);
    assert_eq!(outer.body.len(), goim.len() - HEADER_LEN);
    assert_eq!(
        split_raw_batch(&outer.body, max_body).expect("and splits"),
        frames
    );
    let mut tcp = BytesMut::from(&out.goim_stream()[..]);
    let mut got = Vec::new();
    while let Some(f) = Frame::decode_stream(&mut tcp, max_body).expect("the TCP form decodes") {
        got.push(f);
    }
    assert!(tcp.is_empty());
    assert_eq!(got, frames);
});
