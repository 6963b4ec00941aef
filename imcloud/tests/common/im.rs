//! IM test harness: a standalone on SQLite or on its own PostgreSQL database (created by the server on
//! start, dropped when the test ends), users registered and logged in through the JSON API, and
//! websocket clients authenticated with their login tokens.
//!
//! Gives `next_event`, `no_event` and `command` (op 4 -> op 5); PostgreSQL databases are named under
//! `IMCLOUD_TEST_POSTGRES_URL` and dropped with `psql`.

use std::process::Command;
use std::time::{Duration, Instant};

use imcloud::client::{ClientError, GoimClient, auth_body};
use serde_json::{Value, json};

use imcloud_common::test_name::unique_test_name;

use super::{Standalone, WAIT, send_for_json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

pub fn postgres_base() -> String {
    std::env::var("IMCLOUD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A standalone serving the IM tier; derefs to its [`ImApi`].
pub struct ImServer {
    server: Option<Standalone>,
    pg_database: Option<String>,
    api: ImApi,
}

/// The `/v1` JSON API of a deployment (standalone or the cluster's api).
pub struct ImApi {
    http: reqwest::Client,
    base: String,
}

/// A fresh PostgreSQL database url for one test (the server creates it); drop it with
/// [`drop_test_database`].
pub fn test_database() -> (String, String) {
    let name = unique_test_name("imcloud_test").replace('-', "_");
    (format!("{}/{name}", postgres_base()), name)
}

pub fn drop_test_database(name: &str) {
    let dropped = Command::new("psql")
        .args([
            &postgres_base(),
            "-q",
            "-c",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        ])
        .status();
    if !dropped.as_ref().is_ok_and(|s| s.success()) {
        eprintln!("could not drop test database {name}: {dropped:?}");
    }
}

/// A websocket client of `user` on comet `ws_url`, authenticated with their login token.
pub async fn ws_login(ws_url: &str, user: &TestUser) -> Result<GoimClient, ClientError> {
    let mut c = GoimClient::connect_ws(ws_url).await?;
    c.auth(auth_body(user.id, "", "", &[], &user.token), WAIT)
        .await?;
    Ok(c)
}

impl std::ops::Deref for ImServer {
    type Target = ImApi;

    fn deref(&self) -> &ImApi {
        &self.api
    }
}

#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub email: String,
    pub token: String,
}

impl ImServer {
    pub async fn start(store: Store) -> ImServer {
        ImServer::start_with(store, &[]).await
    }

    pub async fn start_with(store: Store, env: &[(&str, &str)]) -> ImServer {
        let mut env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let pg_database = match store {
            Store::Sqlite => None,
            Store::Postgres => {
                let (url, name) = test_database();
                env.push(("IMCLOUD_DATABASE_URL", url));
                Some(name)
            }
        };
        let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = Standalone::start_with(&env_refs).await;
        let api = ImApi::new(&server.http);
        ImServer {
            server: Some(server),
            pg_database,
            api,
        }
    }

    pub fn server(&self) -> &Standalone {
        self.server.as_ref().expect("running")
    }

    /// A websocket client of `user` authenticated with their login token.
    pub async fn ws(&self, user: &TestUser) -> GoimClient {
        self.try_ws(user).await.expect("websocket auth")
    }

    pub async fn try_ws(&self, user: &TestUser) -> Result<GoimClient, ClientError> {
        ws_login(&self.server().ws_url, user).await
    }
}

impl ImApi {
    pub fn new(base: &str) -> ImApi {
        imcloud_common::tls::install_default_provider();
        ImApi {
            http: reqwest::Client::new(),
            base: base.to_string(),
        }
    }

    /// Any /v1 call; the body is JSON when given. Returns the status and the JSON answer.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        send_for_json(req, path).await
    }

    /// Any /v1 call, with the answer's headers.
    pub async fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("HTTP body");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: response is not JSON ({e}): {text}"));
        (status, headers, json)
    }

    /// A call that must answer `status`; returns the body.
    pub async fn ok(
        &self,
        status: u16,
        method: &str,
        path: &str,
        user: &TestUser,
        body: Option<Value>,
    ) -> Value {
        let (got, v) = self.call(method, path, Some(&user.token), body).await;
        assert_eq!(got, status, "{method} {path} as user {}: {v}", user.id);
        v
    }

    /// A call that must be refused with `status` and a JSON error.
    pub async fn refused(
        &self,
        status: u16,
        method: &str,
        path: &str,
        user: Option<&TestUser>,
        body: Option<Value>,
    ) -> String {
        let (got, v) = self
            .call(method, path, user.map(|u| u.token.as_str()), body)
            .await;
        assert_eq!(
            got, status,
            "{method} {path}: expected {status}, got {got}: {v}"
        );
        let code = v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {v}"));
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        code.to_string()
    }

    /// Registers and logs in a user.
    pub async fn user(&self, nickname: &str) -> TestUser {
        let email = format!("{}@example.com", unique_test_name(&nickname.to_lowercase()));
        let (s, v) = self
            .call(
                "POST",
                "/v1/users",
                None,
                Some(json!({"email": email, "nickname": nickname, "password": "correct horse"})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        self.login(&email, v["id"].as_i64().expect("id")).await
    }

    pub async fn login(&self, email: &str, id: i64) -> TestUser {
        let (s, v) = self
            .call(
                "POST",
                "/v1/sessions",
                None,
                Some(json!({"email": email, "password": "correct horse"})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["user"]["id"].as_i64(), Some(id));
        TestUser {
            id,
            email: email.to_string(),
            token: v["token"].as_str().expect("token").to_string(),
        }
    }

    /// Marks every message-box item of `user` read.
    pub async fn read_all_notifications(&self, user: &TestUser) {
        self.ok(200, "POST", "/v1/notifications/read", user, None)
            .await;
    }

    /// Makes two users friends (a asks, b accepts).
    pub async fn befriend(&self, a: &TestUser, b: &TestUser) {
        let r = self
            .ok(
                201,
                "POST",
                "/v1/friend-requests",
                a,
                Some(json!({"to_user_id": b.id, "note": "hi"})),
            )
            .await;
        let id = r["id"].as_i64().expect("request id");
        self.ok(
            200,
            "POST",
            &format!("/v1/friend-requests/{id}/accept"),
            b,
            None,
        )
        .await;
    }
}

impl Drop for ImServer {
    fn drop(&mut self) {
        drop(self.server.take());
        if let Some(db) = &self.pg_database {
            drop_test_database(db);
        }
    }
}

/// The next live IM event (op ≥ 1000) named `name`, skipping other frames; its `data`.
pub async fn next_event(c: &mut GoimClient, name: &str) -> Value {
    next_event_within(c, name, WAIT).await
}

/// [`next_event`] with its own deadline.
pub async fn next_event_within(c: &mut GoimClient, name: &str, wait: Duration) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {name:?} event within {wait:?}");
        let f = c
            .recv_timeout(left)
            .await
            .unwrap_or_else(|e| panic!("waiting for {name:?}: {e}"));
        if f.op < 1000 {
            continue;
        }
        let v: Value = serde_json::from_slice(&f.body).expect("event JSON");
        if v["event"] == name {
            return v["data"].clone();
        }
    }
}

/// Asserts that no event named `name` arrives within `wait`.
pub async fn no_event(c: &mut GoimClient, name: &str, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match c.recv_timeout(left).await {
            Ok(f) if f.op >= 1000 => {
                let v: Value = serde_json::from_slice(&f.body).expect("event JSON");
                assert_ne!(v["event"], name, "unexpected event {v}");
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Sends an op 4 command and returns the op 5 reply's JSON.
pub async fn command(c: &mut GoimClient, cmd: Value) -> Value {
    let seq = c
        .send(
            imcloud_proto::op::SEND_MSG,
            serde_json::to_vec(&cmd).expect("json"),
        )
        .await
        .expect("send op 4");
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let f = c.recv_timeout(left).await.expect("op 5 reply");
        if f.op == imcloud_proto::op::SEND_MSG_REPLY {
            assert_eq!(f.seq, seq, "op 5 carries the command's seq");
            return serde_json::from_slice(&f.body).expect("reply JSON");
        }
    }
}
