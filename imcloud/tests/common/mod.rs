//! Test harness: starts the real `imcloud standalone` binary on free loopback ports and gives tests
//! authenticated goim clients and an HTTP client for the API.
//!
//! Options: TLS, a descriptor limit, the log in a file. Each standalone gets its own SQLite IM database in a
//! temporary directory, removed afterwards, unless the test gives `IMCLOUD_DATABASE_URL`.

#![allow(dead_code)]

pub mod certs;
pub mod cluster;
pub mod fault_proxy;
pub mod im;
pub mod own_engines;
pub mod recovery;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imcloud::client::{ClientError, ClientTls, GoimClient, auth_body, sign_token};
use imcloud_common::test_name::unique_test_name;
use imcloud_proto::Frame;
use serde_json::Value;

/// At least 32 bytes each: role processes (the cluster tests) refuse shorter secrets.
pub const SECRET: &str = "test-secret-0123456789abcdef0123456789";
pub const API_KEY: &str = "test-api-key-0123456789abcdef012345678";
/// The cluster's internal RPC token (a standalone generates its own).
pub const INTERNAL_TOKEN: &str = "test-internal-token-0123456789abcdef012";
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Standalone {
    child: Child,
    pub ws_url: String,
    /// Set when started with TLS: the wss listener, and the goim TCP and HTTP listeners speak TLS.
    pub wss_url: Option<String>,
    /// Trusts the test CA (TLS starts only).
    pub client_tls: Option<ClientTls>,
    pub tcp_addr: String,
    pub http: String,
    pub logic_addr: String,
    pub comet_grpc: String,
    http_client: reqwest::Client,
    /// Holds the SQLite IM database unless the test gave IMCLOUD_DATABASE_URL; removed on drop.
    data_dir: Option<std::path::PathBuf>,
    /// A shared server's lifeline (see [`StartOptions::shared_cleanup`]): closed when the test binary
    /// exits, however it exits.
    _lifeline: Option<std::process::ChildStdin>,
}

pub fn free_ports(n: usize) -> Vec<u16> {
    // Hold all of them at once so they differ; release just before the server binds them.
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    ls.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// How to start a standalone beyond the defaults.
#[derive(Default, Clone, Copy)]
pub struct StartOptions<'a> {
    /// Extra `IMCLOUD_*` settings.
    pub env: &'a [(&'a str, &'a str)],
    /// Serve wss, goim TCP over TLS and HTTPS with these certificates.
    pub tls: Option<&'a certs::PublicCerts>,
    /// Start under `ulimit -n` of this many files.
    pub nofile: Option<u64>,
    /// Write the server's log (stderr) to this file instead of the test's stderr.
    pub log_file: Option<&'a std::path::Path>,
    /// A server that outlives the test that starts it and serves the rest of the test binary (kept in
    /// a `static`, which is never dropped): it runs under a shell that holds the read end of a pipe
    /// whose write end only this process holds. When the test binary exits (normally, by a panic or a
    /// signal), the pipe closes and the shell kills the server and then runs this cleanup command
    /// (dropping its database, say). The shell exits with the server, so a server that dies at start is
    /// still seen and started again.
    pub shared_cleanup: Option<&'a str>,
}

impl Standalone {
    pub async fn start() -> Standalone {
        Standalone::start_with(&[]).await
    }

    /// Starts a standalone with extra `IMCLOUD_*` settings and waits until its API answers.
    pub async fn start_with(env: &[(&str, &str)]) -> Standalone {
        Standalone::start_opts(StartOptions {
            env,
            ..StartOptions::default()
        })
        .await
    }

    /// Starts a standalone and waits until its API answers.
    /// A free port can be taken by another test's socket before the server binds it; then the server exits
    /// at once, and this tries again with new ports.
    pub async fn start_opts(opts: StartOptions<'_>) -> Standalone {
        for attempt in 1..=3 {
            match Standalone::try_start(opts).await {
                Some(s) => return s,
                None => eprintln!(
                    "standalone exited during start-up (attempt {attempt}); retrying with new ports"
                ),
            }
        }
        panic!("standalone did not start in 3 attempts");
    }

    async fn try_start(opts: StartOptions<'_>) -> Option<Standalone> {
        imcloud_common::tls::install_default_provider();
        let env = opts.env;
        let p = free_ports(6);
        let addr = |port: u16| format!("127.0.0.1:{port}");
        let mut cmd = match (opts.nofile, opts.shared_cleanup) {
            (None, None) => Command::new(env!("CARGO_BIN_EXE_imcloud")),
            (None, Some(cleanup)) => {
                let mut c = Command::new("bash");
                c.arg("-c")
                    .arg(format!(
                        "trap '' INT TERM; exec 3<&0; \"$0\" \"$@\" 3<&- & pid=$!; exec 2>/dev/null; \
                         {{ read -r _ <&3; kill -9 $pid 2>/dev/null; {cleanup}; }} & wait $pid"
                    ))
                    .arg(env!("CARGO_BIN_EXE_imcloud"))
                    .stdin(Stdio::piped());
                c
            }
            (Some(_), Some(_)) => panic!("a shared server has no file limit of its own"),
            (Some(n), None) => {
                let mut c = Command::new("bash");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_imcloud"));
                c
            }
        };
        cmd.arg("standalone")
            .env("IMCLOUD_AUTH_SECRET", SECRET)
            .env("IMCLOUD_API_KEY", API_KEY)
            .env("IMCLOUD_COMET_WS_ADDR", addr(p[0]))
            .env("IMCLOUD_COMET_TCP_ADDR", addr(p[1]))
            .env("IMCLOUD_COMET_GRPC_ADDR", addr(p[2]))
            .env("IMCLOUD_LOGIC_GRPC_ADDR", addr(p[3]))
            .env("IMCLOUD_API_HTTP_ADDR", addr(p[4]))
            .env("IMCLOUD_ONLINE_RENEW_SECS", "1")
            // Every test client comes from 127.0.0.1: the per-IP limits are off unless a test sets them
            // (imcloud/tests/security.rs does, to test them).
            .env("IMCLOUD_COMET_MAX_CONNS_PER_IP", "0")
            .env("IMCLOUD_COMET_CONNECTS_PER_SEC_PER_IP", "0")
            .env("IMCLOUD_API_REQUESTS_PER_SEC_PER_IP", "0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(match opts.log_file {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
                None => Stdio::inherit(),
            });
        let data_dir = if env.iter().any(|(k, _)| *k == "IMCLOUD_DATABASE_URL") {
            None
        } else {
            let dir = std::env::temp_dir().join(unique_test_name("imcloud-test-db"));
            cmd.env(
                "IMCLOUD_DATABASE_URL",
                format!("sqlite://{}/im.db", dir.display()),
            );
            Some(dir)
        };
        let mut http_client = reqwest::Client::builder();
        let (mut wss_url, mut client_tls, mut scheme) = (None, None, "http");
        if let Some(tls) = opts.tls {
            cmd.env("IMCLOUD_TLS_CERT_FILE", tls.cert_file())
                .env("IMCLOUD_TLS_KEY_FILE", tls.key_file())
                .env("IMCLOUD_COMET_WSS_ADDR", addr(p[5]))
                .env("IMCLOUD_COMET_TCP_TLS", "true")
                .env("IMCLOUD_API_TLS", "true")
                .env("IMCLOUD_TLS_RELOAD_SECS", "1");
            let ca = reqwest::Certificate::from_pem(tls.ca.pem.as_bytes()).expect("CA");
            http_client = http_client.tls_certs_only([ca]);
            wss_url = Some(format!("wss://{}/sub", addr(p[5])));
            client_tls =
                Some(ClientTls::new(Some(&tls.ca_file()), &[b"http/1.1"]).expect("client TLS"));
            scheme = "https";
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let http_client = http_client.build().expect("HTTP client");
        let mut child = cmd.spawn().expect("start imcloud standalone");
        let lifeline = child.stdin.take();
        let mut s = Standalone {
            child,
            ws_url: format!("ws://{}/sub", addr(p[0])),
            wss_url,
            client_tls,
            tcp_addr: addr(p[1]),
            http: format!("{scheme}://{}", addr(p[4])),
            logic_addr: addr(p[3]),
            comet_grpc: addr(p[2]),
            http_client,
            data_dir,
            _lifeline: lifeline,
        };
        s.wait_ready().await.then_some(s)
    }

    /// `false` if the process exited before it was ready.
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let api_up = self
                .http_client
                .get(format!("{}/healthz", self.http))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let ws_up = tokio::net::TcpStream::connect(
                self.ws_url
                    .trim_start_matches("ws://")
                    .trim_end_matches("/sub"),
            )
            .await
            .is_ok();
            if api_up && ws_up {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "standalone did not start within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "standalone did not exit within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A websocket client authenticated as `mid`.
    pub async fn ws(&self, mid: i64, key: &str, room: &str, accepts: &[i32]) -> GoimClient {
        let mut c = GoimClient::connect_ws(&self.ws_url)
            .await
            .expect("connect ws");
        let token = sign_token(SECRET, mid, 600).expect("sign");
        c.auth(auth_body(mid, key, room, accepts, &token), WAIT)
            .await
            .expect("auth");
        c
    }

    /// A goim TCP client authenticated as `mid`.
    pub async fn tcp(&self, mid: i64, key: &str, room: &str) -> GoimClient {
        let mut c = GoimClient::connect_tcp(&self.tcp_addr)
            .await
            .expect("connect tcp");
        let token = sign_token(SECRET, mid, 600).expect("sign");
        c.auth(auth_body(mid, key, room, &[], &token), WAIT)
            .await
            .expect("auth");
        c
    }

    /// POSTs a push; returns the HTTP status and the JSON envelope.
    pub async fn push(
        &self,
        path: &str,
        query: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        self.request(
            reqwest::Method::POST,
            &format!("/goim/push/{path}?{query}"),
            Some(API_KEY),
            body.into(),
        )
        .await
    }

    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        self.request(
            reqwest::Method::GET,
            path_and_query,
            Some(API_KEY),
            reqwest::Body::from(""),
        )
        .await
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: reqwest::Body,
    ) -> (u16, Value) {
        let mut req = self
            .http_client
            .request(method, format!("{}{path}", self.http))
            .body(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        send_for_json(req, path).await
    }

    /// The HTTP client, trusting the test CA when started with TLS.
    pub fn http_client(&self) -> &reqwest::Client {
        &self.http_client
    }

    /// The Prometheus text of `/metrics` (every role's metrics, in one process).
    pub async fn metrics(&self) -> String {
        self.http_client
            .get(format!("{}/metrics", self.http))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Waits until logic's online total shows `conns` connections (reports arrive every second).
    pub async fn wait_online(&self, conns: u64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let (_, v) = self.get("/goim/online/total").await;
            if v["data"]["conn_count"].as_u64() == Some(conns) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "online total never reached {conns}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Sends a request; returns the HTTP status and the JSON answer (which it must be).
pub async fn send_for_json(req: reqwest::RequestBuilder, path: &str) -> (u16, Value) {
    let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("HTTP body");
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{path}: response is not JSON ({e}): {text}"));
    (status, json)
}

/// The next application message (skipping heartbeat replies).
pub async fn next_msg(c: &mut GoimClient) -> Frame {
    loop {
        let f = c.recv_timeout(WAIT).await.expect("a message within 10 s");
        if f.op != imcloud_proto::op::HEARTBEAT_REPLY {
            return f;
        }
    }
}

/// Asserts the next application message has this op and body.
pub async fn expect_msg(c: &mut GoimClient, op: i32, body: &[u8]) {
    let f = next_msg(c).await;
    assert_eq!(
        (f.op, &f.body[..]),
        (op, body),
        "unexpected message {:?}",
        String::from_utf8_lossy(&f.body)
    );
}

/// Waits for the server to close the connection; returns its reason.
pub async fn expect_closed(c: &mut GoimClient) -> String {
    loop {
        match c.recv_timeout(WAIT).await {
            Ok(f) if f.op == imcloud_proto::op::HEARTBEAT_REPLY => continue,
            Ok(f) => panic!(
                "expected the connection to close, got op {} {:?}",
                f.op,
                String::from_utf8_lossy(&f.body)
            ),
            Err(ClientError::Closed(reason)) => return reason,
            Err(e) => panic!("expected a close, got {e}"),
        }
    }
}
