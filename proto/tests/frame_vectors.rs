//! The shared codec vectors (`proto/testdata/frame_vectors.json`) against the Rust codec. The TypeScript
//! SDK's tests (`sdk/js/test/unit/frame.test.ts`) read the same file, so both codecs agree byte for byte:
//! every frame decodes to its fields and encodes back to its bytes, every op 9 batch splits into its inner
//! frames and is rebuilt from them, and every malformed input fails with its error class.

use bytes::Bytes;
use imcloud_proto::frame::{Frame, FrameError, encode_raw_batch, split_raw_batch};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/frame_vectors.json");
    let text = std::fs::read_to_string(path).expect("read frame_vectors.json");
    serde_json::from_str(&text).expect("frame_vectors.json is JSON")
}

fn unhex(s: &str) -> Bytes {
    assert!(s.len().is_multiple_of(2), "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect::<Vec<u8>>()
        .into()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn int_of(v: &Value, key: &str) -> i64 {
    v[key]
        .as_i64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn expected_frame(v: &Value) -> Frame {
    Frame {
        ver: int_of(v, "ver") as i16,
        op: int_of(v, "op") as i32,
        seq: int_of(v, "seq") as i32,
        body: unhex(str_of(v, "body_hex")),
    }
}

fn class(e: &FrameError) -> &'static str {
    match e {
        FrameError::Truncated { .. } => "truncated",
        FrameError::HeaderLen(_) => "header_len",
        FrameError::PackLen(_) => "pack_len",
        FrameError::TooLarge { .. } => "too_large",
        FrameError::Trailing(_) => "trailing",
    }
}

#[test]
fn frames_decode_to_their_fields_and_encode_to_their_bytes() {
    let v = vectors();
    let frames = v["frames"].as_array().expect("frames");
    assert!(frames.len() >= 10);
    for f in frames {
        let name = str_of(f, "name");
        let bytes = unhex(str_of(f, "hex"));
        let want = expected_frame(f);
        let got = Frame::decode(&bytes, usize::MAX).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}: decoded fields");
        assert_eq!(want.encode(), bytes, "{name}: encoded bytes");
    }
}

#[test]
fn batches_split_into_their_frames_and_are_rebuilt_from_them() {
    let v = vectors();
    let batches = v["batches"].as_array().expect("batches");
    assert!(batches.len() >= 3);
    for b in batches {
        let name = str_of(b, "name");
        let bytes = unhex(str_of(b, "hex"));
        let outer = Frame::decode(&bytes, usize::MAX).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(outer.op, imcloud_proto::op::RAW, "{name}: outer op");
        let inner: Vec<Frame> = b["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .map(expected_frame)
            .collect();
        let split =
            split_raw_batch(&outer.body, usize::MAX).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(split, inner, "{name}: inner frames");
        assert_eq!(encode_raw_batch(&inner), bytes, "{name}: encoded batch");
    }
}

#[test]
fn malformed_inputs_fail_with_their_error_class() {
    let v = vectors();
    let malformed = v["malformed"].as_array().expect("malformed");
    assert!(malformed.len() >= 10);
    for m in malformed {
        let name = str_of(m, "name");
        let bytes = unhex(str_of(m, "hex"));
        let max_body = m["max_body"].as_u64().map_or(usize::MAX, |n| n as usize);
        let err = match str_of(m, "mode") {
            "frame" => Frame::decode(&bytes, max_body).err(),
            "batch" => split_raw_batch(&bytes, max_body).err(),
            other => panic!("{name}: unknown mode {other}"),
        };
        let err = err.unwrap_or_else(|| panic!("{name}: decoded, but must fail"));
        assert_eq!(class(&err), str_of(m, "error"), "{name}: {err}");
    }
}
