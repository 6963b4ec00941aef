//! The comet's websocket framing (RFC 6455 §5, server side) on untrusted client bytes: [`WsReader`], and
//! the goim frame decoder on each binary message, as the websocket transport runs them.
//!
//! Input: byte 0 (mod 8) is the number of split bytes that follow, each the length of one read from the
//! socket (cycled; 0 counts as 1); the rest is what the client sent after the handshake.
//!
//! Checks: no panic; the events, then the error (and its close code), are the same however the bytes
//! arrive; messages are within the bound, text is UTF-8, pings carry at most 125 bytes.

#![no_main]

use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use imcloud_comet::ws_codec::{MAX_CONTROL_PAYLOAD, WsError, WsEvent, WsReader};
use imcloud_proto::Frame;
use imcloud_proto::frame::{HEADER_LEN, MAX_CLIENT_BODY};
use libfuzzer_sys::fuzz_target;

/// What the comet's websocket transport allows in one message: one goim frame.
const MAX_MESSAGE: usize = MAX_CLIENT_BODY + HEADER_LEN;

fn run(wire: &[u8], chunks: &[usize]) -> (Vec<WsEvent>, Option<WsError>) {
    let mut reader = WsReader::new(BytesMut::new(), MAX_MESSAGE);
    let mut cx = Context::from_waker(Waker::noop());
    let mut events = Vec::new();
    let mut at = 0;
    let mut i = 0;
    loop {
        loop {
            match reader.next_event() {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => return (events, Some(e)),
            }
        }
        if at == wire.len() {
            return (events, None);
        }
        let n = chunks
            .get(i % chunks.len().max(1))
            .copied()
            .unwrap_or(wire.len());
        let mut read = &wire[at..(at + n).min(wire.len())];
        match reader.poll_fill(&mut read, &mut cx) {
            Poll::Ready(Ok(got)) => at += got,
            other => panic!("a slice reads at once: {other:?}"),
        }
        i += 1;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize % 8).min(rest.len());
    let (splits, wire) = rest.split_at(n);
    let chunks: Vec<usize> = splits.iter().map(|&b| (b as usize).max(1)).collect();

    let whole = run(wire, &[]);
    let split = run(wire, &chunks);
    assert_eq!(whole, split, "the read boundaries change nothing");
    let (events, err) = whole;
    if let Some(e) = &err {
        assert!(matches!(e.close_code(), 1002 | 1007 | 1009));
    }
    for e in events {
        match e {
            WsEvent::Binary(b) => {
                assert!(b.len() <= MAX_MESSAGE);
                let _ = Frame::decode(&b, MAX_CLIENT_BODY);
            }
            WsEvent::Text(t) => {
                assert!(t.len() <= MAX_MESSAGE);
                assert!(std::str::from_utf8(&t).is_ok());
            }
            WsEvent::Ping(p) => assert!(p.len() <= MAX_CONTROL_PAYLOAD),
            WsEvent::Pong => {}
            WsEvent::Close(code) => {
                if let Some(c) = code {
                    assert!(matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999));
                }
            }
        }
    }
});
