//! The body of op 22, the reconnect hint a draining comet sends just before it closes a connection
//! (docs/protocol.md, "Drain: op 22"). JSON `{"reason": string, "delay_ms": number, "url": string|null}`.
//!
//! Invariants: `delay_ms` is the server's suggested wait before reconnecting (clients add their own
//! jitter); `url`, when present, is another comet's websocket URL, else the client reconnects to the
//! address it used. A hint is not a failure: clients do not count it towards their backoff.

use serde::{Deserialize, Serialize};

use crate::Frame;
use crate::op;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconnectHint {
    /// Why the server closes the connection (e.g. "draining").
    pub reason: String,
    /// Suggested wait before reconnecting, in milliseconds.
    pub delay_ms: u64,
    /// Another comet's websocket URL (`ws://host:port/sub`), or `None`: reconnect where you were.
    #[serde(default)]
    pub url: Option<String>,
}

impl ReconnectHint {
    /// The op 22 frame carrying this hint (seq 0).
    pub fn to_frame(&self) -> Frame {
        let body = serde_json::to_vec(self).unwrap_or_default();
        Frame::new(op::RECONNECT_HINT, 0, body)
    }

    /// Parses an op 22 body; `None` when it is not a valid hint.
    pub fn parse(body: &[u8]) -> Option<ReconnectHint> {
        serde_json::from_slice(body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_round_trips_in_the_documented_shape() {
        let h = ReconnectHint {
            reason: "draining".into(),
            delay_ms: 250,
            url: Some("ws://10.0.0.7:3102/sub".into()),
        };
        let f = h.to_frame();
        assert_eq!(f.op, 22);
        let v: serde_json::Value = serde_json::from_slice(&f.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"reason": "draining", "delay_ms": 250, "url": "ws://10.0.0.7:3102/sub"})
        );
        assert_eq!(ReconnectHint::parse(&f.body), Some(h));
        let none =
            ReconnectHint::parse(br#"{"reason":"draining","delay_ms":0,"url":null}"#).unwrap();
        assert_eq!(none.url, None);
        assert_eq!(ReconnectHint::parse(b"not json"), None);
    }
}
