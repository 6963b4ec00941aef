//! IM test harness: a standalone on SQLite or on its own PostgreSQL database (created by the server on
//! start, dropped when the test ends), users registered and logged in through the JSON API, and
//! websocket clients authenticated with their login tokens.
//!
//! Gives `next_event`, `no_event`, `command` (op 4 -> op 5) and `command_then_closed`; PostgreSQL databases are named under
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
    server: Option<Server>,
    pg_database: Option<String>,
    api: ImApi,
}

enum Server {
    Own(Box<Standalone>),
    Shared(&'static Standalone),
}

/// Cheap password hashing in the servers of the IM tests (argon2's smallest parameters; only a build
/// with logic's test-support feature, as the tests' is, reads it): each test registers and logs in
/// users of its own, and full hashes were most of these tests' CPU time.
const FAST_PASSWORD_HASH: (&str, &str) = ("IMCLOUD_TEST_FAST_PASSWORD_HASH", "1");

/// The shared servers of this test binary, one per store (see [`ImServer::shared`]).
static SHARED_SQLITE: tokio::sync::OnceCell<Standalone> = tokio::sync::OnceCell::const_new();
static SHARED_POSTGRES: tokio::sync::OnceCell<Standalone> = tokio::sync::OnceCell::const_new();

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
        env.push((FAST_PASSWORD_HASH.0, FAST_PASSWORD_HASH.1.to_string()));
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
            server: Some(Server::Own(Box::new(server))),
            pg_database,
            api,
        }
    }

    /// The test binary's server on `store` with the default settings, started by the first test that
    /// asks, with a database of its own that this binary's run alone uses (dropped when it exits).
    /// For the tests whose users, groups and conversations are theirs alone, as every user is newly
    /// registered with a unique email: starting a server (and on PostgreSQL creating and migrating a
    /// database) costs more than most such tests. A test that needs other settings, or counts
    /// something over all users, starts its own ([`ImServer::start`]).
    ///
    /// Use the returned handle's own HTTP client ([`ImApi`]), never `server().request`: the shared
    /// server's client belongs to the runtime of the test that started it.
    pub async fn shared(store: Store) -> ImServer {
        let cell = match store {
            Store::Sqlite => &SHARED_SQLITE,
            Store::Postgres => &SHARED_POSTGRES,
        };
        let server = cell
            .get_or_init(|| async move {
                let (url, cleanup) = match store {
                    Store::Sqlite => {
                        let dir = std::env::temp_dir().join(unique_test_name("imcloud-shared-db"));
                        let dir = dir.display();
                        (format!("sqlite://{dir}/im.db"), format!("rm -rf '{dir}'"))
                    }
                    Store::Postgres => {
                        let (url, name) = test_database();
                        let drop = format!(
                            "psql '{}' -q -c 'DROP DATABASE IF EXISTS {name} WITH (FORCE)'",
                            postgres_base()
                        );
                        (url, drop)
                    }
                };
                Standalone::start_opts(super::StartOptions {
                    env: &[("IMCLOUD_DATABASE_URL", &url), FAST_PASSWORD_HASH],
                    shared_cleanup: Some(&cleanup),
                    ..super::StartOptions::default()
                })
                .await
            })
            .await;
        ImServer {
            server: Some(Server::Shared(server)),
            pg_database: None,
            api: ImApi::new(&server.http),
        }
    }

    pub fn server(&self) -> &Standalone {
        match self.server.as_ref().expect("running") {
            Server::Own(s) => s,
            Server::Shared(s) => s,
        }
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

    /// Any call with a raw body and an optional bearer token (a login token or the API key).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body.into());
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        send_for_json(req, path).await
    }

    /// The base URL (`http://host:port`).
    pub fn base(&self) -> &str {
        &self.base
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
            drop_test_database_later(db);
        }
    }
}

/// [`drop_test_database`] without waiting for it (a drop takes about a second, most of a short
/// test's time): `psql` runs on, and finishes even if the test binary has exited by then.
pub fn drop_test_database_later(name: &str) {
    let child = Command::new("psql")
        .args([
            &postgres_base(),
            "-q",
            "-c",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        ])
        .stdout(std::process::Stdio::null())
        .spawn();
    match child {
        // Reaped on a thread of its own, so that no zombie is left while the tests run.
        Ok(mut c) => {
            std::thread::spawn(move || c.wait());
        }
        Err(e) => eprintln!("could not drop test database {name}: {e}"),
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

/// Sends an op 4 command; returns its seq.
async fn send_command(c: &mut GoimClient, cmd: &Value) -> i32 {
    c.send(
        imcloud_proto::op::SEND_MSG,
        serde_json::to_vec(cmd).expect("json"),
    )
    .await
    .expect("send op 4")
}

/// Sends an op 4 command and returns the op 5 reply's JSON.
pub async fn command(c: &mut GoimClient, cmd: Value) -> Value {
    let seq = send_command(c, &cmd).await;
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

/// Sends an op 4 command after which the server closes the connection (`delete_account`): the op 5
/// reply if it came before the close, and the close's reason.
pub async fn command_then_closed(c: &mut GoimClient, cmd: Value) -> (Option<Value>, String) {
    let seq = send_command(c, &cmd).await;
    let mut reply = None;
    loop {
        match c.recv_timeout(WAIT).await {
            Ok(f) if f.op == imcloud_proto::op::SEND_MSG_REPLY && f.seq == seq => {
                reply = Some(serde_json::from_slice(&f.body).expect("reply JSON"));
            }
            Ok(_) => continue,
            Err(ClientError::Closed(reason)) => return (reply, reason),
            Err(e) => panic!("expected the reply and a close, got {e}"),
        }
    }
}

/// Runs each named `async fn $name(store: Store)` of the including file once per store, as
/// `sqlite::$name` and `postgres::$name`.
#[allow(unused_macros)]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::common::im::Store::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::common::im::Store::Postgres).await } )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_stores;

/// The private conversation of `a` and `b`.
pub fn cid(a: &TestUser, b: &TestUser) -> String {
    format!("u-{}-{}", a.id.min(b.id), a.id.max(b.id))
}

/// The ids of a history page's messages.
pub fn ids(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect()
}

/// The seqs of a history page's messages.
pub fn seqs(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}

/// Closes `c` by the server's hand: waits (skipping the events that arrive before) and returns the reason.
pub async fn closed(c: &mut GoimClient) -> String {
    loop {
        match c.recv_timeout(WAIT).await {
            Ok(_) => continue,
            Err(ClientError::Closed(reason)) => return reason,
            Err(e) => panic!("expected a close, got {e}"),
        }
    }
}

impl ImApi {
    /// A text message from `from` into `cid`, which must be stored (201).
    pub async fn send(&self, from: &TestUser, cid: &str, client_msg_id: &str, text: &str) -> Value {
        self.ok(
            201,
            "POST",
            &format!("/v1/conversations/{cid}/messages"),
            from,
            Some(json!({"client_msg_id": client_msg_id, "type": "text", "content": text})),
        )
        .await
    }

    /// `user`'s history of `cid` after `after` (one page of 50).
    pub async fn history(&self, user: &TestUser, cid: &str, after: i64) -> Value {
        self.ok(
            200,
            "GET",
            &format!("/v1/conversations/{cid}/messages?after_seq={after}"),
            user,
            None,
        )
        .await
    }

    /// Ann and Bob, registered, logged in and friends.
    pub async fn friends(&self) -> (TestUser, TestUser) {
        let (ann, bob) = (self.user("Ann").await, self.user("Bob").await);
        self.befriend(&ann, &bob).await;
        (ann, bob)
    }

    /// A group named `name` owned by `owner`, with `members` joined (no approval); its id.
    pub async fn group(&self, owner: &TestUser, name: &str, members: &[&TestUser]) -> i64 {
        let g = self
            .ok(
                201,
                "POST",
                "/v1/groups",
                owner,
                Some(json!({"name": name})),
            )
            .await["id"]
            .as_i64()
            .expect("group id");
        for m in members {
            self.ok(200, "POST", &format!("/v1/groups/{g}/join"), m, None)
                .await;
        }
        g
    }

    /// `user`'s conversation `cid` from the first page of their list.
    pub async fn conversation(&self, user: &TestUser, cid: &str) -> Value {
        let list = self.ok(200, "GET", "/v1/conversations", user, None).await;
        list["conversations"]
            .as_array()
            .expect("conversations")
            .iter()
            .find(|c| c["id"] == cid)
            .unwrap_or_else(|| panic!("{cid} not in {list}"))
            .clone()
    }
}
