//! A Centrifugo client over websocket, just enough for the benchmark: Centrifugo's client protocol v2 in
//! its JSON form (https://centrifugal.dev/docs/transports/client_protocol). One connect command with the
//! connection JWT, one subscribe command per connection, then publication pushes; the server's pings (an
//! empty object `{}`) are answered with an empty object. Several replies may share one websocket message,
//! one JSON object per line.
//!
//! Invariants: a command is sent only after the previous one was answered (ids 1, 2, ...), so a reply
//! with an id is always the answer to the last command; a reply carrying an error fails the call.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::payload;
use crate::ws::{WsError, WsStream};

#[derive(Debug, thiserror::Error)]
pub enum CentrifugoError {
    #[error(transparent)]
    Ws(#[from] WsError),
    #[error("server error {code}: {message}")]
    Server { code: u32, message: String },
    #[error("server disconnected: {0}")]
    Disconnected(String),
    #[error("bad reply from server: {0}")]
    Protocol(String),
    #[error("connection closed")]
    Closed,
}

/// One line of what the server sends: a reply to a command (id > 0), a push (id 0), or a ping (all
/// fields absent).
#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(default)]
    id: u32,
    error: Option<ReplyError>,
    #[serde(borrow)]
    push: Option<Push<'a>>,
}

#[derive(Deserialize)]
struct ReplyError {
    code: u32,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct Push<'a> {
    #[serde(borrow)]
    r#pub: Option<Publication<'a>>,
    disconnect: Option<Disconnect>,
}

#[derive(Deserialize)]
struct Publication<'a> {
    /// The benchmark publishes its message as a JSON string (see [`payload::to_text`]).
    #[serde(borrow)]
    data: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Disconnect {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    reason: String,
}

pub struct CentrifugoWs {
    ws: WsStream,
    next_id: u32,
    /// Publications already decoded from a websocket message that carried several lines.
    pending: std::collections::VecDeque<Bytes>,
}

impl CentrifugoWs {
    /// Sends the connect command with the connection JWT and waits for its reply.
    pub async fn connect(ws: WsStream, token: &str) -> Result<CentrifugoWs, CentrifugoError> {
        let mut c = CentrifugoWs {
            ws,
            next_id: 0,
            pending: Default::default(),
        };
        c.command(json!({"connect": {"token": token, "name": "imcloud-bench"}}))
            .await?;
        Ok(c)
    }

    /// Subscribes to `channel` and waits until the server confirmed it.
    pub async fn subscribe(&mut self, channel: &str) -> Result<(), CentrifugoError> {
        self.command(json!({"subscribe": {"channel": channel}}))
            .await
    }

    /// The answer to a server ping (the client never pings: Centrifugo's server does, every 25 s).
    async fn pong(&mut self) -> Result<(), CentrifugoError> {
        self.send("{}".to_string()).await
    }

    async fn command(&mut self, mut cmd: serde_json::Value) -> Result<(), CentrifugoError> {
        self.next_id += 1;
        let id = self.next_id;
        cmd["id"] = json!(id);
        self.send(cmd.to_string()).await?;
        while self.read_lines(Some(id)).await?.is_none() {}
        Ok(())
    }

    async fn send(&mut self, text: String) -> Result<(), CentrifugoError> {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .map_err(CentrifugoError::Ws)
    }

    /// The next publication's message, in the binary form of [`payload::encode`]; answers pings on the way.
    pub async fn next_publication(&mut self) -> Result<Bytes, CentrifugoError> {
        loop {
            if let Some(p) = self.pending.pop_front() {
                return Ok(p);
            }
            self.read_lines(None).await?;
        }
    }

    /// Reads one websocket message and handles every line in it: publications are queued, pings answered.
    /// Returns Some(()) when it carried the reply to command `want`.
    async fn read_lines(&mut self, want: Option<u32>) -> Result<Option<()>, CentrifugoError> {
        let msg = match self.ws.next().await {
            Some(Ok(Message::Text(t))) => Bytes::from(t),
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Close(_))) | None => return Err(CentrifugoError::Closed),
            Some(Ok(_)) => return Ok(None),
            Some(Err(e)) => return Err(CentrifugoError::Ws(e)),
        };
        let mut answered = None;
        let mut pings = 0;
        for line in msg.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match handle_line(line)? {
                Line::Reply(id) if Some(id) == want => answered = Some(()),
                Line::Reply(_) => {}
                Line::Publication(p) => self.pending.push_back(p),
                Line::Ping => pings += 1,
                Line::Other => {}
            }
        }
        for _ in 0..pings {
            self.pong().await?;
        }
        Ok(answered)
    }
}

enum Line {
    Reply(u32),
    Publication(Bytes),
    Ping,
    Other,
}

fn handle_line(line: &[u8]) -> Result<Line, CentrifugoError> {
    let r: Reply = serde_json::from_slice(line).map_err(|e| {
        CentrifugoError::Protocol(format!("{e}: {}", String::from_utf8_lossy(line)))
    })?;
    if let Some(e) = r.error {
        return Err(CentrifugoError::Server {
            code: e.code,
            message: e.message,
        });
    }
    if r.id > 0 {
        return Ok(Line::Reply(r.id));
    }
    let Some(push) = r.push else {
        return Ok(Line::Ping);
    };
    if let Some(d) = push.disconnect {
        return Err(CentrifugoError::Disconnected(format!(
            "{} {}",
            d.code, d.reason
        )));
    }
    match push.r#pub.and_then(|p| p.data) {
        Some(text) => payload::decode_text(&text)
            .map(Line::Publication)
            .ok_or_else(|| CentrifugoError::Protocol(format!("not a benchmark message: {text}"))),
        None => Ok(Line::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_replies_pushes_or_pings() {
        assert!(matches!(
            handle_line(
                br#"{"id":1,"connect":{"client":"c","version":"6.9.1","ping":25,"pong":true}}"#
            ),
            Ok(Line::Reply(1))
        ));
        assert!(matches!(handle_line(b"{}"), Ok(Line::Ping)));
        let text = payload::encode_text(7, 64);
        let line =
            json!({"push": {"channel": "bench", "pub": {"data": text, "offset": 3}}}).to_string();
        match handle_line(line.as_bytes()) {
            Ok(Line::Publication(p)) => assert_eq!(payload::decode(&p).map(|(s, _)| s), Some(7)),
            _ => panic!("not a publication"),
        }
        assert!(matches!(
            handle_line(br#"{"push":{"channel":"bench","join":{"info":{}}}}"#),
            Ok(Line::Other)
        ));
    }

    #[test]
    fn errors_and_disconnects_fail() {
        assert!(matches!(
            handle_line(br#"{"id":2,"error":{"code":103,"message":"permission denied"}}"#),
            Err(CentrifugoError::Server { code: 103, .. })
        ));
        assert!(matches!(
            handle_line(br#"{"push":{"disconnect":{"code":3008,"reason":"slow"}}}"#),
            Err(CentrifugoError::Disconnected(_))
        ));
        assert!(matches!(
            handle_line(b"not json"),
            Err(CentrifugoError::Protocol(_))
        ));
        assert!(matches!(
            handle_line(br#"{"push":{"channel":"bench","pub":{"data":"zz"}}}"#),
            Err(CentrifugoError::Protocol(_))
        ));
    }
}
