//! Upstream op 4: a client command, answered in the op 5 body.
//!
//! The body is a JSON command `{"cmd": "...", ...}`; the reply is `{"code","message","data"}` as in the
//! HTTP API. This tier knows `ping`; the IM tier adds its commands here.

use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Command {
    cmd: String,
}

/// Handles one command from user `mid` on connection `key`.
pub fn handle(mid: i64, key: &str, body: &[u8]) -> Vec<u8> {
    let reply = match serde_json::from_slice::<Command>(body) {
        Err(e) => {
            json!({"code": -400, "message": format!("body must be a JSON command {{\"cmd\": ...}}: {e}")})
        }
        Ok(c) => match c.cmd.as_str() {
            "ping" => {
                json!({"code": 0, "message": "ok", "data": {"pong": true, "mid": mid, "key": key}})
            }
            other => json!({"code": -400, "message": format!("unknown command {other:?}")}),
        },
    };
    serde_json::to_vec(&reply).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn code(reply: &[u8]) -> i64 {
        serde_json::from_slice::<Value>(reply).unwrap()["code"]
            .as_i64()
            .unwrap()
    }

    #[test]
    fn commands_get_answers() {
        assert_eq!(code(&handle(1, "k", br#"{"cmd":"ping"}"#)), 0);
        assert_eq!(code(&handle(1, "k", br#"{"cmd":"launch"}"#)), -400);
        assert_eq!(code(&handle(1, "k", b"\xff\x00")), -400);
    }
}
