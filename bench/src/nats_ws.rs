//! A NATS client over websocket, just enough for the benchmark: INFO, CONNECT, SUB, PUB, MSG, PING/PONG
//! (the NATS text protocol, https://docs.nats.io/reference/reference-protocols/nats-protocol).

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::ws::{WsError, WsStream};

/// Largest protocol line (MSG header, INFO) accepted from the server.
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error(transparent)]
    Ws(#[from] WsError),
    #[error("server error: {0}")]
    Server(String),
    #[error("bad protocol line from server: {0}")]
    Protocol(String),
    #[error("connection closed")]
    Closed,
}

/// What the server sent that the caller cares about.
pub enum NatsEvent {
    Msg(Bytes),
    Pong,
}

pub struct NatsWs {
    ws: WsStream,
    buf: BytesMut,
}

impl NatsWs {
    /// Reads INFO, sends CONNECT (with the token, if any) and waits for the PONG that proves the server
    /// accepted it.
    pub async fn handshake(ws: WsStream, token: Option<&str>) -> Result<NatsWs, NatsError> {
        let mut c = NatsWs {
            ws,
            buf: BytesMut::with_capacity(1024),
        };
        let mut connect = json!({"verbose": false, "pedantic": false, "protocol": 1, "lang": "rust",
            "version": env!("CARGO_PKG_VERSION"), "name": "imcloud-bench"});
        if let Some(t) = token {
            connect["auth_token"] = json!(t);
        }
        c.send(format!("CONNECT {connect}\r\nPING\r\n").into_bytes())
            .await?;
        c.wait_pong().await?;
        Ok(c)
    }

    /// Subscribes and waits until the server has processed the SUB (a PING after it comes back as PONG).
    pub async fn subscribe(&mut self, subject: &str, sid: u64) -> Result<(), NatsError> {
        self.send(format!("SUB {subject} {sid}\r\nPING\r\n").into_bytes())
            .await?;
        self.wait_pong().await
    }

    pub async fn publish(&mut self, subject: &str, payload: &[u8]) -> Result<(), NatsError> {
        let mut out = format!("PUB {subject} {}\r\n", payload.len()).into_bytes();
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        self.send(out).await
    }

    pub async fn ping(&mut self) -> Result<(), NatsError> {
        self.send(b"PING\r\n".to_vec()).await
    }

    async fn send(&mut self, bytes: Vec<u8>) -> Result<(), NatsError> {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .map_err(NatsError::Ws)
    }

    async fn wait_pong(&mut self) -> Result<(), NatsError> {
        loop {
            if let NatsEvent::Pong = self.next_event().await? {
                return Ok(());
            }
        }
    }

    /// The next MSG payload or PONG; answers the server's PINGs on the way.
    pub async fn next_event(&mut self) -> Result<NatsEvent, NatsError> {
        loop {
            if let Some(ev) = parse_one(&mut self.buf)? {
                match ev {
                    Parsed::Event(ev) => return Ok(ev),
                    Parsed::Ping => self.send(b"PONG\r\n".to_vec()).await?,
                    Parsed::Ignored => {}
                }
                continue;
            }
            match self.ws.next().await {
                Some(Ok(Message::Binary(b))) => self.buf.extend_from_slice(&b),
                Some(Ok(Message::Text(t))) => self.buf.extend_from_slice(t.as_bytes()),
                Some(Ok(Message::Close(_))) | None => return Err(NatsError::Closed),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(NatsError::Ws(e)),
            }
        }
    }
}

/// Takes one complete protocol message off the buffer, if there is one.
fn parse_one(buf: &mut BytesMut) -> Result<Option<Parsed>, NatsError> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_LINE {
            return Err(NatsError::Protocol("line too long".into()));
        }
        return Ok(None);
    };
    let line =
        std::str::from_utf8(&buf[..eol]).map_err(|_| NatsError::Protocol("not UTF-8".into()))?;
    let mut words = line.split_ascii_whitespace();
    let verb = words.next().unwrap_or_default().to_ascii_uppercase();
    match verb.as_str() {
        "MSG" => {
            // MSG <subject> <sid> [reply-to] <#bytes>
            let len: usize = line
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| NatsError::Protocol(line.to_string()))?;
            let need = (eol + 4).saturating_add(len);
            if buf.len() < need {
                return Ok(None);
            }
            buf.advance(eol + 2);
            let payload = buf.split_to(len).freeze();
            buf.advance(2);
            Ok(Some(Parsed::Event(NatsEvent::Msg(payload))))
        }
        "PING" => {
            buf.advance(eol + 2);
            Ok(Some(Parsed::Ping))
        }
        "PONG" => {
            buf.advance(eol + 2);
            Ok(Some(Parsed::Event(NatsEvent::Pong)))
        }
        "-ERR" => Err(NatsError::Server(line.to_string())),
        "INFO" | "+OK" => {
            buf.advance(eol + 2);
            Ok(Some(Parsed::Ignored))
        }
        _ => Err(NatsError::Protocol(line.to_string())),
    }
}

enum Parsed {
    Event(NatsEvent),
    Ping,
    Ignored,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(p: Option<Parsed>) -> Option<Bytes> {
        match p {
            Some(Parsed::Event(NatsEvent::Msg(b))) => Some(b),
            _ => None,
        }
    }

    #[test]
    fn parses_messages_split_anywhere() {
        let wire = b"INFO {\"server_id\":\"x\"}\r\nMSG bench.fanout 1 5\r\nhello\r\nPING\r\nMSG a 2 r 2\r\nhi\r\nPONG\r\n";
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            let mut feed_rest = true;
            loop {
                match parse_one(&mut buf).unwrap() {
                    Some(p) => got.push(p),
                    None if feed_rest => {
                        buf.extend_from_slice(&wire[cut..]);
                        feed_rest = false;
                    }
                    None => break,
                }
            }
            assert_eq!(got.len(), 5, "cut at {cut}");
            let mut it = got.into_iter();
            assert!(matches!(it.next(), Some(Parsed::Ignored)));
            assert_eq!(msg(it.next()).as_deref(), Some(&b"hello"[..]));
            assert!(matches!(it.next(), Some(Parsed::Ping)));
            assert_eq!(msg(it.next()).as_deref(), Some(&b"hi"[..]), "reply-to form");
            assert!(matches!(it.next(), Some(Parsed::Event(NatsEvent::Pong))));
        }
    }

    #[test]
    fn server_errors_and_garbage_are_errors() {
        let mut buf = BytesMut::from(&b"-ERR 'Authorization Violation'\r\n"[..]);
        assert!(matches!(parse_one(&mut buf), Err(NatsError::Server(_))));
        let mut buf = BytesMut::from(&b"MSG a 1 notanumber\r\n"[..]);
        assert!(matches!(parse_one(&mut buf), Err(NatsError::Protocol(_))));
        let mut buf = BytesMut::from(&b"MSG a 1 18446744073709551615\r\n"[..]);
        assert!(
            parse_one(&mut buf).unwrap().is_none(),
            "waits for a body that never fits"
        );
    }
}
