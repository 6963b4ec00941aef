//! Webhooks for trusted backends, configured per deployment (`IMCLOUD_IM_WEBHOOK_*`): one URL gets
//! every subscribed event as `POST {"id", "event", "created_at", "data"}`, signed with HMAC-SHA256 of
//! `"<unix seconds>.<body>"` under the webhook secret (`X-Imcloud-Signature: t=<secs>,v1=<hex>`, with
//! `X-Imcloud-Event` and `X-Imcloud-Delivery`).
//!
//! - `before_send` is synchronous: the backend answers `{"action": "allow"}` (or any 2xx with an
//!   empty body), `{"action": "reject", "reason"}` or `{"action": "rewrite", "content"}` within
//!   `IMCLOUD_IM_WEBHOOK_TIMEOUT_MS`; on a timeout or failure the send goes ahead (fail-open, the
//!   default) or is refused with 503 (`IMCLOUD_IM_WEBHOOK_FAIL_OPEN=false`).
//! - `after_send`, `offline` (a message's recipients with no live connection: how a deployment wires
//!   in APNs or FCM), `friend` and `group` are asynchronous: queued (at most 10,000 waiting; beyond
//!   that an event is dropped and counted), sent by at most 16 concurrent deliveries, each retried
//!   with exponential backoff (0.5 s, 1 s, 2 s, 4 s) on a network error, a timeout, 429 or 5xx.
//!
//! Metrics: `imcloud_im_webhook_deliveries_total{event, result}` (`ok`, `failed`, `dropped`,
//! `retried`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use imcloud_common::im::chat::Message;
use imcloud_common::im::events::GroupEvent;
use imcloud_common::im::values::{ConversationId, SendKind};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{Semaphore, mpsc};

use super::db::now_ms;

const QUEUE: usize = 10_000;
const CONCURRENCY: usize = 16;
const ATTEMPTS: u32 = 5;
const ASYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// The events a webhook can subscribe to.
pub const EVENTS: &[&str] = &["before_send", "after_send", "offline", "friend", "group"];

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: String,
    pub secret: String,
    pub events: HashSet<String>,
    pub timeout: Duration,
    pub fail_open: bool,
}

impl WebhookSettings {
    /// From the configuration: `None` when no URL is set. Errors name the setting that is wrong.
    pub fn from_config(
        url: &str,
        secret: &str,
        events: &str,
        timeout_ms: u64,
        fail_open: bool,
    ) -> Result<Option<WebhookSettings>, String> {
        let url = url.trim();
        if url.is_empty() {
            return Ok(None);
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err("IMCLOUD_IM_WEBHOOK_URL must be an http:// or https:// URL".into());
        }
        if secret.len() < 16 {
            return Err(
                "IMCLOUD_IM_WEBHOOK_SECRET must be at least 16 bytes when a webhook URL is set"
                    .into(),
            );
        }
        let mut set = HashSet::new();
        for e in events.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if !EVENTS.contains(&e) {
                return Err(format!(
                    "IMCLOUD_IM_WEBHOOK_EVENTS: unknown event {e:?} (one of {})",
                    EVENTS.join(", ")
                ));
            }
            set.insert(e.to_string());
        }
        if timeout_ms == 0 {
            return Err("IMCLOUD_IM_WEBHOOK_TIMEOUT_MS must be at least 1".into());
        }
        Ok(Some(WebhookSettings {
            url: url.to_string(),
            secret: secret.to_string(),
            events: set,
            timeout: Duration::from_millis(timeout_ms),
            fail_open,
        }))
    }
}

/// The before-send webhook's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Rewrite(String),
    Reject(String),
    /// Failed or timed out with fail-closed set.
    Unavailable,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    action: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    content: Option<String>,
}

struct Delivery {
    event: &'static str,
    body: Vec<u8>,
    id: String,
}

pub struct Webhooks {
    settings: Arc<WebhookSettings>,
    client: reqwest::Client,
    queue: mpsc::Sender<Delivery>,
}

/// `t=<secs>,v1=<hex HMAC-SHA256(secret, "<secs>.<body>")>`.
pub fn signature(secret: &str, secs: u64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={secs},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn envelope(event: &str, data: Value) -> (String, Vec<u8>) {
    let id = uuid::Uuid::new_v4().to_string();
    let body = json!({"id": id, "event": event, "created_at": now_ms(), "data": data});
    (id, serde_json::to_vec(&body).unwrap_or_default())
}

async fn post(
    client: &reqwest::Client,
    s: &WebhookSettings,
    event: &str,
    id: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<reqwest::Response, String> {
    let secs = now_ms() as u64 / 1000;
    client
        .post(&s.url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .header("x-imcloud-event", event)
        .header("x-imcloud-delivery", id)
        .header("x-imcloud-signature", signature(&s.secret, secs, &body))
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())
}

fn count(event: &'static str, result: &'static str) {
    metrics::counter!("imcloud_im_webhook_deliveries_total", "event" => event, "result" => result)
        .increment(1);
}

async fn deliver(client: reqwest::Client, s: Arc<WebhookSettings>, d: Delivery) {
    let mut backoff = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        match post(&client, &s, d.event, &d.id, d.body.clone(), ASYNC_TIMEOUT).await {
            Ok(r) if r.status().is_success() => {
                count(d.event, "ok");
                return;
            }
            Ok(r) if !(r.status().is_server_error() || r.status().as_u16() == 429) => {
                tracing::warn!(event = d.event, status = %r.status(), "webhook refused; not retried");
                count(d.event, "failed");
                return;
            }
            Ok(r) => {
                tracing::debug!(event = d.event, attempt, status = %r.status(), "webhook failed")
            }
            Err(e) => tracing::debug!(event = d.event, attempt, "webhook failed: {e}"),
        }
        if attempt < ATTEMPTS {
            count(d.event, "retried");
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    tracing::warn!(event = d.event, "webhook failed {ATTEMPTS} times; given up");
    count(d.event, "failed");
}

impl Webhooks {
    /// Starts the delivery task (call inside a tokio runtime).
    pub fn start(settings: WebhookSettings) -> Webhooks {
        let settings = Arc::new(settings);
        let client = reqwest::Client::new();
        let (tx, mut rx) = mpsc::channel::<Delivery>(QUEUE);
        let (c, s) = (client.clone(), settings.clone());
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(CONCURRENCY));
            while let Some(d) = rx.recv().await {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (c, s) = (c.clone(), s.clone());
                tokio::spawn(async move {
                    deliver(c, s, d).await;
                    drop(slot);
                });
            }
        });
        Webhooks {
            settings,
            client,
            queue: tx,
        }
    }

    fn wants(&self, event: &str) -> bool {
        self.settings.events.contains(event)
    }

    pub fn wants_offline(&self) -> bool {
        self.wants("offline")
    }

    fn enqueue(&self, event: &'static str, data: Value) {
        if !self.wants(event) {
            return;
        }
        let (id, body) = envelope(event, data);
        if self.queue.try_send(Delivery { event, body, id }).is_err() {
            count(event, "dropped");
        }
    }

    /// Asks the backend about a message before it is stored.
    pub async fn before_send(
        &self,
        sender: i64,
        cid: ConversationId,
        kind: SendKind,
        content: &str,
    ) -> Verdict {
        if !self.wants("before_send") {
            return Verdict::Allow;
        }
        let (id, body) = envelope(
            "before_send",
            json!({"sender_id": sender, "conversation_id": cid.to_string(), "type": kind, "content": content}),
        );
        let failed = |why: String| {
            tracing::warn!("before-send webhook: {why}");
            count("before_send", "failed");
            if self.settings.fail_open {
                Verdict::Allow
            } else {
                Verdict::Unavailable
            }
        };
        let r = match post(
            &self.client,
            &self.settings,
            "before_send",
            &id,
            body,
            self.settings.timeout,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => return failed(e),
        };
        if !r.status().is_success() {
            return failed(format!("status {}", r.status()));
        }
        let bytes = match tokio::time::timeout(self.settings.timeout, r.bytes()).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return failed(e.to_string()),
            Err(_) => return failed("timed out reading the answer".into()),
        };
        count("before_send", "ok");
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Verdict::Allow;
        }
        match serde_json::from_slice::<Answer>(&bytes) {
            Ok(a) => match a.action.as_str() {
                "" | "allow" => Verdict::Allow,
                "reject" => Verdict::Reject(if a.reason.is_empty() {
                    "by policy".into()
                } else {
                    a.reason
                }),
                "rewrite" => match a.content {
                    Some(c) => Verdict::Rewrite(c),
                    None => failed("rewrite without content".into()),
                },
                other => failed(format!("unknown action {other:?}")),
            },
            Err(e) => failed(format!("answer is not JSON: {e}")),
        }
    }

    pub fn after_send(&self, message: &Message, recipients: &[i64]) {
        self.enqueue(
            "after_send",
            json!({"message": message, "recipients": recipients}),
        );
    }

    pub fn offline(&self, message: &Message, user_ids: &[i64]) {
        self.enqueue("offline", json!({"message": message, "user_ids": user_ids}));
    }

    pub fn friend_change(&self, change: &str, user_id: i64, other_id: i64) {
        self.enqueue(
            "friend",
            json!({"change": change, "user_id": user_id, "other_id": other_id}),
        );
    }

    pub fn group_change(&self, e: &GroupEvent) {
        self.enqueue("group", serde_json::to_value(e).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert!(WebhookSettings::from_config("", "", "", 1000, true).is_ok_and(|s| s.is_none()));
        assert!(
            WebhookSettings::from_config("ftp://x", "0123456789abcdef", "", 1000, true).is_err()
        );
        assert!(WebhookSettings::from_config("http://x", "short", "", 1000, true).is_err());
        assert!(
            WebhookSettings::from_config(
                "http://x",
                "0123456789abcdef",
                "after_send,nope",
                1000,
                true
            )
            .is_err()
        );
        let s = WebhookSettings::from_config(
            "http://x/h",
            "0123456789abcdef",
            "after_send, group",
            1000,
            false,
        );
        assert!(s.is_ok_and(|s| s.is_some_and(|s| s.events.len() == 2 && !s.fail_open)));
    }

    #[test]
    fn signatures_are_hmac_sha256_of_time_and_body() {
        // HMAC-SHA256("key", "1.{}") computed independently (python hmac).
        assert_eq!(
            signature("key", 1, b"{}"),
            "t=1,v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
    }
}
