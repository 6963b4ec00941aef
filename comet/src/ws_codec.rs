//! The websocket framing of RFC 6455 §5, server side: parses what clients send (masked frames,
//! fragmented messages, control frames) and encodes the headers of what the server sends (unmasked).
//!
//! - Parse untrusted input once: [`WsReader::next`] turns buffered bytes into typed [`WsEvent`]s, and
//!   every violation is a [`WsError`] that names the close code to answer with.
//! - Bounded: a message longer than `max_message` is refused from its first frame header, before its
//!   payload is read, and the buffer never holds more than one frame beyond that bound.
//! - Small while idle: the reader's buffer is released whenever it holds no partial frame, and
//!   [`WsReader::poll_fill`] reads through a stack buffer, so an idle connection owns no read buffer.
//! - Cancel-safe: all state lives in the reader; an interrupted read loses no byte.

use std::io;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncRead;

use crate::socket_io::poll_read_chunk;

pub const OPCODE_CONTINUATION: u8 = 0x0;
pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_BINARY: u8 = 0x2;
pub const OPCODE_CLOSE: u8 = 0x8;
pub const OPCODE_PING: u8 = 0x9;
pub const OPCODE_PONG: u8 = 0xA;

/// Longest header of an unmasked server frame.
pub const MAX_SERVER_HEADER: usize = 10;
/// Longest payload of a control frame (ping, pong, close).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Longest close reason: a close payload is the 2-byte code plus at most 123 bytes of text.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Close codes this server sends (RFC 6455 §7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN: u16 = 1013;
}

/// What a client sent, one complete message or control frame at a time.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent {
    Binary(Bytes),
    /// A complete text message, already checked to be UTF-8.
    Text(Bytes),
    Ping(Bytes),
    Pong,
    /// The client started the closing handshake; its code, if it sent one.
    Close(Option<u16>),
}

/// A violation of the protocol by the client, with the close code to answer it with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WsError {
    #[error("{0}")]
    Protocol(&'static str),
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooBig { len: u64, max: usize },
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
}

impl WsError {
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => close_code::PROTOCOL,
            WsError::TooBig { .. } => close_code::TOO_BIG,
            WsError::InvalidUtf8 => close_code::INVALID_PAYLOAD,
        }
    }
}

/// Appends the header of an unmasked, final server frame with a `len`-byte payload.
pub fn put_header(buf: &mut BytesMut, opcode: u8, len: usize) {
    buf.put_u8(0x80 | opcode);
    if len < 126 {
        buf.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        buf.put_u8(126);
        buf.put_u16(len as u16);
    } else {
        buf.put_u8(127);
        buf.put_u64(len as u64);
    }
}

/// A complete unmasked control frame (ping replies, close).
pub fn control_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    let mut buf = BytesMut::with_capacity(2 + payload.len());
    put_header(&mut buf, opcode, payload.len());
    buf.put_slice(payload);
    buf.freeze()
}

/// A close frame with `code` and as much of `reason` as fits, cut at a character boundary.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    control_frame(OPCODE_CLOSE, &payload)
}

/// Whether a client may send this close code (RFC 6455 §7.4: 1004-1006 and 1015 are never sent).
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A data message whose first frames have arrived.
#[derive(Debug)]
struct Partial {
    opcode: u8,
    data: BytesMut,
    /// Text: how many bytes of `data` are known to be UTF-8 (an incomplete character may follow).
    utf8_checked: usize,
}

impl Partial {
    /// Fails a text message as soon as a fragment holds invalid UTF-8, rather than at its last
    /// fragment (RFC 6455 §8.1: "fail fast"); a character split across fragments is fine.
    fn check_utf8(&mut self) -> Result<(), WsError> {
        if self.opcode != OPCODE_TEXT {
            return Ok(());
        }
        match std::str::from_utf8(&self.data[self.utf8_checked..]) {
            Ok(_) => self.utf8_checked = self.data.len(),
            Err(e) if e.error_len().is_none() => self.utf8_checked += e.valid_up_to(),
            Err(_) => return Err(WsError::InvalidUtf8),
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct WsReader {
    buf: BytesMut,
    partial: Option<Partial>,
    max_message: usize,
}

impl WsReader {
    /// A reader that starts with bytes already read (those that followed the handshake request).
    pub fn new(initial: BytesMut, max_message: usize) -> WsReader {
        WsReader {
            buf: initial,
            partial: None,
            max_message,
        }
    }

    /// The next complete event in the buffer, or `None` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<WsEvent>, WsError> {
        loop {
            let Some((fin, opcode, len, header)) = self.parse_header()? else {
                return Ok(None);
            };
            let total = header + len;
            if self.buf.len() < total {
                self.buf.reserve(total - self.buf.len());
                return Ok(None);
            }
            let mask = [
                self.buf[header - 4],
                self.buf[header - 3],
                self.buf[header - 2],
                self.buf[header - 1],
            ];
            self.buf.advance(header);
            let mut payload = self.buf.split_to(len);
            unmask(&mut payload, mask);
            let event = self.complete(fin, opcode, payload)?;
            if self.buf.is_empty() {
                // Nothing half-read: give the memory back (the event's bytes keep what they need).
                self.buf = BytesMut::new();
            }
            if let Some(event) = event {
                return Ok(Some(event));
            }
        }
    }

    /// Validates the frame header at the front of the buffer: `(fin, opcode, payload length, header
    /// length including the mask)`, or `None` while the header is incomplete.
    fn parse_header(&self) -> Result<Option<(bool, u8, usize, usize)>, WsError> {
        let b = &self.buf[..];
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        if b[0] & 0x70 != 0 {
            return Err(WsError::Protocol(
                "reserved bits set, but no extension was negotiated",
            ));
        }
        let opcode = b[0] & 0x0F;
        let control = opcode & 0x8 != 0;
        if !matches!(
            opcode,
            OPCODE_CONTINUATION
                | OPCODE_TEXT
                | OPCODE_BINARY
                | OPCODE_CLOSE
                | OPCODE_PING
                | OPCODE_PONG
        ) {
            return Err(WsError::Protocol("reserved opcode"));
        }
        if b[1] & 0x80 == 0 {
            return Err(WsError::Protocol("client frames must be masked"));
        }
        let (len, at): (u64, usize) = match b[1] & 0x7F {
            126 => {
                if b.len() < 4 {
                    return Ok(None);
                }
                (u16::from_be_bytes([b[2], b[3]]).into(), 4)
            }
            127 => {
                if b.len() < 10 {
                    return Ok(None);
                }
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                let n = u64::from_be_bytes(n);
                if n >> 63 != 0 {
                    return Err(WsError::Protocol("64-bit length with its top bit set"));
                }
                (n, 10)
            }
            n => (n.into(), 2),
        };
        if control {
            if !fin {
                return Err(WsError::Protocol("fragmented control frame"));
            }
            if len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(WsError::Protocol("control frame longer than 125 bytes"));
            }
        } else {
            let so_far = self.partial.as_ref().map_or(0, |p| p.data.len() as u64);
            if so_far + len > self.max_message as u64 {
                return Err(WsError::TooBig {
                    len: so_far + len,
                    max: self.max_message,
                });
            }
        }
        if b.len() < at + 4 {
            return Ok(None);
        }
        // Bounded by max_message (data) or 125 (control) above.
        Ok(Some((fin, opcode, len as usize, at + 4)))
    }

    fn complete(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: BytesMut,
    ) -> Result<Option<WsEvent>, WsError> {
        match opcode {
            OPCODE_PING => Ok(Some(WsEvent::Ping(payload.freeze()))),
            OPCODE_PONG => Ok(Some(WsEvent::Pong)),
            OPCODE_CLOSE => match payload.len() {
                0 => Ok(Some(WsEvent::Close(None))),
                1 => Err(WsError::Protocol("close frame with a 1-byte payload")),
                _ => {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    if !valid_close_code(code) {
                        return Err(WsError::Protocol("invalid close code"));
                    }
                    if std::str::from_utf8(&payload[2..]).is_err() {
                        return Err(WsError::InvalidUtf8);
                    }
                    Ok(Some(WsEvent::Close(Some(code))))
                }
            },
            OPCODE_CONTINUATION => {
                let Some(mut p) = self.partial.take() else {
                    return Err(WsError::Protocol("continuation frame without a message"));
                };
                p.data.extend_from_slice(&payload);
                p.check_utf8()?;
                if fin {
                    message(p.opcode, p.data.freeze()).map(Some)
                } else {
                    self.partial = Some(p);
                    Ok(None)
                }
            }
            _ => {
                if self.partial.is_some() {
                    return Err(WsError::Protocol(
                        "new message before the previous one ended",
                    ));
                }
                if fin {
                    message(opcode, payload.freeze()).map(Some)
                } else {
                    let mut p = Partial {
                        opcode,
                        data: payload,
                        utf8_checked: 0,
                    };
                    p.check_utf8()?;
                    self.partial = Some(p);
                    Ok(None)
                }
            }
        }
    }

    /// Reads more bytes from `stream` into the buffer; `Ok(0)` at the end of the stream.
    pub fn poll_fill<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        poll_read_chunk(stream, &mut self.buf, cx)
    }

    /// Bytes held for partial frames and messages (for tests and memory accounting).
    pub fn buffered(&self) -> usize {
        self.buf.capacity() + self.partial.as_ref().map_or(0, |p| p.data.capacity())
    }
}

fn message(opcode: u8, data: Bytes) -> Result<WsEvent, WsError> {
    if opcode == OPCODE_TEXT {
        if std::str::from_utf8(&data).is_err() {
            return Err(WsError::InvalidUtf8);
        }
        Ok(WsEvent::Text(data))
    } else {
        Ok(WsEvent::Binary(data))
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut v = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => v.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                v.push(0x80 | 126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(0x80 | 127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        v
    }

    fn reader(bytes: &[u8]) -> WsReader {
        WsReader::new(BytesMut::from(bytes), 4096)
    }

    fn events(bytes: &[u8]) -> Result<Vec<WsEvent>, WsError> {
        let mut r = reader(bytes);
        let mut out = Vec::new();
        while let Some(e) = r.next_event()? {
            out.push(e);
        }
        Ok(out)
    }

    #[test]
    fn binary_text_and_control_frames() {
        let mut wire = client_frame(true, OPCODE_BINARY, b"goim");
        wire.extend(client_frame(true, OPCODE_PING, b"p"));
        wire.extend(client_frame(true, OPCODE_TEXT, "héllo".as_bytes()));
        wire.extend(client_frame(true, OPCODE_PONG, b""));
        wire.extend(client_frame(true, OPCODE_CLOSE, &1000u16.to_be_bytes()));
        assert_eq!(
            events(&wire).unwrap(),
            vec![
                WsEvent::Binary(Bytes::from_static(b"goim")),
                WsEvent::Ping(Bytes::from_static(b"p")),
                WsEvent::Text(Bytes::from("héllo")),
                WsEvent::Pong,
                WsEvent::Close(Some(1000)),
            ]
        );
    }

    #[test]
    fn fragments_with_a_control_frame_between_them() {
        let mut wire = client_frame(false, OPCODE_BINARY, b"ab");
        wire.extend(client_frame(true, OPCODE_PING, b""));
        wire.extend(client_frame(false, OPCODE_CONTINUATION, b"cd"));
        wire.extend(client_frame(true, OPCODE_CONTINUATION, b"e"));
        assert_eq!(
            events(&wire).unwrap(),
            vec![
                WsEvent::Ping(Bytes::new()),
                WsEvent::Binary(Bytes::from_static(b"abcde"))
            ]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let mut wire = client_frame(true, OPCODE_BINARY, &[7u8; 300]);
        wire.extend(client_frame(false, OPCODE_TEXT, b"x"));
        wire.extend(client_frame(true, OPCODE_CONTINUATION, b"y"));
        let whole = events(&wire).unwrap();
        for split in 0..wire.len() {
            let mut r = reader(&wire[..split]);
            let mut got = Vec::new();
            while let Some(e) = r.next_event().unwrap() {
                got.push(e);
            }
            r.buf.extend_from_slice(&wire[split..]);
            while let Some(e) = r.next_event().unwrap() {
                got.push(e);
            }
            assert_eq!(got, whole, "split at {split}");
        }
    }

    #[test]
    fn violations_are_refused_with_their_close_code() {
        let unmasked = [0x82, 0x01, b'x'];
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (unmasked.to_vec(), close_code::PROTOCOL),
            (
                {
                    let mut f = client_frame(true, OPCODE_BINARY, b"x");
                    f[0] |= 0x40; // RSV1
                    f
                },
                close_code::PROTOCOL,
            ),
            (client_frame(true, 0x3, b"x"), close_code::PROTOCOL),
            (client_frame(false, OPCODE_PING, b"x"), close_code::PROTOCOL),
            (
                client_frame(true, OPCODE_PING, &[0u8; 126]),
                close_code::PROTOCOL,
            ),
            (
                client_frame(true, OPCODE_CONTINUATION, b"x"),
                close_code::PROTOCOL,
            ),
            (
                {
                    let mut f = client_frame(false, OPCODE_BINARY, b"x");
                    f.extend(client_frame(true, OPCODE_BINARY, b"y"));
                    f
                },
                close_code::PROTOCOL,
            ),
            (
                client_frame(true, OPCODE_TEXT, &[0xC3, 0x28]),
                close_code::INVALID_PAYLOAD,
            ),
            (
                client_frame(true, OPCODE_CLOSE, &1005u16.to_be_bytes()),
                close_code::PROTOCOL,
            ),
            (client_frame(true, OPCODE_CLOSE, &[3]), close_code::PROTOCOL),
            (
                client_frame(true, OPCODE_BINARY, &[0u8; 4097]),
                close_code::TOO_BIG,
            ),
            (
                {
                    let mut f = client_frame(false, OPCODE_BINARY, &[0u8; 4000]);
                    f.extend(client_frame(true, OPCODE_CONTINUATION, &[0u8; 100]));
                    f
                },
                close_code::TOO_BIG,
            ),
        ];
        for (wire, code) in cases {
            let err = events(&wire).unwrap_err();
            assert_eq!(err.close_code(), code, "{err} for {wire:02x?}");
        }
    }

    #[test]
    fn invalid_utf8_fails_at_its_fragment_not_at_the_end_of_the_message() {
        // Valid: a character split across fragments is only complete in the last one.
        let e = "é".as_bytes();
        let mut wire = client_frame(false, OPCODE_TEXT, &e[..1]);
        wire.extend(client_frame(false, OPCODE_CONTINUATION, &e[1..]));
        wire.extend(client_frame(true, OPCODE_CONTINUATION, b"!"));
        assert_eq!(
            events(&wire).unwrap(),
            vec![WsEvent::Text(Bytes::from("é!"))]
        );
        // Invalid in the first fragment: refused before the message ends.
        let first = client_frame(false, OPCODE_TEXT, &[b'a', 0xFF]);
        assert_eq!(events(&first), Err(WsError::InvalidUtf8));
        // Invalid in a middle fragment.
        let mut wire = client_frame(false, OPCODE_TEXT, b"ok");
        wire.extend(client_frame(false, OPCODE_CONTINUATION, &[0xC0, 0xAF]));
        assert_eq!(events(&wire), Err(WsError::InvalidUtf8));
        // Binary messages are never checked.
        let bin = client_frame(false, OPCODE_BINARY, &[0xFF]);
        assert_eq!(events(&bin), Ok(vec![]));
    }

    #[test]
    fn an_oversize_message_is_refused_before_its_payload_arrives() {
        // A header announcing 2^40 bytes, and nothing else.
        let mut head = vec![0x82, 0x80 | 127];
        head.extend_from_slice(&(1u64 << 40).to_be_bytes());
        let mut r = reader(&head);
        assert!(matches!(r.next_event(), Err(WsError::TooBig { .. })));
        assert!(r.buffered() < 64, "nothing reserved for it");
    }

    #[test]
    fn the_buffer_is_released_between_messages() {
        let mut r = reader(&client_frame(true, OPCODE_BINARY, &[1u8; 1000]));
        assert!(matches!(r.next_event(), Ok(Some(WsEvent::Binary(_)))));
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn server_headers_and_close_frames() {
        for (len, header) in [
            (5usize, 2usize),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
        ] {
            let mut b = BytesMut::new();
            put_header(&mut b, OPCODE_BINARY, len);
            assert_eq!(b.len(), header, "{len}");
            assert_eq!(b[0], 0x82);
        }
        let long = "é".repeat(100);
        let f = close_frame(1008, &long);
        assert!(f.len() <= 2 + MAX_CONTROL_PAYLOAD);
        assert!(
            std::str::from_utf8(&f[4..]).is_ok(),
            "cut at a char boundary"
        );
        assert_eq!(&f[2..4], &1008u16.to_be_bytes());
    }

    #[test]
    fn unmask_is_its_own_inverse() {
        let mask = [1, 2, 3, 4];
        let orig: Vec<u8> = (0..=255).collect();
        let mut v = orig.clone();
        unmask(&mut v, mask);
        assert_ne!(v, orig);
        unmask(&mut v, mask);
        assert_eq!(v, orig);
    }
}
