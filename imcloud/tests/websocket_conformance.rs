//! Websocket conformance of the comet's `/sub` listener (RFC 6455), modelled on the Autobahn testsuite's
//! sections: framing (1), pings and pongs (2), reserved bits (3), opcodes (4), fragmentation (5), UTF-8
//! in text messages (6), the closing handshake (7), and limits and masking. The real binary is driven
//! with raw bytes over TCP, after a real handshake and op 7 auth, one connection per case.
//!
//! One table: each case names what it sends and what the comet must answer, and a failure names its
//! case. Where this comet differs from an echo server (what Autobahn tests against), the answer is the
//! comet's documented one (docs/protocol.md): a goim frame in a binary message gets its goim reply, and a
//! valid text message is closed with 1003 (goim frames travel in binary messages).

mod common;

use std::time::Duration;

use common::*;
use imcloud::client::{auth_body, sign_token};
use imcloud_proto::{Frame, op};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The comet's default message bound: `max_client_body` (4096) plus the goim header.
const MAX_MESSAGE: usize = 4096 + 16;
/// How long an answer may take.
const ANSWER: Duration = Duration::from_secs(5);

/// A client frame: `fin`, `rsv` bits (already shifted: 0x40, 0x20, 0x10), opcode, and a mask (`None`:
/// unmasked, which clients must never send).
fn frame_with(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut v = vec![(if fin { 0x80 } else { 0 }) | rsv | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => v.push(m | n as u8),
        n if n <= 0xFFFF => {
            v.push(m | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(m | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            v.extend_from_slice(&k);
            v.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => v.extend_from_slice(payload),
    }
    v
}

const KEY: [u8; 4] = [0x9A, 0x1F, 0x3C, 0x70];

fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(fin, 0, opcode, payload, Some(KEY))
}

fn whole(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, opcode, payload)
}

fn close(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    whole(CLOSE, &p)
}

/// A header announcing `len` bytes of binary payload, and no payload.
fn binary_header(len: u64) -> Vec<u8> {
    let mut v = vec![0x82, 0x80 | 127];
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&KEY);
    v
}

/// A goim heartbeat (op 2); the comet answers op 3.
fn heartbeat() -> Vec<u8> {
    Frame::new(op::HEARTBEAT, 1, Vec::new()).encode().to_vec()
}

/// A goim op 4 `ping` command padded with JSON whitespace to `len` bytes in all; the comet answers op 5.
fn send_msg(len: usize) -> Vec<u8> {
    let mut body = br#"{"cmd":"ping"}"#.to_vec();
    body.resize(len - 16, b' ');
    Frame::new(op::SEND_MSG, 2, body).encode().to_vec()
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// What the comet sends back, as the test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Pong(Vec<u8>),
    /// A binary message holding a goim frame with this op.
    Goim(i32),
    /// A close frame: its code, if it had one.
    Close(Option<u16>),
}

/// How a case must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Still open: a probe ping is answered.
    Open,
    /// The client started the closing handshake: the comet answers with a close frame with this code
    /// (and nothing else), then ends the TCP connection.
    Echo(u16),
    /// The comet fails the connection: an op 6 with the reason, a close frame with this code, then the
    /// end of the TCP connection.
    Fail(u16),
}

struct Case {
    name: &'static str,
    /// Written one after the other, with a short pause between them (the bytes arrive in pieces).
    send: Vec<Vec<u8>>,
    /// What must arrive before the end, in order.
    want: Vec<Got>,
    end: End,
}

fn case(name: &'static str, send: Vec<u8>, want: Vec<Got>, end: End) -> Case {
    Case {
        name,
        send: vec![send],
        want,
        end,
    }
}

fn chopped(name: &'static str, send: Vec<u8>, each: usize, want: Vec<Got>, end: End) -> Case {
    Case {
        name,
        send: send.chunks(each).map(<[u8]>::to_vec).collect(),
        want,
        end,
    }
}

fn cases() -> Vec<Case> {
    use End::{Echo, Fail, Open};
    use Got::{Goim, Pong};
    let mut c = vec![
        // 1: framing.
        case(
            "1.1 binary message, 7-bit length",
            whole(BINARY, &heartbeat()),
            vec![Goim(op::HEARTBEAT_REPLY)],
            Open,
        ),
        case(
            "1.2 binary message, 16-bit length",
            whole(BINARY, &send_msg(300)),
            vec![Goim(op::SEND_MSG_REPLY)],
            Open,
        ),
        case(
            "1.3 binary message at the limit",
            whole(BINARY, &send_msg(MAX_MESSAGE)),
            vec![Goim(op::SEND_MSG_REPLY)],
            Open,
        ),
        case(
            "1.4 two messages in one write",
            cat(&[whole(BINARY, &heartbeat()), whole(BINARY, &heartbeat())]),
            vec![Goim(op::HEARTBEAT_REPLY), Goim(op::HEARTBEAT_REPLY)],
            Open,
        ),
        chopped(
            "1.5 binary message sent byte by byte",
            whole(BINARY, &heartbeat()),
            1,
            vec![Goim(op::HEARTBEAT_REPLY)],
            Open,
        ),
        case(
            "1.6 a binary message that is not one goim frame",
            whole(BINARY, b"hello"),
            vec![],
            Fail(1002),
        ),
        // 2: pings and pongs.
        case(
            "2.1 ping, no payload",
            whole(PING, b""),
            vec![Pong(vec![])],
            Open,
        ),
        case(
            "2.2 ping, text payload",
            whole(PING, b"Hello, world!"),
            vec![Pong(b"Hello, world!".to_vec())],
            Open,
        ),
        case(
            "2.3 ping, binary payload",
            whole(PING, &[0, 0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0, 0xFF]),
            vec![Pong(vec![0, 0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0, 0xFF])],
            Open,
        ),
        case(
            "2.4 ping, 125-byte payload",
            whole(PING, &[0xFE; 125]),
            vec![Pong(vec![0xFE; 125])],
            Open,
        ),
        case(
            "2.5 ping, 126-byte payload",
            whole(PING, &[0xFE; 126]),
            vec![],
            Fail(1002),
        ),
        chopped(
            "2.6 ping, 125 bytes sent in pieces",
            whole(PING, &[0xFE; 125]),
            25,
            vec![Pong(vec![0xFE; 125])],
            Open,
        ),
        case(
            "2.7 unsolicited pong, no payload",
            whole(PONG, b""),
            vec![],
            Open,
        ),
        case(
            "2.8 unsolicited pong, with payload",
            whole(PONG, b"unsolicited"),
            vec![],
            Open,
        ),
        case(
            "2.9 unsolicited pong, then ping",
            cat(&[whole(PONG, b"x"), whole(PING, b"y")]),
            vec![Pong(b"y".to_vec())],
            Open,
        ),
        case(
            "2.10 ten pings, ten pongs in order",
            (0..10u8).flat_map(|i| whole(PING, &[i])).collect(),
            (0..10u8).map(|i| Pong(vec![i])).collect(),
            Open,
        ),
        // 3: reserved bits (no extension is negotiated).
        case(
            "3.1 RSV1 set",
            frame_with(true, 0x40, BINARY, &heartbeat(), Some(KEY)),
            vec![],
            Fail(1002),
        ),
        case(
            "3.2 RSV2 set",
            frame_with(true, 0x20, BINARY, &heartbeat(), Some(KEY)),
            vec![],
            Fail(1002),
        ),
        case(
            "3.3 RSV3 set",
            frame_with(true, 0x10, BINARY, &heartbeat(), Some(KEY)),
            vec![],
            Fail(1002),
        ),
        case(
            "3.4 RSV1-3 set on a ping",
            frame_with(true, 0x70, PING, b"x", Some(KEY)),
            vec![],
            Fail(1002),
        ),
        case(
            "3.5 RSV set after a good message",
            cat(&[
                whole(PING, b"a"),
                frame_with(true, 0x40, PING, b"b", Some(KEY)),
            ]),
            vec![Pong(b"a".to_vec())],
            Fail(1002),
        ),
        // 5: fragmentation.
        case(
            "5.1 fragmented ping",
            cat(&[
                frame(false, PING, b"frag"),
                frame(true, CONTINUATION, b"ment"),
            ]),
            vec![],
            Fail(1002),
        ),
        case(
            "5.2 fragmented pong",
            cat(&[
                frame(false, PONG, b"frag"),
                frame(true, CONTINUATION, b"ment"),
            ]),
            vec![],
            Fail(1002),
        ),
        case(
            "5.3 binary message in two fragments",
            cat(&[
                frame(false, BINARY, &heartbeat()[..7]),
                frame(true, CONTINUATION, &heartbeat()[7..]),
            ]),
            vec![Goim(op::HEARTBEAT_REPLY)],
            Open,
        ),
        case(
            "5.4 binary message in 1-byte fragments",
            heartbeat()
                .iter()
                .enumerate()
                .flat_map(|(i, b)| {
                    frame(i == 15, if i == 0 { BINARY } else { CONTINUATION }, &[*b])
                })
                .collect(),
            vec![Goim(op::HEARTBEAT_REPLY)],
            Open,
        ),
        case(
            "5.5 empty fragments around the message",
            cat(&[
                frame(false, BINARY, b""),
                frame(false, CONTINUATION, &heartbeat()),
                frame(true, CONTINUATION, b""),
            ]),
            vec![Goim(op::HEARTBEAT_REPLY)],
            Open,
        ),
        case(
            "5.6 ping between fragments",
            cat(&[
                frame(false, BINARY, &heartbeat()[..5]),
                whole(PING, b"between"),
                frame(true, CONTINUATION, &heartbeat()[5..]),
            ]),
            vec![Pong(b"between".to_vec()), Goim(op::HEARTBEAT_REPLY)],
            Open,
        ),
        case(
            "5.7 pong between fragments",
            cat(&[
                frame(false, BINARY, &heartbeat()[..5]),
                whole(PONG, b"x"),
                frame(true, CONTINUATION, &heartbeat()[5..]),
            ]),
            vec![Goim(op::HEARTBEAT_REPLY)],
            Open,
        ),
        chopped(
            "5.8 pings between fragments, sent in pieces",
            cat(&[
                frame(false, BINARY, &heartbeat()[..4]),
                whole(PING, b"one"),
                frame(false, CONTINUATION, &heartbeat()[4..10]),
                whole(PING, b"two"),
                frame(true, CONTINUATION, &heartbeat()[10..]),
            ]),
            3,
            vec![
                Pong(b"one".to_vec()),
                Pong(b"two".to_vec()),
                Goim(op::HEARTBEAT_REPLY),
            ],
            Open,
        ),
        case(
            "5.9 continuation (fin) without a message",
            whole(CONTINUATION, b"x"),
            vec![],
            Fail(1002),
        ),
        case(
            "5.10 continuation (not fin) without a message",
            frame(false, CONTINUATION, b"x"),
            vec![],
            Fail(1002),
        ),
        case(
            "5.11 continuation after a finished message",
            cat(&[whole(BINARY, &heartbeat()), whole(CONTINUATION, b"x")]),
            vec![Goim(op::HEARTBEAT_REPLY)],
            Fail(1002),
        ),
        case(
            "5.12 new message inside a fragmented one",
            cat(&[frame(false, BINARY, b"a"), whole(BINARY, b"b")]),
            vec![],
            Fail(1002),
        ),
        case(
            "5.13 text message inside a fragmented binary one",
            cat(&[frame(false, BINARY, b"a"), frame(false, TEXT, b"b")]),
            vec![],
            Fail(1002),
        ),
        // 6: UTF-8 in text messages. Valid text is refused as unsupported data (1003), invalid as 1007.
        case(
            "6.1 empty text message",
            whole(TEXT, b""),
            vec![],
            Fail(1003),
        ),
        case(
            "6.2 valid UTF-8 text",
            whole(TEXT, "Hello-µ@ßöäüàá-UTF-8!!".as_bytes()),
            vec![],
            Fail(1003),
        ),
        case(
            "6.3 valid UTF-8 split inside a character across fragments",
            cat(&[
                frame(false, TEXT, &"κόσμε".as_bytes()[..3]),
                frame(false, CONTINUATION, &"κόσμε".as_bytes()[3..7]),
                frame(true, CONTINUATION, &"κόσμε".as_bytes()[7..]),
            ]),
            vec![],
            Fail(1003),
        ),
        case(
            "6.4 invalid UTF-8: a lone continuation byte",
            whole(TEXT, &[0x80]),
            vec![],
            Fail(1007),
        ),
        case(
            "6.5 invalid UTF-8: an overlong '/'",
            whole(TEXT, &[0xC0, 0xAF]),
            vec![],
            Fail(1007),
        ),
        case(
            "6.6 invalid UTF-8: a surrogate",
            whole(TEXT, &[0xCE, 0xBA, 0xED, 0xA0, 0x80]),
            vec![],
            Fail(1007),
        ),
        case(
            "6.7 invalid UTF-8: above U+10FFFF",
            whole(TEXT, &[0xF4, 0x90, 0x80, 0x80]),
            vec![],
            Fail(1007),
        ),
        case(
            "6.8 invalid UTF-8: truncated at the end of the message",
            whole(TEXT, &[b'a', 0xE2, 0x82]),
            vec![],
            Fail(1007),
        ),
        // Fail fast: the first fragment is invalid and the message never ends; 1007 comes anyway.
        case(
            "6.9 invalid UTF-8 in the first fragment (fail fast)",
            frame(false, TEXT, &[b'o', b'k', 0xFF]),
            vec![],
            Fail(1007),
        ),
        case(
            "6.10 invalid UTF-8 in a middle fragment (fail fast)",
            cat(&[
                frame(false, TEXT, "κό".as_bytes()),
                frame(false, CONTINUATION, &[0xED, 0xA0, 0x80]),
            ]),
            vec![],
            Fail(1007),
        ),
        // 7: the closing handshake.
        case("7.1.1 close, echoed", close(1000, b""), vec![], Echo(1000)),
        case(
            "7.1.2 close twice: one answer",
            cat(&[close(1000, b""), close(1000, b"")]),
            vec![],
            Echo(1000),
        ),
        case(
            "7.1.3 ping after close: no pong",
            cat(&[close(1000, b""), whole(PING, b"late")]),
            vec![],
            Echo(1000),
        ),
        case(
            "7.1.4 message after close: no reply",
            cat(&[close(1000, b""), whole(BINARY, &heartbeat())]),
            vec![],
            Echo(1000),
        ),
        case(
            "7.1.5 close inside a fragmented message",
            cat(&[frame(false, BINARY, &heartbeat()[..4]), close(1000, b"")]),
            vec![],
            Echo(1000),
        ),
        case(
            "7.1.6 reply, then close",
            cat(&[whole(BINARY, &heartbeat()), close(1000, b"")]),
            vec![Goim(op::HEARTBEAT_REPLY)],
            Echo(1000),
        ),
        case(
            "7.3.1 close, empty payload",
            whole(CLOSE, b""),
            vec![],
            Echo(1000),
        ),
        case(
            "7.3.2 close, 1-byte payload",
            whole(CLOSE, b"\x03"),
            vec![],
            Fail(1002),
        ),
        case(
            "7.3.3 close with a reason",
            close(1000, b"Hello World!"),
            vec![],
            Echo(1000),
        ),
        case(
            "7.3.4 close with a 123-byte reason",
            close(1000, &[b'*'; 123]),
            vec![],
            Echo(1000),
        ),
        case(
            "7.3.5 close with a 124-byte reason (payload over 125)",
            close(1000, &[b'*'; 124]),
            vec![],
            Fail(1002),
        ),
        case(
            "7.5.1 close reason not UTF-8",
            close(1000, &[0xCE, 0xBA, 0xED, 0xA0, 0x80]),
            vec![],
            Fail(1007),
        ),
        chopped(
            "7.6 close sent in pieces",
            close(1001, b"bye"),
            1,
            vec![],
            Echo(1001),
        ),
        // Limits: a message is bounded by max_client_body + 16 across its fragments (1009).
        case(
            "9.1 binary message one byte over the limit",
            whole(BINARY, &vec![0; MAX_MESSAGE + 1]),
            vec![],
            Fail(1009),
        ),
        case(
            "9.2 header announcing 2^40 bytes, no payload",
            binary_header(1 << 40),
            vec![],
            Fail(1009),
        ),
        case(
            "9.3 header announcing 2^63 bytes (top bit set)",
            binary_header(1 << 63),
            vec![],
            Fail(1002),
        ),
        case(
            "9.4 fragments adding up to over the limit",
            cat(&[
                frame(false, BINARY, &vec![0; MAX_MESSAGE - 10]),
                frame(true, CONTINUATION, &[0; 11]),
            ]),
            vec![],
            Fail(1009),
        ),
        case(
            "9.5 fragments adding up to the limit",
            cat(&[
                frame(false, BINARY, &send_msg(MAX_MESSAGE)[..2000]),
                frame(true, CONTINUATION, &send_msg(MAX_MESSAGE)[2000..]),
            ]),
            vec![Goim(op::SEND_MSG_REPLY)],
            Open,
        ),
        case(
            "9.6 text message over the limit",
            whole(TEXT, &vec![b'a'; MAX_MESSAGE + 1]),
            vec![],
            Fail(1009),
        ),
        // Masking: every client frame must be masked; a zero key is a key.
        case(
            "10.1 unmasked binary message",
            frame_with(true, 0, BINARY, &heartbeat(), None),
            vec![],
            Fail(1002),
        ),
        case(
            "10.2 unmasked ping",
            frame_with(true, 0, PING, b"x", None),
            vec![],
            Fail(1002),
        ),
        case(
            "10.3 unmasked close",
            frame_with(true, 0, CLOSE, &1000u16.to_be_bytes(), None),
            vec![],
            Fail(1002),
        ),
        case(
            "10.4 unmasked continuation",
            cat(&[
                frame(false, BINARY, &heartbeat()[..4]),
                frame_with(true, 0, CONTINUATION, &heartbeat()[4..], None),
            ]),
            vec![],
            Fail(1002),
        ),
        case(
            "10.5 all-zero masking key",
            frame_with(true, 0, BINARY, &heartbeat(), Some([0; 4])),
            vec![Goim(op::HEARTBEAT_REPLY)],
            Open,
        ),
    ];
    // 4: reserved opcodes.
    for (name, opcode) in [
        ("4.1 reserved data opcode 3", 3),
        ("4.2 reserved data opcode 4", 4),
        ("4.3 reserved data opcode 7", 7),
        ("4.4 reserved control opcode 0xB", 0xB),
        ("4.5 reserved control opcode 0xF", 0xF),
    ] {
        c.push(case(name, whole(opcode, b"x"), vec![], Fail(1002)));
    }
    c.push(case(
        "4.6 reserved opcode after a good message",
        cat(&[whole(BINARY, &heartbeat()), whole(5, b"")]),
        vec![Goim(op::HEARTBEAT_REPLY)],
        Fail(1002),
    ));
    // 7.7: valid close codes are echoed; 7.9: invalid ones are a protocol error.
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let name: &'static str = format!("7.7 valid close code {code} echoed").leak();
        c.push(case(name, close(code, b""), vec![], Echo(code)));
    }
    for code in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let name: &'static str = format!("7.9 invalid close code {code}").leak();
        c.push(case(name, close(code, b""), vec![], Fail(1002)));
    }
    c
}

/// A raw websocket connection to the comet, upgraded and authenticated.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn open(ws_url: &str, mid: i64) -> Raw {
        let addr = ws_url.trim_start_matches("ws://").trim_end_matches("/sub");
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let request = format!(
            "GET /sub HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        s.write_all(request.as_bytes()).await.expect("handshake");
        let mut raw = Raw { s, buf: Vec::new() };
        let head = timeout(ANSWER, async {
            loop {
                if let Some(end) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&raw.buf[..end]).into_owned();
                    raw.buf.drain(..end + 4);
                    return head;
                }
                assert!(raw.fill().await, "closed during the handshake");
            }
        })
        .await
        .expect("handshake answer");
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{head}"
        );
        let token = sign_token(SECRET, mid, 600).expect("sign");
        let auth = Frame::new(op::AUTH, 1, auth_body(mid, "", "", &[], &token)).encode();
        raw.s.write_all(&whole(BINARY, &auth)).await.expect("auth");
        assert_eq!(
            raw.next().await,
            Some(Got::Goim(op::AUTH_REPLY)),
            "auth reply"
        );
        raw
    }

    /// Reads more bytes; `false` at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.s.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next server frame, `None` at the end of the stream. Server frames are never masked or
    /// fragmented, and never carry reserved bits.
    async fn next(&mut self) -> Option<Got> {
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1]);
                assert_eq!(
                    b0 & 0xF0,
                    0x80,
                    "server frames are final, without reserved bits"
                );
                assert_eq!(b1 & 0x80, 0, "server frames are unmasked");
                let (len, at) = match b1 & 0x7F {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let payload: Vec<u8> = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some(match b0 & 0x0F {
                        PONG => Got::Pong(payload),
                        BINARY => {
                            let f = Frame::decode(&payload.into(), usize::MAX >> 1)
                                .expect("one goim frame per message");
                            Got::Goim(f.op)
                        }
                        CLOSE => {
                            assert!(
                                payload.len() != 1 && payload.len() <= 125,
                                "close payload {payload:?}"
                            );
                            let code = (payload.len() >= 2)
                                .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                            assert!(
                                std::str::from_utf8(&payload[payload.len().min(2)..]).is_ok(),
                                "close reason is UTF-8"
                            );
                            Got::Close(code)
                        }
                        other => panic!("unexpected server opcode {other:#x}"),
                    });
                }
            }
            if !self.fill().await {
                assert!(self.buf.is_empty(), "the stream ended inside a frame");
                return None;
            }
        }
    }
}

/// Runs one case on a fresh connection; `Err` says how it went wrong.
async fn run(ws_url: &str, mid: i64, c: &Case) -> Result<(), String> {
    let mut raw = Raw::open(ws_url, mid).await;
    for (i, piece) in c.send.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The comet may close while a long case is still being written.
        if raw.s.write_all(piece).await.is_err() {
            break;
        }
    }
    let mut got = Vec::new();
    // What the case wants first: replies may come after a call to logic, so they are awaited before
    // the probe below.
    while got.len() < c.want.len() && !matches!(got.last(), Some(Got::Close(_))) {
        match timeout(ANSWER, raw.next()).await {
            Ok(Some(g)) => got.push(g),
            Ok(None) => return Err(format!("connection ended; got {got:?}")),
            Err(_) => return Err(format!("no answer within {ANSWER:?}; got {got:?}")),
        }
    }
    if c.end == End::Open {
        let probe = b"probe: still open?".to_vec();
        raw.s
            .write_all(&whole(PING, &probe))
            .await
            .map_err(|e| format!("probe ping: {e}"))?;
        loop {
            match timeout(ANSWER, raw.next()).await {
                Ok(Some(Got::Pong(p))) if p == probe => break,
                Ok(Some(g)) => got.push(g),
                Ok(None) => return Err(format!("connection ended; got {got:?}")),
                Err(_) => {
                    return Err(format!(
                        "no answer to the probe within {ANSWER:?}; got {got:?}"
                    ));
                }
            }
        }
    } else {
        while !matches!(got.last(), Some(Got::Close(_))) {
            match timeout(ANSWER, raw.next()).await {
                Ok(Some(g)) => got.push(g),
                Ok(None) => {
                    return Err(format!(
                        "connection ended without a close frame; got {got:?}"
                    ));
                }
                Err(_) => return Err(format!("no close frame within {ANSWER:?}; got {got:?}")),
            }
        }
    }
    let mut want = c.want.clone();
    match c.end {
        End::Open => {}
        End::Echo(code) => want.push(Got::Close(Some(code))),
        End::Fail(code) => want.extend([Got::Goim(op::DISCONNECT_REPLY), Got::Close(Some(code))]),
    }
    if got != want {
        return Err(format!("got {got:?}, want {want:?}"));
    }
    if c.end != End::Open {
        // After its close frame the comet ends the TCP connection, sending nothing more.
        match timeout(ANSWER, raw.next()).await {
            Ok(None) => {}
            Ok(Some(g)) => return Err(format!("{g:?} after the close frame")),
            Err(_) => return Err("the TCP connection stayed open after the close frame".into()),
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_comet_follows_rfc_6455_case_by_case() {
    let s = Standalone::start().await;
    let cases = cases();
    let mut failed = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        if let Err(why) = run(&s.ws_url, 1000 + i as i64, c).await {
            failed.push(format!("{}: {why}", c.name));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
    eprintln!("{} websocket conformance cases passed", cases.len());
}
