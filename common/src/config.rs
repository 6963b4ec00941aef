//! The configuration contract: defaults < TOML file (`--config`) < environment (`IMCLOUD_*`) < flags.
//!
//! Every setting is one field below; the macro gives each a default, a TOML key (the field name),
//! an environment variable and a flag (`--field-name`), so the four layers can never drift apart.
//! `Config::load` layers them (an unknown TOML key or a missing file is an error), `Config::validate`
//! refuses values no role can run with, `Config::list` splits comma-separated values, and `redact_url`
//! masks a password in a URL before it is printed. Every setting: docs/deployment.md.

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error(transparent)]
    Figment(#[from] Box<figment::Error>),
}

macro_rules! settings {
    ($( $(#[doc = $doc:literal])* $name:ident : $ty:ty = $default:expr, $env:literal; )*) => {
        /// The resolved configuration of a node.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        impl Default for Config {
            fn default() -> Self {
                Config { $( $name: $default, )* }
            }
        }

        /// The environment/flag layer of [`Config`]; unset values fall through to the file and the defaults.
        #[derive(Debug, Clone, Default, clap::Args, Serialize)]
        pub struct ConfigArgs {
            /// TOML configuration file (keys are the field names, e.g. comet_ws_addr = "0.0.0.0:3102")
            #[arg(long, env = "IMCLOUD_CONFIG", value_name = "FILE")]
            #[serde(skip)]
            pub config: Option<String>,
            $(
                $(#[doc = $doc])*
                #[arg(long, env = $env)]
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $name: Option<$ty>,
            )*
        }
    };
}

settings! {
    /// This node's id in the registry [default: hostname-port; job: hostname-job<pid>]
    node_id: String = String::new(), "IMCLOUD_NODE_ID";
    /// HS256 secret for connection tokens [default: generated and printed in standalone]
    auth_secret: String = String::new(), "IMCLOUD_AUTH_SECRET";
    /// Bearer key of trusted backends for the push and token APIs [default: generated and printed in standalone]
    api_key: String = String::new(), "IMCLOUD_API_KEY";
    /// etcd endpoints, comma-separated; unset = embedded registry
    etcd_endpoints: String = String::new(), "IMCLOUD_ETCD_ENDPOINTS";
    /// Kafka brokers, comma-separated; unset = embedded queue
    kafka_brokers: String = String::new(), "IMCLOUD_KAFKA_BROKERS";
    /// Kafka push topic (created at start-up when missing)
    kafka_topic: String = "imcloud-push".into(), "IMCLOUD_KAFKA_TOPIC";
    /// Partitions of the push topic when imcloud creates it (jobs share them; more partitions, more jobs)
    kafka_partitions: i32 = 8, "IMCLOUD_KAFKA_PARTITIONS";
    /// Replication factor of the push topic when imcloud creates it
    kafka_replication: i32 = 1, "IMCLOUD_KAFKA_REPLICATION";
    /// Kafka consumer group of the job workers
    kafka_group: String = "imcloud-job".into(), "IMCLOUD_KAFKA_GROUP";
    /// Milliseconds without a job's heartbeat before Kafka gives its partitions to the other jobs (the broker's group.min.session.timeout.ms, 6000 by default, is the floor)
    kafka_session_timeout_ms: u32 = 6000, "IMCLOUD_KAFKA_SESSION_TIMEOUT_MS";
    /// Redis URL; unset = embedded session store. With IMCLOUD_REDIS_CLUSTER, a comma-separated list of cluster nodes to start from
    redis_url: String = String::new(), "IMCLOUD_REDIS_URL";
    /// The Redis URLs are nodes of a Redis Cluster (the client follows its slot map)
    redis_cluster: bool = false, "IMCLOUD_REDIS_CLUSTER";
    /// Prefix of every Redis key this deployment writes (several deployments can share one Redis)
    redis_prefix: String = "imcloud:".into(), "IMCLOUD_REDIS_PREFIX";
    /// etcd key prefix nodes register under (`<prefix><role>/<node_id>`)
    etcd_prefix: String = "/imcloud/nodes/".into(), "IMCLOUD_ETCD_PREFIX";
    /// Seconds an etcd registration outlives its node's last keep-alive
    etcd_lease_ttl_secs: u64 = 10, "IMCLOUD_ETCD_LEASE_TTL_SECS";
    /// postgres://… or sqlite://… for the IM stores [default: sqlite://data/imcloud.db]
    database_url: String = String::new(), "IMCLOUD_DATABASE_URL";
    /// IM: seconds a login token (POST /v1/sessions) lasts
    im_login_ttl_secs: u64 = 7 * 24 * 3600, "IMCLOUD_IM_LOGIN_TTL_SECS";
    /// IM: private chat only between friends
    im_private_chat_friends_only: bool = true, "IMCLOUD_IM_PRIVATE_CHAT_FRIENDS_ONLY";
    /// IM: groups one user may own
    im_max_groups_owned: i64 = 50, "IMCLOUD_IM_MAX_GROUPS_OWNED";
    /// IM: largest group size a group may be given
    im_max_group_size: i64 = 2000, "IMCLOUD_IM_MAX_GROUP_SIZE";
    /// IM: largest upload in bytes
    im_upload_max_bytes: usize = 4 * 1024 * 1024, "IMCLOUD_IM_UPLOAD_MAX_BYTES";
    /// IM: multi (every device connects) or replace (a new login connection closes the user's older ones on the same platform)
    im_device_policy: String = "multi".into(), "IMCLOUD_IM_DEVICE_POLICY";
    /// IM: failed logins allowed per email per minute (five times that per client address)
    im_login_attempts_per_minute: u32 = 10, "IMCLOUD_IM_LOGIN_ATTEMPTS_PER_MINUTE";
    /// IM: on, or off to run the push platform alone (no IM database, no /v1 IM routes, no connection hooks)
    im: String = "on".into(), "IMCLOUD_IM";
    /// IM: seconds after sending during which an author may edit a text message
    im_edit_window_secs: u64 = 900, "IMCLOUD_IM_EDIT_WINDOW_SECS";
    /// IM: seconds after sending during which an author may recall a message (group owners and admins: any time)
    im_recall_window_secs: u64 = 120, "IMCLOUD_IM_RECALL_WINDOW_SECS";
    /// IM: shortest interval between two typing events of one user in one conversation, in milliseconds
    im_typing_interval_ms: u64 = 1000, "IMCLOUD_IM_TYPING_INTERVAL_MS";
    /// IM: messages (sends, edits, recalls, reactions) per user per second, per logic node; 0 = no limit
    im_sends_per_sec: u32 = 20, "IMCLOUD_IM_SENDS_PER_SEC";
    /// IM: friend requests per user per 24 hours; 0 = no limit
    im_friend_requests_per_day: i64 = 100, "IMCLOUD_IM_FRIEND_REQUESTS_PER_DAY";
    /// IM: groups created per user per 24 hours; 0 = no limit
    im_groups_per_day: i64 = 20, "IMCLOUD_IM_GROUPS_PER_DAY";
    /// IM: uploads per user per hour; 0 = no limit
    im_uploads_per_hour: i64 = 100, "IMCLOUD_IM_UPLOADS_PER_HOUR";
    /// IM: upload bytes per user per 24 hours; 0 = no limit
    im_upload_bytes_per_day: i64 = 512 * 1024 * 1024, "IMCLOUD_IM_UPLOAD_BYTES_PER_DAY";
    /// IM: webhook URL for trusted backends (unset = no webhooks)
    im_webhook_url: String = String::new(), "IMCLOUD_IM_WEBHOOK_URL";
    /// IM: HMAC-SHA256 key that signs webhook requests (at least 16 bytes)
    im_webhook_secret: String = String::new(), "IMCLOUD_IM_WEBHOOK_SECRET";
    /// IM: webhook events, comma-separated: before_send, after_send, offline, friend, group
    im_webhook_events: String = "after_send,offline,friend,group".into(), "IMCLOUD_IM_WEBHOOK_EVENTS";
    /// IM: milliseconds the before-send webhook may take
    im_webhook_timeout_ms: u64 = 1000, "IMCLOUD_IM_WEBHOOK_TIMEOUT_MS";
    /// IM: when the before-send webhook fails or times out, send anyway (true) or refuse with 503 (false)
    im_webhook_fail_open: bool = true, "IMCLOUD_IM_WEBHOOK_FAIL_OPEN";
    /// Comet websocket listener (path /sub)
    comet_ws_addr: SocketAddr = ([0, 0, 0, 0], 3102).into(), "IMCLOUD_COMET_WS_ADDR";
    /// Comet goim TCP listener
    comet_tcp_addr: SocketAddr = ([0, 0, 0, 0], 3101).into(), "IMCLOUD_COMET_TCP_ADDR";
    /// Comet gRPC listener (job delivers here)
    comet_grpc_addr: SocketAddr = ([0, 0, 0, 0], 3109).into(), "IMCLOUD_COMET_GRPC_ADDR";
    /// Logic gRPC listener
    logic_grpc_addr: SocketAddr = ([0, 0, 0, 0], 3119).into(), "IMCLOUD_LOGIC_GRPC_ADDR";
    /// Where comet and api reach logic (host:port)
    logic_addr: String = "127.0.0.1:3119".into(), "IMCLOUD_LOGIC_ADDR";
    /// Comet, logic and job processes: listener for Prometheus `/metrics` and `/healthz` (unset = none;
    /// api and standalone serve /metrics on the HTTP API listener)
    metrics_addr: String = String::new(), "IMCLOUD_METRICS_ADDR";
    /// Api HTTP listener (push API, JSON API)
    api_http_addr: SocketAddr = ([0, 0, 0, 0], 3111).into(), "IMCLOUD_API_HTTP_ADDR";
    /// Host or IP advertised in the registry for listeners bound to 0.0.0.0 [default: this host's IP]
    advertise_host: String = String::new(), "IMCLOUD_ADVERTISE_HOST";
    /// Comet and logic: host:port the other nodes dial for this node's gRPC, when it is not the bound address (a port mapping, NAT, a proxy in front of the node); empty = the bound address
    grpc_advertise_addr: String = String::new(), "IMCLOUD_GRPC_ADVERTISE_ADDR";
    /// Comet: number of buckets connections are sharded into by key hash
    comet_buckets: usize = 32, "IMCLOUD_COMET_BUCKETS";
    /// Comet: relative weight among comets for new clients
    comet_weight: u32 = 1, "IMCLOUD_COMET_WEIGHT";
    /// Seconds between client heartbeats (told to clients by /goim/nodes/weighted)
    heartbeat_secs: u64 = 30, "IMCLOUD_HEARTBEAT_SECS";
    /// Comet: close a connection after this many heartbeat intervals without a heartbeat
    heartbeat_max_misses: u32 = 3, "IMCLOUD_HEARTBEAT_MAX_MISSES";
    /// Comet: milliseconds a new connection has to upgrade and authenticate
    handshake_timeout_ms: u64 = 5000, "IMCLOUD_HANDSHAKE_TIMEOUT_MS";
    /// Comet: bytes of outbound frames queued per connection (plus one frame); a connection over it is closed as a slow consumer
    conn_queue_bytes: usize = 1 << 20, "IMCLOUD_CONN_QUEUE_BYTES";
    /// Comet: bytes queued over all connections; beyond it, connections already behind are closed as slow consumers
    comet_outbox_budget_bytes: usize = 512 << 20, "IMCLOUD_COMET_OUTBOX_BUDGET_BYTES";
    /// Comet: largest client-to-server frame body in bytes (goim: 4096)
    max_client_body: usize = 4096, "IMCLOUD_MAX_CLIENT_BODY";
    /// Comet: seconds between room-count reports to logic
    online_renew_secs: u64 = 10, "IMCLOUD_ONLINE_RENEW_SECS";
    /// Logic: seconds a session lives without a heartbeat renewal
    session_ttl_secs: u64 = 180, "IMCLOUD_SESSION_TTL_SECS";
    /// Embedded queue: messages buffered between logic and job before producers wait
    queue_capacity: usize = 65536, "IMCLOUD_QUEUE_CAPACITY";
    /// Job: most messages merged into one room batch
    room_batch_max: usize = 32, "IMCLOUD_ROOM_BATCH_MAX";
    /// Job: milliseconds a room batch waits for more messages before it is flushed
    room_flush_ms: u64 = 5, "IMCLOUD_ROOM_FLUSH_MS";
    /// Room history: persistent messages kept per room for recovery (op 23); the oldest go beyond it
    room_history_size: usize = 100, "IMCLOUD_ROOM_HISTORY_SIZE";
    /// Room history: seconds a room's history lives after its last persistent push; then it is dropped and the room's next history has a new epoch
    room_history_ttl_secs: u64 = 300, "IMCLOUD_ROOM_HISTORY_TTL_SECS";
    /// Largest push message in bytes (logic enforces it for HTTP and gRPC; also the HTTP body limit)
    push_max_body: usize = 65536, "IMCLOUD_PUSH_MAX_BODY";
    /// Longest lifetime of a token minted by POST /v1/tokens or IssueToken, in seconds
    token_max_ttl_secs: u64 = 30 * 24 * 3600, "IMCLOUD_TOKEN_MAX_TTL_SECS";
    // Operations: logs, readiness and drain (docs/operations.md).
    /// Log format on stderr: text, or json (one object per line, with trace ids when tracing is on)
    log_format: String = "text".into(), "IMCLOUD_LOG_FORMAT";
    /// Seconds between the readiness checks of the engines a role needs (/readyz)
    readiness_check_secs: u64 = 5, "IMCLOUD_READINESS_CHECK_SECS";
    /// Comet: on SIGTERM, seconds over which connections are closed, each after a reconnect hint (op 22), while another comet is registered (0 = all at once)
    drain_window_secs: u64 = 30, "IMCLOUD_DRAIN_WINDOW_SECS";
    /// Comet: largest reconnect delay a hint suggests, in milliseconds (each hint gets a random delay up to this)
    drain_hint_delay_ms: u64 = 1000, "IMCLOUD_DRAIN_HINT_DELAY_MS";
    /// Comet: the URL reconnect hints name: empty = another comet's advertised websocket address; none = no URL (clients reconnect where they were, e.g. a load balancer); else that URL
    drain_hint_url: String = String::new(), "IMCLOUD_DRAIN_HINT_URL";
    /// Logic and api: on SIGTERM, milliseconds they keep serving, out of the registry and not ready, before they stop taking calls
    drain_delay_ms: u64 = 0, "IMCLOUD_DRAIN_DELAY_MS";

    // Security: TLS, internal authentication, keys and tokens, limits (docs/security.md).
    /// PEM certificate chain of the public listeners (wss, TLS TCP, HTTPS); reloaded when it changes or on SIGHUP
    tls_cert_file: String = String::new(), "IMCLOUD_TLS_CERT_FILE";
    /// PEM private key of IMCLOUD_TLS_CERT_FILE
    tls_key_file: String = String::new(), "IMCLOUD_TLS_KEY_FILE";
    /// Comet wss listener (goim: 0.0.0.0:3103), path /sub; set = on, with IMCLOUD_TLS_CERT_FILE [default: off]
    comet_wss_addr: String = String::new(), "IMCLOUD_COMET_WSS_ADDR";
    /// true = the goim TCP listener speaks TLS (IMCLOUD_TLS_CERT_FILE)
    comet_tcp_tls: bool = false, "IMCLOUD_COMET_TCP_TLS";
    /// true = the api HTTP listener speaks HTTPS, HTTP/1.1 and HTTP/2 (IMCLOUD_TLS_CERT_FILE)
    api_tls: bool = false, "IMCLOUD_API_TLS";
    /// Seconds between checks of the certificate files for changes (SIGHUP checks at once)
    tls_reload_secs: u64 = 10, "IMCLOUD_TLS_RELOAD_SECS";
    /// Mutual TLS between the roles: PEM CA every role's certificate must chain to
    internal_ca_file: String = String::new(), "IMCLOUD_INTERNAL_CA_FILE";
    /// Mutual TLS between the roles: this role's PEM certificate (DNS name <role>.imcloud.internal)
    internal_cert_file: String = String::new(), "IMCLOUD_INTERNAL_CERT_FILE";
    /// Mutual TLS between the roles: this role's PEM private key
    internal_key_file: String = String::new(), "IMCLOUD_INTERNAL_KEY_FILE";
    /// Token on every internal gRPC call when mutual TLS is off [default: generated in standalone; required otherwise]
    internal_token: String = String::new(), "IMCLOUD_INTERNAL_TOKEN";
    /// The previous HS256 secret, still accepted (never used to sign) while its tokens live: key rotation
    auth_secret_previous: String = String::new(), "IMCLOUD_AUTH_SECRET_PREVIOUS";
    /// PEM public key (RSA or Ed25519): tokens a backend signs RS256 or EdDSA with its private key are accepted
    auth_public_key_file: String = String::new(), "IMCLOUD_AUTH_PUBLIC_KEY_FILE";
    /// Required `aud` of tokens, also written in the tokens logic signs [default: not checked]
    auth_audience: String = String::new(), "IMCLOUD_AUTH_AUDIENCE";
    /// Required `iss` of tokens, also written in the tokens logic signs [default: not checked]
    auth_issuer: String = String::new(), "IMCLOUD_AUTH_ISSUER";
    /// Comet: open connections per client IP (IPv6: per /64); 0 = no limit
    comet_max_conns_per_ip: u32 = 1000, "IMCLOUD_COMET_MAX_CONNS_PER_IP";
    /// Comet: new connections per second per client IP, in bursts of twice that; 0 = no limit
    comet_connects_per_sec_per_ip: u32 = 50, "IMCLOUD_COMET_CONNECTS_PER_SEC_PER_IP";
    /// Comet: frames per second a client may send on one connection, in bursts of twice that; over it the connection is closed; 0 = no limit
    comet_frames_per_sec: u32 = 20, "IMCLOUD_COMET_FRAMES_PER_SEC";
    /// Comet: rooms one connection may be in at once
    comet_max_rooms: usize = 32, "IMCLOUD_COMET_MAX_ROOMS";
    /// Comet: most client connections over all its listeners [default: 0 = the descriptor budget; standalone: minus the api's share]
    comet_max_connections: usize = 0, "IMCLOUD_COMET_MAX_CONNECTIONS";
    /// Api: requests per second with the API key, in bursts of twice that (429 with Retry-After over it); 0 = no limit
    api_requests_per_sec_per_key: u32 = 50000, "IMCLOUD_API_REQUESTS_PER_SEC_PER_KEY";
    /// Api: requests per second per client IP without the API key, in bursts of twice that (429 with Retry-After); 0 = no limit
    api_requests_per_sec_per_ip: u32 = 500, "IMCLOUD_API_REQUESTS_PER_SEC_PER_IP";
    /// Api: most open HTTP connections [default: 0 = the descriptor budget; standalone: a quarter of it]
    api_max_connections: usize = 0, "IMCLOUD_API_MAX_CONNECTIONS";
    /// Api: milliseconds to receive a request's headers, from when the connection is ready for one (so also the HTTP/1.1 keep-alive idle limit)
    http_header_timeout_ms: u64 = 10000, "IMCLOUD_HTTP_HEADER_TIMEOUT_MS";
    /// Api: longest wait, in milliseconds, for the next part of a request body (a stalled upload is answered 408)
    http_body_timeout_ms: u64 = 10000, "IMCLOUD_HTTP_BODY_TIMEOUT_MS";
    /// Api: milliseconds an HTTP connection may stay open without a request in flight (HTTP/2 too)
    http_idle_timeout_ms: u64 = 60000, "IMCLOUD_HTTP_IDLE_TIMEOUT_MS";
    /// Api: browser origins allowed by CORS, comma-separated (`*` = any) [default: none]
    api_cors_origins: String = String::new(), "IMCLOUD_API_CORS_ORIGINS";
    /// File descriptors kept free of client connections (database, Kafka, internal gRPC, logs)
    fd_reserve: u64 = 256, "IMCLOUD_FD_RESERVE";
}

impl Config {
    /// Resolves the layers: defaults, then the TOML file, then the environment and flags in `args`.
    pub fn load(args: &ConfigArgs) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = args.config.as_deref() {
            if !Path::new(path).is_file() {
                return Err(ConfigError::MissingFile(path.to_string()));
            }
            figment = figment.merge(Toml::file(path));
        }
        let config: Config = figment
            .merge(Serialized::defaults(args))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Whether `key` (a field name) was set by a flag, the environment or the TOML file, rather than
    /// left at its built-in default.
    pub fn explicitly_set(args: &ConfigArgs, key: &str) -> bool {
        let mut figment = Figment::from(Serialized::defaults(args));
        if let Some(path) = args.config.as_deref() {
            figment = figment.merge(Toml::file(path));
        }
        figment.find_value(key).is_ok()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("comet_buckets", self.comet_buckets as u64),
            ("heartbeat_secs", self.heartbeat_secs),
            ("heartbeat_max_misses", self.heartbeat_max_misses as u64),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("conn_queue_bytes", self.conn_queue_bytes as u64),
            (
                "comet_outbox_budget_bytes",
                self.comet_outbox_budget_bytes as u64,
            ),
            ("max_client_body", self.max_client_body as u64),
            ("online_renew_secs", self.online_renew_secs),
            ("queue_capacity", self.queue_capacity as u64),
            ("room_batch_max", self.room_batch_max as u64),
            ("room_history_size", self.room_history_size as u64),
            ("room_history_ttl_secs", self.room_history_ttl_secs),
            ("push_max_body", self.push_max_body as u64),
            ("etcd_lease_ttl_secs", self.etcd_lease_ttl_secs),
            ("kafka_partitions", self.kafka_partitions.max(0) as u64),
            ("kafka_replication", self.kafka_replication.max(0) as u64),
            (
                "kafka_session_timeout_ms",
                self.kafka_session_timeout_ms as u64,
            ),
            ("readiness_check_secs", self.readiness_check_secs),
            ("tls_reload_secs", self.tls_reload_secs),
            ("comet_max_rooms", self.comet_max_rooms as u64),
            ("http_header_timeout_ms", self.http_header_timeout_ms),
            ("http_body_timeout_ms", self.http_body_timeout_ms),
            ("http_idle_timeout_ms", self.http_idle_timeout_ms),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be greater than 0"
                )));
            }
        }
        if !matches!(self.im.trim().to_ascii_lowercase().as_str(), "on" | "off") {
            return Err(ConfigError::Invalid(format!(
                "im (IMCLOUD_IM) must be on or off, got {:?}",
                self.im
            )));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(format!(
                "log_format must be text or json, not {:?}",
                self.log_format
            )));
        }
        if !self.comet_wss_addr.trim().is_empty()
            && self.comet_wss_addr.trim().parse::<SocketAddr>().is_err()
        {
            return Err(ConfigError::Invalid(format!(
                "comet_wss_addr {:?} is not an address such as 0.0.0.0:3103",
                self.comet_wss_addr
            )));
        }
        let wants_tls =
            !self.comet_wss_addr.trim().is_empty() || self.comet_tcp_tls || self.api_tls;
        if wants_tls
            && (self.tls_cert_file.trim().is_empty() || self.tls_key_file.trim().is_empty())
        {
            return Err(ConfigError::Invalid(
                "IMCLOUD_COMET_WSS_ADDR, IMCLOUD_COMET_TCP_TLS and IMCLOUD_API_TLS need \
                 IMCLOUD_TLS_CERT_FILE and IMCLOUD_TLS_KEY_FILE"
                    .into(),
            ));
        }
        if self.session_ttl_secs < 2 * self.heartbeat_secs {
            return Err(ConfigError::Invalid(format!(
                "session_ttl_secs ({}) must be at least twice heartbeat_secs ({})",
                self.session_ttl_secs, self.heartbeat_secs
            )));
        }
        Ok(())
    }

    /// The configured node id, or `hostname-suffix` (comet, logic: the port; job: the process id).
    pub fn node_id_or(&self, suffix: impl std::fmt::Display) -> String {
        if self.node_id.is_empty() {
            format!("{}-{suffix}", crate::node::hostname())
        } else {
            self.node_id.clone()
        }
    }

    /// The gRPC address this node registers: `IMCLOUD_GRPC_ADVERTISE_ADDR` when set, else `bound` (with
    /// the advertise host for 0.0.0.0).
    pub fn grpc_advertised(&self, bound: SocketAddr) -> String {
        if self.grpc_advertise_addr.is_empty() {
            crate::node::advertised(bound, &self.advertise_host())
        } else {
            self.grpc_advertise_addr.clone()
        }
    }

    pub fn advertise_host(&self) -> String {
        if self.advertise_host.is_empty() {
            crate::node::default_advertise_host()
        } else {
            self.advertise_host.clone()
        }
    }

    /// A comma-separated setting as a list (empty entries dropped).
    pub fn list(value: &str) -> Vec<String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Whether the IM tier runs (`IMCLOUD_IM` is not `off`).
    pub fn im_enabled(&self) -> bool {
        !self.im.trim().eq_ignore_ascii_case("off")
    }

    /// The comet wss listener's address, if wss is on.
    pub fn comet_wss_addr(&self) -> Option<SocketAddr> {
        self.comet_wss_addr.trim().parse().ok()
    }

    /// Refuses secrets a role process must not run with: the auth secrets (current and previous), the
    /// API key and the internal token shorter than [`MIN_SECRET_BYTES`] (a standalone only warns, so that
    /// a quick local try keeps working; its generated ones are long enough).
    pub fn check_secrets(&self, standalone: bool) -> Result<(), ConfigError> {
        let checks = [
            ("IMCLOUD_AUTH_SECRET", &self.auth_secret),
            ("IMCLOUD_AUTH_SECRET_PREVIOUS", &self.auth_secret_previous),
            ("IMCLOUD_API_KEY", &self.api_key),
            ("IMCLOUD_INTERNAL_TOKEN", &self.internal_token),
        ];
        let tokens = Config::list(&self.internal_token);
        let checks = checks
            .into_iter()
            .filter(|(n, _)| *n != "IMCLOUD_INTERNAL_TOKEN")
            .map(|(n, v)| (n, v.trim()))
            .chain(
                tokens
                    .iter()
                    .map(|t| ("IMCLOUD_INTERNAL_TOKEN", t.as_str())),
            );
        for (name, value) in checks {
            let len = value.len();
            if len == 0 || len >= MIN_SECRET_BYTES {
                continue;
            }
            let msg = format!(
                "{name} is {len} bytes; use at least {MIN_SECRET_BYTES} random bytes (for example \
                 `head -c 32 /dev/urandom | base64`)"
            );
            if standalone {
                tracing::warn!("{msg}; accepted in standalone only");
            } else {
                return Err(ConfigError::Invalid(msg));
            }
        }
        Ok(())
    }

    /// Seconds without a heartbeat after which a comet closes a connection.
    pub fn heartbeat_deadline_secs(&self) -> u64 {
        self.heartbeat_secs * self.heartbeat_max_misses as u64
    }
}

/// The shortest secret, API key or internal token a role process accepts outside standalone.
pub const MIN_SECRET_BYTES: usize = 32;

/// A URL with its password (`scheme://user:password@host`) masked, for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: ConfigArgs,
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = std::env::temp_dir().join(format!("imcloud-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("imcloud.toml");
        std::fs::write(
            &file,
            "kafka_topic = \"from-file\"\ncomet_buckets = 8\nheartbeat_secs = 10\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "x",
            "--config",
            file.to_str().unwrap(),
            "--comet-buckets",
            "4",
            "--comet-ws-addr",
            "127.0.0.1:9000",
        ]);
        let c = Config::load(&cli.config).unwrap();
        assert_eq!(c.kafka_topic, "from-file");
        assert_eq!(c.comet_buckets, 4);
        assert_eq!(c.heartbeat_secs, 10);
        assert_eq!(c.comet_ws_addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.logic_addr, "127.0.0.1:3119");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_values_are_rejected() {
        let cli = Cli::parse_from(["x", "--comet-buckets", "0"]);
        assert!(matches!(
            Config::load(&cli.config),
            Err(ConfigError::Invalid(_))
        ));
        let cli = Cli::parse_from(["x", "--config", "/nonexistent/imcloud.toml"]);
        assert!(matches!(
            Config::load(&cli.config),
            Err(ConfigError::MissingFile(_))
        ));
        assert!(Cli::try_parse_from(["x", "--comet-ws-addr", "nonsense"]).is_err());
    }

    #[test]
    fn explicit_settings_are_told_from_defaults() {
        let cli = Cli::parse_from(["x", "--comet-grpc-addr", "0.0.0.0:3109"]);
        assert!(Config::explicitly_set(&cli.config, "comet_grpc_addr"));
        assert!(!Config::explicitly_set(&cli.config, "logic_grpc_addr"));
    }

    #[test]
    fn short_secrets_stop_a_role_but_not_standalone() {
        let mut c = Config {
            auth_secret: "short".into(),
            ..Config::default()
        };
        assert!(
            matches!(c.check_secrets(false), Err(ConfigError::Invalid(m)) if m.contains("IMCLOUD_AUTH_SECRET"))
        );
        assert!(c.check_secrets(true).is_ok());
        c.auth_secret = "x".repeat(32);
        c.internal_token = "y".repeat(31);
        assert!(c.check_secrets(false).is_err());
        c.internal_token = "y".repeat(32);
        assert!(c.check_secrets(false).is_ok());
    }

    #[test]
    fn tls_listeners_need_the_certificate() {
        let c = Config {
            api_tls: true,
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            comet_wss_addr: "nonsense".into(),
            tls_cert_file: "c".into(),
            tls_key_file: "k".into(),
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = std::env::temp_dir().join(format!("imcloud-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("imcloud.toml");
        std::fs::write(&file, "comet_buckkets = 8\n").unwrap();
        let cli = Cli::parse_from(["x", "--config", file.to_str().unwrap()]);
        assert!(Config::load(&cli.config).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
