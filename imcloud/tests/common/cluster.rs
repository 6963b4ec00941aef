//! Cluster harness: the real binary as separate OS processes (comets, logic, jobs, api) on etcd, Kafka and
//! Redis, configured only through `IMCLOUD_*` environment variables. Each cluster has its own etcd prefix,
//! Kafka topic and group, and Redis prefix, so clusters of parallel tests never meet. Every process logs to
//! a file; when a test fails, the tail of each log is printed.
//!
//! The logic's IM database is a SQLite file in the cluster's log directory. It runs several logics, adds
//! nodes during a test (surge pods), waits for readiness, stops a node with SIGTERM and a deadline or kills
//! it (SIGKILL), reads etcd entries, scrapes a node's metrics and flushes the cluster's Redis keys.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imcloud::client::{GoimClient, auth_body, sign_token};
use imcloud_common::test_name::unique_test_name;
use imcloud_proto::{Frame, op};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{API_KEY, INTERNAL_TOKEN, SECRET, WAIT, free_ports, send_for_json};

pub fn etcd_endpoints() -> String {
    std::env::var("IMCLOUD_TEST_ETCD_ENDPOINTS").unwrap_or_else(|_| "127.0.0.1:2379".into())
}

pub fn kafka_brokers() -> String {
    std::env::var("IMCLOUD_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn redis_url() -> String {
    std::env::var("IMCLOUD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// One process of the cluster.
pub struct Node {
    pub name: String,
    child: Child,
    log: PathBuf,
    /// Where its Prometheus /metrics answers (comets and jobs).
    pub metrics: Option<String>,
    /// Comets: the websocket URL.
    pub ws_url: Option<String>,
}

pub struct Cluster {
    pub tag: String,
    pub etcd_prefix: String,
    pub redis_prefix: String,
    pub heartbeat_secs: u64,
    pub lease_ttl_secs: u64,
    env: Vec<(String, String)>,
    node_env: Vec<(String, String, String)>,
    logs: PathBuf,
    pub nodes: BTreeMap<String, Node>,
    pub http: String,
    http_client: reqwest::Client,
    /// The PostgreSQL database of the IM stores.
    database: String,
    /// The etcd the nodes register in (`IMCLOUD_ETCD_ENDPOINTS`, which a spec may set).
    etcd: String,
}

pub struct ClusterSpec {
    pub comets: usize,
    pub jobs: usize,
    pub logics: usize,
    pub heartbeat_secs: u64,
    pub lease_ttl_secs: u64,
    /// More environment for every process (e.g. OTEL_* or drain settings).
    pub env: Vec<(String, String)>,
    /// Environment for one node only, by name (`comet2`, `logic`), over its defaults: e.g. its gRPC
    /// listener and the address it advertises, to put a fault proxy in front of it.
    pub node_env: Vec<(String, String, String)>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            comets: 2,
            jobs: 2,
            logics: 1,
            heartbeat_secs: 30,
            lease_ttl_secs: 5,
            env: Vec::new(),
            node_env: Vec::new(),
        }
    }
}

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

impl Cluster {
    /// Starts logic, the comets, the jobs and the api, and waits until all of them are registered in etcd
    /// and the api and comet listeners answer.
    /// A port picked free can be taken by another test's socket before the process binds it; the process
    /// then exits at start-up, and the whole cluster is started again on new ports.
    pub async fn start(spec: ClusterSpec) -> Cluster {
        for attempt in 1..=3 {
            if let Some(c) = Cluster::try_start(&spec).await {
                return c;
            }
            eprintln!(
                "a cluster process exited during start-up (attempt {attempt}); retrying on new ports"
            );
        }
        panic!("the cluster did not start in 3 attempts");
    }

    async fn try_start(spec: &ClusterSpec) -> Option<Cluster> {
        let tag = unique_test_name("imcloud-cluster");
        let logs = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&logs).expect("log dir");
        let etcd_prefix = format!("/{tag}/nodes/");
        // The IM stores on their own PostgreSQL database, dropped with the cluster.
        let database = super::im::test_database();
        let redis_prefix = format!("{tag}:");
        let env: Vec<(String, String)> = [
            ("IMCLOUD_AUTH_SECRET", SECRET.to_string()),
            ("IMCLOUD_API_KEY", API_KEY.to_string()),
            ("IMCLOUD_INTERNAL_TOKEN", INTERNAL_TOKEN.to_string()),
            // Every client of a test comes from 127.0.0.1: the per-IP limits (tested on a standalone in
            // security.rs) would stop the larger tests.
            ("IMCLOUD_COMET_MAX_CONNS_PER_IP", "0".to_string()),
            ("IMCLOUD_COMET_CONNECTS_PER_SEC_PER_IP", "0".to_string()),
            ("IMCLOUD_ETCD_ENDPOINTS", etcd_endpoints()),
            ("IMCLOUD_ETCD_PREFIX", etcd_prefix.clone()),
            (
                "IMCLOUD_ETCD_LEASE_TTL_SECS",
                spec.lease_ttl_secs.to_string(),
            ),
            ("IMCLOUD_KAFKA_BROKERS", kafka_brokers()),
            ("IMCLOUD_KAFKA_TOPIC", tag.clone()),
            ("IMCLOUD_KAFKA_GROUP", tag.clone()),
            ("IMCLOUD_KAFKA_PARTITIONS", "4".to_string()),
            ("IMCLOUD_KAFKA_SESSION_TIMEOUT_MS", "6000".to_string()),
            ("IMCLOUD_REDIS_URL", redis_url()),
            ("IMCLOUD_REDIS_PREFIX", redis_prefix.clone()),
            ("IMCLOUD_DATABASE_URL", database.0.clone()),
            ("IMCLOUD_HEARTBEAT_SECS", spec.heartbeat_secs.to_string()),
            (
                "IMCLOUD_SESSION_TTL_SECS",
                (spec.heartbeat_secs * 10).max(60).to_string(),
            ),
            ("IMCLOUD_ONLINE_RENEW_SECS", "1".to_string()),
            ("IMCLOUD_ADVERTISE_HOST", "127.0.0.1".to_string()),
            // Nobody listens here: comets and api must find logic through etcd.
            ("IMCLOUD_LOGIC_ADDR", "127.0.0.1:1".to_string()),
            (
                "RUST_LOG",
                std::env::var("IMCLOUD_TEST_RUST_LOG").unwrap_or_else(|_| {
                    "info,h2=warn,tower=warn,hyper=warn,librdkafka=warn".into()
                }),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(spec.env.iter().cloned())
        .collect();
        let etcd = env
            .iter()
            .rev()
            .find(|(k, _)| k == "IMCLOUD_ETCD_ENDPOINTS")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(etcd_endpoints);
        let mut c = Cluster {
            etcd,
            tag,
            etcd_prefix,
            redis_prefix,
            heartbeat_secs: spec.heartbeat_secs,
            lease_ttl_secs: spec.lease_ttl_secs,
            env,
            node_env: spec.node_env.clone(),
            logs,
            nodes: BTreeMap::new(),
            http: String::new(),
            http_client: {
                imcloud_common::tls::install_default_provider();
                reqwest::Client::new()
            },
            database: database.1,
        };
        let logics: Vec<String> = if spec.logics <= 1 {
            vec!["logic".to_string()]
        } else {
            (1..=spec.logics).map(|i| format!("logic{i}")).collect()
        };
        for name in &logics {
            c.spawn_logic(name);
        }
        // As a deployment would: the nodes that call logic start once it is registered.
        if !c.wait_registered(&logics).await {
            return None;
        }
        for i in 1..=spec.comets {
            c.spawn_comet(&format!("comet{i}"));
        }
        for i in 1..=spec.jobs {
            c.spawn_job(&format!("job{i}"));
        }
        let p = free_ports(1);
        c.http = format!("http://{}", addr(p[0]));
        c.spawn("api", "api", &[("IMCLOUD_API_HTTP_ADDR", addr(p[0]))]);

        let names: Vec<String> = c.nodes.keys().cloned().collect();
        (c.wait_registered(&names).await && c.wait_http().await).then_some(c)
    }

    /// The name of a process that has exited, if any.
    fn exited(&mut self) -> Option<String> {
        self.nodes
            .values_mut()
            .find_map(|n| matches!(n.child.try_wait(), Ok(Some(_))).then(|| n.name.clone()))
    }

    /// Starts a logic process named `name` (`logic` or `logic<N>`) on fresh ports.
    pub fn spawn_logic(&mut self, name: &str) {
        let p = free_ports(2);
        self.spawn(
            "logic",
            name,
            &[
                ("IMCLOUD_LOGIC_GRPC_ADDR", addr(p[0])),
                ("IMCLOUD_METRICS_ADDR", addr(p[1])),
            ],
        );
        self.nodes.get_mut(name).expect("logic").metrics = Some(addr(p[1]));
    }

    /// Starts the api again on the address it had (after a kill, as its Deployment would), and waits
    /// until it answers.
    pub async fn restart_api(&mut self) {
        if let Some(mut old) = self.nodes.remove("api") {
            let _ = old.child.kill();
            let _ = old.child.wait();
        }
        let address = self.http.trim_start_matches("http://").to_string();
        self.spawn("api", "api", &[("IMCLOUD_API_HTTP_ADDR", address)]);
        assert!(self.wait_http().await, "the api exited at start-up");
    }

    /// Starts a job process named `name` (`job<N>`) with its metrics listener.
    pub fn spawn_job(&mut self, name: &str) {
        let p = free_ports(1);
        self.spawn("job", name, &[("IMCLOUD_METRICS_ADDR", addr(p[0]))]);
        self.nodes.get_mut(name).expect("job").metrics = Some(addr(p[0]));
    }

    /// Waits until a node's `/readyz` answers 200 (comets, logic, jobs: on their metrics listener).
    pub async fn wait_ready(&mut self, name: &str, within: Duration) {
        let url = format!(
            "http://{}/readyz",
            self.nodes[name].metrics.as_ref().expect("metrics listener")
        );
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = self.http_client.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(n) = self.exited() {
                panic!("{n} exited while waiting for {name} to be ready");
            }
            assert!(
                Instant::now() < deadline,
                "{name} not ready within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, as a Deployment rollout sends it; waits for the process to exit (at most `within`) and
    /// returns its exit status. The node leaves the cluster's list.
    pub async fn terminate(&mut self, name: &str, within: Duration) -> std::process::ExitStatus {
        let mut n = self.nodes.remove(name).expect("node");
        let pid = n.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = n.child.try_wait() {
                if !status.success() {
                    let text = std::fs::read_to_string(&n.log).unwrap_or_default();
                    eprintln!("---- {name} exited with {status}; its log ----\n{text}");
                }
                return status;
            }
            if Instant::now() >= deadline {
                let _ = n.child.kill();
                panic!("{name} did not exit within {within:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `name` is registered in etcd (a node started during the test).
    pub async fn wait_registered_one(&mut self, name: &str) {
        assert!(
            self.wait_registered(&[name.to_string()]).await,
            "{name} exited during start-up"
        );
    }

    /// Starts a comet process named `name` on fresh ports.
    pub fn spawn_comet(&mut self, name: &str) {
        let p = free_ports(4);
        self.spawn(
            "comet",
            name,
            &[
                ("IMCLOUD_COMET_WS_ADDR", addr(p[0])),
                ("IMCLOUD_COMET_TCP_ADDR", addr(p[1])),
                ("IMCLOUD_COMET_GRPC_ADDR", addr(p[2])),
                ("IMCLOUD_METRICS_ADDR", addr(p[3])),
            ],
        );
        let n = self.nodes.get_mut(name).expect("comet");
        n.metrics = Some(addr(p[3]));
        n.ws_url = Some(format!("ws://{}/sub", addr(p[0])));
    }

    fn spawn(&mut self, role: &str, name: &str, extra: &[(&str, String)]) {
        let log = self.logs.join(format!("{name}.log"));
        let file = File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imcloud"));
        cmd.arg(role)
            .env("IMCLOUD_NODE_ID", name)
            .stdout(Stdio::from(file.try_clone().expect("log file")))
            .stderr(Stdio::from(file));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        for (_, k, v) in self.node_env.iter().filter(|(n, _, _)| n == name) {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start imcloud");
        self.nodes.insert(
            name.to_string(),
            Node {
                name: name.to_string(),
                child,
                log,
                metrics: None,
                ws_url: None,
            },
        );
    }

    /// Asserts no process has exited (a port race or a crash), naming the one that did.
    pub fn check_alive(&mut self) {
        for n in self.nodes.values_mut() {
            if let Ok(Some(status)) = n.child.try_wait() {
                panic!("{} exited during the test ({status})", n.name);
            }
        }
    }

    /// The registry entries under this cluster's prefix: key -> (lease id, JSON value).
    pub async fn etcd_entries(&self) -> HashMap<String, (i64, Value)> {
        let mut etcd = etcd_client::Client::connect([self.etcd.as_str()], None)
            .await
            .unwrap_or_else(|e| panic!("etcd at {}: {e}", self.etcd));
        let resp = etcd
            .get(
                self.etcd_prefix.as_str(),
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await
            .expect("etcd get");
        resp.kvs()
            .iter()
            .map(|kv| {
                let key = kv.key_str().unwrap_or_default().to_string();
                let value = serde_json::from_slice(kv.value()).unwrap_or(Value::Null);
                (key, (kv.lease(), value))
            })
            .collect()
    }

    /// The etcd key of a node (`<prefix><role>/<id>`).
    pub fn etcd_key(&self, name: &str) -> String {
        let role = name.trim_end_matches(|c: char| c.is_ascii_digit());
        format!("{}{role}/{name}", self.etcd_prefix)
    }

    /// `false` if a process exited first.
    async fn wait_registered(&mut self, names: &[String]) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(name) = self.exited() {
                eprintln!("{name} exited during start-up");
                return false;
            }
            let entries = self.etcd_entries().await;
            let missing: Vec<&String> = names
                .iter()
                .filter(|n| !entries.contains_key(&self.etcd_key(n)))
                .collect();
            if missing.is_empty() {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "not registered in etcd within 60 s: {missing:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `false` if a process exited first.
    async fn wait_http(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .http_client
            .get(format!("{}/healthz", self.http))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if let Some(name) = self.exited() {
                eprintln!("{name} exited during start-up");
                return false;
            }
            assert!(Instant::now() < deadline, "api did not answer within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// SIGKILL: no deregistration, no draining, no Kafka group leave.
    pub fn kill(&mut self, name: &str) {
        let n = self.nodes.get_mut(name).expect("node");
        let _ = n.child.kill();
        let _ = n.child.wait();
    }

    /// Sends a signal (`STOP`, `CONT`, `TERM`…) to a node, which stays in the cluster's list.
    pub fn signal(&self, name: &str, signal: &str) {
        let pid = self.nodes[name].child.id().to_string();
        let status = Command::new("kill")
            .args([format!("-{signal}").as_str(), &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {name}");
    }

    /// The address of a node's metrics listener.
    pub fn metrics_addr(&self, name: &str) -> String {
        self.nodes[name]
            .metrics
            .clone()
            .expect("a metrics listener")
    }

    /// POSTs a push through the api; returns the HTTP status and the JSON envelope.
    pub async fn push(&self, path: &str, query: &str, body: &str) -> (u16, Value) {
        self.request(
            reqwest::Method::POST,
            &format!("/goim/push/{path}?{query}"),
            body.to_string(),
        )
        .await
    }

    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path_and_query, String::new())
            .await
    }

    async fn request(&self, method: reqwest::Method, path: &str, body: String) -> (u16, Value) {
        let req = self
            .http_client
            .request(method, format!("{}{path}", self.http))
            .bearer_auth(API_KEY)
            .body(body)
            .timeout(Duration::from_secs(30));
        send_for_json(req, path).await
    }

    /// The sum of a metric (all label sets) on a node's /metrics; 0 when it was never recorded.
    pub async fn metric(&self, name: &str, metric: &str) -> f64 {
        let node = &self.nodes[name];
        let url = format!("http://{}/metrics", node.metrics.as_ref().expect("metrics"));
        let text = self
            .http_client
            .get(url)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .filter(|l| {
                l.strip_prefix(metric)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// A node's process gauges (`imcloud/src/process_gauges.rs`, sampled every 2 s).
    /// Waits one sampling period first, so that the figures are of now, not of the last sample.
    pub async fn gauges(&self, name: &str) -> Gauges {
        tokio::time::sleep(imcloud::process_gauges::PERIOD + Duration::from_millis(500)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let g = Gauges {
                fds: self.metric(name, "imcloud_process_open_fds").await,
                tasks: self.metric(name, "imcloud_tokio_alive_tasks").await,
                rss: self.metric(name, "imcloud_process_resident_bytes").await,
            };
            // Zero until the first sample.
            if g.fds > 0.0 && g.tasks > 0.0 && g.rss > 0.0 {
                return g;
            }
            assert!(Instant::now() < deadline, "{name} shows no process gauges");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Invariant 5 after a fault is healed: `name`'s open descriptors and live tasks come back to at most
    /// their level in `before` (plus a few, for connections between nodes that were re-dialled), and its
    /// resident memory to at most a quarter (and 8 MiB) above it, within 20 s. Returns the gauges then.
    pub async fn assert_no_leak(&self, name: &str, before: Gauges) -> Gauges {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.gauges(name).await;
            let rss_limit = before.rss + (before.rss / 4.0).max(8.0 * 1024.0 * 1024.0);
            if now.fds <= before.fds + 4.0
                && now.tasks <= before.tasks + 8.0
                && now.rss <= rss_limit
            {
                eprintln!("{name}: before the fault {before:?}, after healing {now:?}");
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "{name} leaks: before the fault {before:?}, 20 s after healing {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Deletes every Redis key of this cluster, as a Redis restart would lose them.
    pub async fn flush_redis(&self) -> usize {
        use redis::AsyncCommands;
        let client = redis::Client::open(redis_url()).expect("Redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis");
        let keys: Vec<String> = conn
            .keys(format!("{}*", self.redis_prefix))
            .await
            .expect("KEYS");
        if !keys.is_empty() {
            let _: () = conn.del(&keys).await.expect("DEL");
        }
        keys.len()
    }

    /// Pushes `body` to the client's mid until the client has it (pushes wait in Kafka until the consumer
    /// group formed); returns how long that took.
    pub async fn push_until_delivered(
        &self,
        client: &mut LiveClient,
        body: &str,
        within: Duration,
    ) -> Duration {
        let started = Instant::now();
        let query = format!("operation=1000&mids={}", client.mid);
        loop {
            let (status, v) = self.push("mids", &query, body).await;
            assert_eq!(status, 200, "{v}");
            while let Some(ev) = client.next(Duration::from_secs(1)).await {
                if let Event::Msg(f, _) = ev
                    && f.body.as_ref() == body.as_bytes()
                {
                    return started.elapsed();
                }
            }
            assert!(
                started.elapsed() < within,
                "{body:?} not delivered within {within:?}"
            );
        }
    }

    /// Pushes `n` messages `<tag><i>` by mid to `mid`, `every` apart; returns the bodies acknowledged
    /// (200). A 503 is logged and not counted; any other answer fails the test.
    pub async fn push_numbered(
        &self,
        mid: i64,
        tag: &str,
        n: usize,
        every: Duration,
    ) -> Vec<String> {
        let mut acknowledged = Vec::new();
        for i in 0..n {
            let body = format!("{tag}{i}");
            let (status, v) = self
                .push("mids", &format!("operation=1000&mids={mid}"), &body)
                .await;
            match status {
                200 => acknowledged.push(body),
                503 => eprintln!("{body}: 503 {v}"),
                _ => panic!("push {body}: {status} {v}"),
            }
            tokio::time::sleep(every).await;
        }
        acknowledged
    }

    /// Waits until etcd lists exactly the registry keys of `live` nodes (invariant 4); returns how long it
    /// took from `since`, failing after `within`.
    pub async fn wait_registry_lists_exactly(
        &self,
        live: &[&str],
        since: Instant,
        within: Duration,
    ) -> Duration {
        let want: std::collections::BTreeSet<String> =
            live.iter().map(|n| self.etcd_key(n)).collect();
        loop {
            let listed: std::collections::BTreeSet<String> =
                match tokio::time::timeout(Duration::from_secs(2), self.etcd_entries()).await {
                    Ok(e) => e.into_keys().collect(),
                    Err(_) => Default::default(),
                };
            if listed == want {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < within,
                "{:?} after healing etcd lists {listed:?}, not the live nodes {want:?}",
                since.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// [`Cluster::wait_registry_lists_exactly`] every node of the cluster.
    pub async fn wait_registry_lists_every_node(
        &self,
        since: Instant,
        within: Duration,
    ) -> Duration {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        let live: Vec<&str> = names.iter().map(String::as_str).collect();
        self.wait_registry_lists_exactly(&live, since, within).await
    }

    /// A client of `mid` on the comet `name`, heartbeating in the background.
    pub async fn client(&self, comet: &str, mid: i64, key: &str, room: &str) -> LiveClient {
        let url = self.nodes[comet].ws_url.clone().expect("a comet");
        LiveClient::connect(
            &url,
            mid,
            key,
            room,
            Duration::from_secs(self.heartbeat_secs),
        )
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
        super::im::drop_test_database(&self.database);
        if std::thread::panicking() {
            for n in self.nodes.values() {
                let text = std::fs::read_to_string(&n.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("---- last lines of {} ({}) ----", n.name, n.log.display());
                for l in &lines[lines.len().saturating_sub(40)..] {
                    eprintln!("{l}");
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.logs);
        }
    }
}

/// A process's descriptors, tokio tasks and resident bytes, from its `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    pub fds: f64,
    pub tasks: f64,
    pub rss: f64,
}

/// What a [`LiveClient`] saw.
#[derive(Debug)]
pub enum Event {
    /// An application message, with when it arrived.
    Msg(Frame, Instant),
    Closed(String),
}

/// A websocket client whose connection lives in a task that heartbeats and forwards every application
/// message, so tests can wait for pushes while the session stays alive.
pub struct LiveClient {
    pub mid: i64,
    pub key: String,
    rx: mpsc::UnboundedReceiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl LiveClient {
    pub async fn connect(
        url: &str,
        mid: i64,
        key: &str,
        room: &str,
        heartbeat: Duration,
    ) -> LiveClient {
        let mut c = GoimClient::connect_ws(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let token = sign_token(SECRET, mid, 600).expect("sign");
        c.auth(auth_body(mid, key, room, &[], &token), WAIT)
            .await
            .unwrap_or_else(|e| panic!("auth mid {mid} at {url}: {e}"));
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(heartbeat);
            tick.tick().await;
            loop {
                tokio::select! {
                    f = c.recv() => match f {
                        Ok(f) if f.op == op::HEARTBEAT_REPLY => {}
                        Ok(f) => { let _ = tx.send(Event::Msg(f, Instant::now())); }
                        Err(e) => { let _ = tx.send(Event::Closed(e.to_string())); return; }
                    },
                    _ = tick.tick() => {
                        if let Err(e) = c.send(op::HEARTBEAT, Vec::new()).await {
                            let _ = tx.send(Event::Closed(e.to_string()));
                            return;
                        }
                    }
                }
            }
        });
        LiveClient {
            mid,
            key: key.to_string(),
            rx,
            task,
        }
    }

    /// The next event within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Event> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Bodies of the application messages received within `wait` (stops early at a close).
    pub async fn drain(&mut self, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        while let Some(ev) = self
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            match ev {
                Event::Msg(f, _) => out.push(String::from_utf8_lossy(&f.body).into_owned()),
                Event::Closed(_) => break,
            }
        }
        out
    }
}

/// What a client saw: how often each body arrived, in arrival order of first sight, and the close, if it
/// was closed.
pub struct Seen {
    pub counts: BTreeMap<String, usize>,
    pub order: Vec<String>,
    pub closed: Option<String>,
}

impl Seen {
    pub fn missing<'a>(&self, wanted: &'a [String]) -> Vec<&'a String> {
        wanted
            .iter()
            .filter(|b| !self.counts.contains_key(*b))
            .collect()
    }

    pub fn duplicates(&self) -> usize {
        self.counts.values().map(|n| n - 1).sum()
    }

    /// Whether the bodies of `wanted` that arrived came in `wanted`'s order (first sightings).
    pub fn in_order(&self, wanted: &[String]) -> bool {
        let pos: HashMap<&String, usize> = wanted.iter().enumerate().map(|(i, b)| (b, i)).collect();
        let seen: Vec<usize> = self
            .order
            .iter()
            .filter_map(|b| pos.get(b).copied())
            .collect();
        seen.windows(2).all(|w| w[0] < w[1])
    }
}

impl LiveClient {
    /// Reads until every body of `wanted` arrived, the connection closed, or `within` passed.
    pub async fn collect(&mut self, wanted: &[String], within: Duration) -> Seen {
        let deadline = Instant::now() + within;
        let mut seen = Seen {
            counts: BTreeMap::new(),
            order: Vec::new(),
            closed: None,
        };
        while !seen.missing(wanted).is_empty() {
            match self
                .next(deadline.saturating_duration_since(Instant::now()))
                .await
            {
                Some(Event::Msg(f, _)) => {
                    let body = String::from_utf8_lossy(&f.body).into_owned();
                    let n = seen.counts.entry(body.clone()).or_default();
                    if *n == 0 {
                        seen.order.push(body);
                    }
                    *n += 1;
                }
                Some(Event::Closed(why)) => {
                    seen.closed = Some(why);
                    break;
                }
                None => break,
            }
        }
        seen
    }
}

impl Drop for LiveClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}
