//! The distributed registry: etcd. Every node is one key `<prefix><role>/<node_id>` (by default
//! `/imcloud/nodes/comet/c1`) holding the JSON of its [`NodeInfo`], attached to a lease the node keeps
//! alive (every TTL / 3). A node deregisters on graceful shutdown (the lease is revoked, which deletes the
//! key); a killed node disappears when its lease expires. While etcd is unreachable, nodes keep serving
//! with the last known membership and re-register when it comes back (under a new lease if the old one is
//! gone). One watch task per role. Unlike the embedded registry, an id containing `/` is refused, and a new
//! `watch` starts with an empty list until its first read completes. Every call goes through
//! [`Members`] (`etcd_members.rs`), which fails over to the next member while one cannot be reached. Key
//! scheme, leases and failure behaviour: docs/deployment.md.
//!
//! Tests (on the etcd at `IMCLOUD_TEST_ETCD_ENDPOINTS`; they fail, not skip, without it): the conformance
//! suite, a dropped registry's node disappearing when its lease expires, `deregister` removing at once,
//! re-registration (counted as a lapse) after the lease is revoked, and no call failing with a dead
//! member among the endpoints.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{ConnectOptions, EventType, GetOptions, KeyValue, PutOptions, WatchOptions};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::etcd_members::{Members, REQUEST_TIMEOUT, deadline_exceeded};
use crate::node::{NodeInfo, Role};
use crate::registry::{Registry, RegistryError};

/// Where nodes register unless configured otherwise: `/imcloud/nodes/<role>/<node_id>`.
pub const DEFAULT_PREFIX: &str = "/imcloud/nodes/";
/// How long an entry outlives its node when the node is killed.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// HTTP/2 ping interval that detects a dead connection under an open watch or keep-alive stream.
/// etcd refuses pings more frequent than every 5 s.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// First retry delay after a failure; doubles up to [`MAX_RETRY_DELAY`].
const MIN_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// The etcd [`Registry`]. Dropping it stops its background tasks (keep-alives and watches) without
/// revoking any lease, so its nodes vanish when their leases expire, as if the process had been killed.
pub struct EtcdRegistry {
    /// One client per etcd member, with failover (`etcd_members.rs`).
    members: Members,
    /// Ends with `/`; a node's key is `<prefix><role>/<id>`.
    prefix: String,
    lease_ttl: Duration,
    /// The nodes this registry registered and keeps alive, by (role, id).
    registrations: Mutex<HashMap<(Role, String), Registration>>,
    /// One watch channel per role, each fed by one background task started on the first `watch`.
    watchers: std::sync::Mutex<HashMap<Role, watch::Sender<Vec<NodeInfo>>>>,
    /// Counts registrations found expired and written again ([`Registry::lapses`]).
    lapses: Arc<watch::Sender<u64>>,
    /// Cancelled on drop; ends every background task.
    shutdown: CancellationToken,
}

impl EtcdRegistry {
    /// Connects to etcd and checks that it answers. Keys go under `prefix` (a missing trailing `/` is
    /// added); `lease_ttl` (rounded up to whole seconds) is how long a killed node's entry lingers.
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        lease_ttl: Duration,
    ) -> Result<EtcdRegistry, RegistryError> {
        let unreachable = |e: etcd_client::Error| {
            RegistryError::Unavailable(format!("cannot reach etcd at {endpoints:?}: {e}"))
        };
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(PING_INTERVAL, REQUEST_TIMEOUT)
            .with_keep_alive_while_idle(false);
        let members = Members::connect(endpoints, options)
            .await
            .map_err(unreachable)?;
        // The clients dial lazily: ask once so wrong or dead endpoints fail here, not on first use.
        members
            .call(|mut c| async move {
                c.get(prefix, Some(GetOptions::new().with_count_only()))
                    .await
            })
            .await
            .map_err(unreachable)?;
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(EtcdRegistry {
            members,
            prefix,
            lease_ttl,
            registrations: Mutex::new(HashMap::new()),
            watchers: std::sync::Mutex::new(HashMap::new()),
            lapses: Arc::new(watch::channel(0).0),
            shutdown: CancellationToken::new(),
        })
    }

    /// The prefix of every key of `role`, ending with `/`.
    fn role_prefix(&self, role: Role) -> String {
        format!("{}{role}/", self.prefix)
    }

    fn key(&self, role: Role, id: &str) -> String {
        format!("{}{id}", self.role_prefix(role))
    }
}

impl Drop for EtcdRegistry {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[async_trait]
impl Registry for EtcdRegistry {
    /// The first call for a (role, id) grants a lease, writes the entry and starts keeping the lease
    /// alive; later calls rewrite the entry under the same lease. When a rewrite fails, the new value
    /// is still the one the keep-alive task writes when it re-registers after the outage.
    async fn register(&self, node: NodeInfo) -> Result<(), RegistryError> {
        if node.id.is_empty() || node.id.contains('/') {
            return Err(RegistryError::BadEntry(format!(
                "node id {:?} must be non-empty and contain no '/'",
                node.id
            )));
        }
        let value =
            serde_json::to_string(&node).map_err(|e| RegistryError::BadEntry(e.to_string()))?;
        let mut registrations = self.registrations.lock().await;
        let slot = (node.role, node.id);
        if let Some(registration) = registrations.get(&slot) {
            let mut entry = registration.entry.lock().await;
            entry.value = value;
            return entry
                .save(&self.members, self.lease_ttl)
                .await
                .map_err(unavailable);
        }
        let mut entry = Entry {
            key: self.key(slot.0, &slot.1),
            value,
            lease: grant(&self.members, self.lease_ttl)
                .await
                .map_err(unavailable)?,
            lapses: self.lapses.clone(),
        };
        // Should the put fail, the new lease carries no key and simply expires.
        entry
            .save(&self.members, self.lease_ttl)
            .await
            .map_err(unavailable)?;
        let entry = Arc::new(Mutex::new(entry));
        let stop = self.shutdown.child_token();
        let keeper = tokio::spawn(keep_alive(
            self.members.clone(),
            entry.clone(),
            self.lease_ttl,
            stop.clone(),
        ));
        registrations.insert(
            slot,
            Registration {
                entry,
                stop,
                keeper,
            },
        );
        Ok(())
    }

    /// Stops the keep-alive and revokes the lease, which deletes the entry at once. A node this
    /// registry did not register has its key deleted. If etcd is unreachable the keep-alive is still
    /// stopped, so the entry vanishes when its lease expires.
    async fn deregister(&self, role: Role, id: &str) -> Result<(), RegistryError> {
        let key = self.key(role, id);
        let mut registrations = self.registrations.lock().await;
        let lease = match registrations.remove(&(role, id.to_string())) {
            Some(registration) => {
                registration.stop.cancel();
                if let Err(e) = registration.keeper.await {
                    tracing::warn!(%key, error = %e, "keep-alive task failed");
                }
                Some(registration.entry.lock().await.lease)
            }
            None => None,
        };
        if let Some(lease) = lease {
            match self
                .members
                .call(|mut c| async move { c.lease_revoke(lease).await })
                .await
            {
                Ok(_) => return Ok(()),
                // The lease expired already, taking the key with it: the delete below is a safety net.
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        let key = key.as_str();
        self.members
            .call(|mut c| async move { c.delete(key, None).await })
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Reads the nodes of `role` from etcd; entries that do not decode are skipped with a warning.
    async fn list(&self, role: Role) -> Result<Vec<NodeInfo>, RegistryError> {
        let prefix = self.role_prefix(role);
        let prefix = prefix.as_str();
        let response = self
            .members
            .call(|mut c| async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await })
            .await
            .map_err(unavailable)?;
        let mut nodes: Vec<NodeInfo> = response.kvs().iter().filter_map(decode).collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(nodes)
    }

    /// Subscribes to the role's membership, starting its watch task on the first call. Must be called
    /// inside a tokio runtime.
    fn watch(&self, role: Role) -> watch::Receiver<Vec<NodeInfo>> {
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        watchers
            .entry(role)
            .or_insert_with(|| {
                let (tx, _) = watch::channel(Vec::new());
                tokio::spawn(follow_role(
                    self.members.clone(),
                    self.role_prefix(role),
                    tx.clone(),
                    self.shutdown.clone(),
                ));
                tx
            })
            .subscribe()
    }

    fn lapses(&self) -> watch::Receiver<u64> {
        self.lapses.subscribe()
    }
}

/// A node this registry keeps alive.
struct Registration {
    /// Shared with the keep-alive task, which rewrites it after an interruption.
    entry: Arc<Mutex<Entry>>,
    /// Stops the keep-alive task (a child of the registry's shutdown token).
    stop: CancellationToken,
    keeper: JoinHandle<()>,
}

/// A node's key, its latest value and the lease the key is attached to.
struct Entry {
    key: String,
    value: String,
    lease: i64,
    /// Counted up when the lease is found gone and the entry is written again.
    lapses: Arc<watch::Sender<u64>>,
}

impl Entry {
    /// Writes the latest value under the current lease; when etcd no longer knows that lease (it
    /// expired while etcd was out of reach), grants a new one and writes under it.
    async fn save(&mut self, members: &Members, ttl: Duration) -> Result<(), etcd_client::Error> {
        match self.put(members).await {
            Err(e) if is_not_found(&e) => {
                tracing::warn!(key = %self.key, "registry lease is gone (the other nodes saw this one leave); granting a new one");
                self.lease = grant(members, ttl).await?;
                self.put(members).await?;
                self.lapses.send_modify(|n| *n += 1);
                Ok(())
            }
            result => result,
        }
    }

    async fn put(&self, members: &Members) -> Result<(), etcd_client::Error> {
        let (key, value, lease) = (self.key.as_str(), self.value.as_str(), self.lease);
        members
            .call(|mut c| async move {
                c.put(key, value, Some(PutOptions::new().with_lease(lease)))
                    .await
            })
            .await?;
        Ok(())
    }
}

/// Grants a lease of `ttl` rounded up to whole seconds; returns its id.
async fn grant(members: &Members, ttl: Duration) -> Result<i64, etcd_client::Error> {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    let secs = i64::try_from(secs.max(1)).unwrap_or(i64::MAX);
    let granted = members
        .call(|mut c| async move { c.lease_grant(secs, None).await })
        .await?;
    Ok(granted.id())
}

/// Keeps a registered node's lease alive until `stop`. After any interruption (etcd unreachable, lease
/// expired) it retries with backoff, rewriting the latest value (under a new lease if needed) before
/// keeping alive again.
async fn keep_alive(
    members: Members,
    entry: Arc<Mutex<Entry>>,
    ttl: Duration,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new();
    let mut interrupted = false;
    loop {
        if interrupted {
            // Not raced against `stop`: a half-done save could leave a key under a lease no one knows.
            let mut entry = entry.lock().await;
            if let Err(e) = entry.save(&members, ttl).await {
                tracing::warn!(key = %entry.key, error = %e, "re-registration failed; retrying");
                drop(entry);
                if sleep_or_stop(backoff.next_delay(), &stop).await {
                    return;
                }
                continue;
            }
            tracing::info!(key = %entry.key, "re-registered");
        }
        let (key, lease) = {
            let entry = entry.lock().await;
            (entry.key.clone(), entry.lease)
        };
        let error = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            Err(e) = keep_lease_alive(&members, lease, ttl, &mut backoff) => e,
        };
        tracing::warn!(%key, error = %error, "registry keep-alive interrupted; retrying");
        interrupted = true;
        if sleep_or_stop(backoff.next_delay(), &stop).await {
            return;
        }
    }
}

/// Refreshes `lease` every `ttl / 3`; returns only when that fails (resetting `backoff` once it works).
async fn keep_lease_alive(
    members: &Members,
    lease: i64,
    ttl: Duration,
    backoff: &mut Backoff,
) -> Result<Infallible, etcd_client::Error> {
    let (mut keeper, mut answers) = members
        .call(|mut c| async move { c.lease_keep_alive(lease).await })
        .await?;
    backoff.reset();
    let mut ticker = tokio::time::interval((ttl / 3).max(MIN_RETRY_DELAY));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate, and `lease_keep_alive` just refreshed the lease
    let mut last_answer = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if last_answer.elapsed() > ttl {
                    return Err(deadline_exceeded("no keep-alive answer within the lease TTL"));
                }
                keeper.keep_alive().await?;
            }
            answer = answers.message() => match answer? {
                Some(answer) if answer.ttl() > 0 => last_answer = Instant::now(),
                Some(_) => return Err(etcd_client::Error::LeaseKeepAliveError("lease expired".into())),
                None => return Err(etcd_client::Error::LeaseKeepAliveError("keep-alive stream ended".into())),
            },
        }
    }
}

/// The watch task of one role: publishes the nodes under `prefix` to `tx` until `shutdown`. On any
/// failure it keeps the last published list and starts over (fresh read, new watch) after a backoff.
async fn follow_role(
    members: Members,
    prefix: String,
    tx: watch::Sender<Vec<NodeInfo>>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new();
    loop {
        let error = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            Err(e) = follow_once(&members, &prefix, &tx, &mut backoff) => e,
        };
        tracing::warn!(%prefix, error = %error, "registry watch interrupted; keeping the last membership");
        if sleep_or_stop(backoff.next_delay(), &shutdown).await {
            return;
        }
    }
}

/// Reads the nodes under `prefix`, publishes them, then applies every later change from an etcd watch
/// starting right after that read; returns only on failure (resetting `backoff` once the watch is up).
async fn follow_once(
    members: &Members,
    prefix: &str,
    tx: &watch::Sender<Vec<NodeInfo>>,
    backoff: &mut Backoff,
) -> Result<Infallible, etcd_client::Error> {
    let snapshot = members
        .call(|mut c| async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await })
        .await?;
    let revision = snapshot
        .header()
        .map(|h| h.revision())
        .ok_or_else(|| etcd_client::Error::WatchError("range response without header".into()))?;
    let mut nodes: BTreeMap<Vec<u8>, NodeInfo> = snapshot
        .kvs()
        .iter()
        .filter_map(|kv| Some((kv.key().to_vec(), decode(kv)?)))
        .collect();
    publish(tx, &nodes);
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut stream = members
        .call(|mut c| {
            let options = options.clone();
            async move { c.watch(prefix, Some(options)).await }
        })
        .await?;
    loop {
        let response = stream
            .message()
            .await?
            .ok_or_else(|| etcd_client::Error::WatchError("watch stream ended".into()))?;
        if response.canceled() {
            return Err(etcd_client::Error::WatchError(format!(
                "watch cancelled: {:?} (compact revision {})",
                response.cancel_reason(),
                response.compact_revision()
            )));
        }
        if response.created() {
            backoff.reset();
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let node = match event.event_type() {
                EventType::Put => decode(kv),
                EventType::Delete => None,
            };
            match node {
                Some(node) => nodes.insert(kv.key().to_vec(), node),
                None => nodes.remove(kv.key()),
            };
        }
        publish(tx, &nodes);
    }
}

/// Sends the nodes sorted by id, waking receivers only when the list changed.
fn publish(tx: &watch::Sender<Vec<NodeInfo>>, nodes: &BTreeMap<Vec<u8>, NodeInfo>) {
    let mut list: Vec<NodeInfo> = nodes.values().cloned().collect();
    list.sort_by(|a, b| a.id.cmp(&b.id));
    tx.send_if_modified(|current| {
        let changed = *current != list;
        if changed {
            *current = list;
        }
        changed
    });
}

/// The node an entry describes, or `None` (with a warning) when its value is not a node's JSON.
fn decode(kv: &KeyValue) -> Option<NodeInfo> {
    match serde_json::from_slice(kv.value()) {
        Ok(node) => Some(node),
        Err(e) => {
            let key = String::from_utf8_lossy(kv.key());
            tracing::warn!(%key, error = %e, "skipping undecodable registry entry");
            None
        }
    }
}

/// Whether etcd answered that the lease (or key) does not exist.
fn is_not_found(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::NotFound)
}

fn unavailable(e: etcd_client::Error) -> RegistryError {
    crate::engine_errors::count("etcd");
    RegistryError::Unavailable(e.to_string())
}

/// Sleeps for `delay`; returns true if `stop` was cancelled first.
async fn sleep_or_stop(delay: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

/// Retry delays: [`MIN_RETRY_DELAY`] doubling up to [`MAX_RETRY_DELAY`], back to the minimum after a
/// success.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            next: MIN_RETRY_DELAY,
        }
    }

    fn reset(&mut self) {
        self.next = MIN_RETRY_DELAY;
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(MAX_RETRY_DELAY);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The etcd the tests use: `IMCLOUD_TEST_ETCD_ENDPOINTS` (comma list), else `127.0.0.1:2379`.
    fn endpoints() -> Vec<String> {
        let endpoints: Vec<String> = std::env::var("IMCLOUD_TEST_ETCD_ENDPOINTS")
            .unwrap_or_default()
            .split(',')
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            vec!["127.0.0.1:2379".to_string()]
        } else {
            endpoints
        }
    }

    /// A prefix no other test run uses.
    fn unique_prefix() -> String {
        format!(
            "/{}/nodes/",
            crate::test_name::unique_test_name("imcloud-test")
        )
    }

    /// Connects or fails the test: these tests need a running etcd.
    async fn connect(prefix: &str, lease_ttl: Duration) -> EtcdRegistry {
        EtcdRegistry::connect(&endpoints(), prefix, lease_ttl)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "these tests need etcd (set IMCLOUD_TEST_ETCD_ENDPOINTS, default 127.0.0.1:2379): {e}"
                )
            })
    }

    /// Deletes every key under the registry's prefix.
    async fn clean_up(reg: &EtcdRegistry) {
        let prefix = reg.prefix.as_str();
        reg.members
            .call(|mut c| async move {
                c.delete(
                    prefix,
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                )
                .await
            })
            .await
            .expect("delete the test prefix");
    }

    async fn wait_for(
        rx: &mut watch::Receiver<Vec<NodeInfo>>,
        within: Duration,
        what: &str,
        cond: impl Fn(&[NodeInfo]) -> bool,
    ) {
        let reached = tokio::time::timeout(within, rx.wait_for(|l| cond(l))).await;
        assert!(matches!(reached, Ok(Ok(_))), "{what} within {within:?}");
    }

    #[tokio::test]
    async fn conformance() {
        let reg = connect(&unique_prefix(), Duration::from_secs(10)).await;
        crate::registry_conformance::run(&reg).await;
        clean_up(&reg).await;
    }

    #[tokio::test]
    async fn killed_node_disappears_when_its_lease_expires() {
        let prefix = unique_prefix();
        let observer = connect(&prefix, Duration::from_secs(10)).await;
        let mut watch = observer.watch(Role::Comet);
        let node = NodeInfo::new(Role::Comet, "killed");

        let victim = connect(&prefix, Duration::from_secs(2)).await;
        victim.register(node.clone()).await.expect("register");
        let seen = |l: &[NodeInfo]| l == [node.clone()];
        wait_for(&mut watch, Duration::from_secs(5), "the node appears", seen).await;
        drop(victim);

        assert_eq!(
            observer.list(Role::Comet).await.expect("list"),
            vec![node.clone()],
            "dropping the registry must not revoke the lease"
        );
        let gone = |l: &[NodeInfo]| l.is_empty();
        wait_for(
            &mut watch,
            Duration::from_secs(6),
            "the lease expires",
            gone,
        )
        .await;
        clean_up(&observer).await;
    }

    #[tokio::test]
    async fn deregister_removes_at_once() {
        let reg = connect(&unique_prefix(), Duration::from_secs(10)).await;
        let mut watch = reg.watch(Role::Logic);
        let node = NodeInfo::new(Role::Logic, "leaving");
        reg.register(node.clone()).await.expect("register");
        let seen = |l: &[NodeInfo]| l == [node.clone()];
        wait_for(&mut watch, Duration::from_secs(5), "the node appears", seen).await;

        reg.deregister(Role::Logic, &node.id)
            .await
            .expect("deregister");
        assert!(reg.list(Role::Logic).await.expect("list").is_empty());
        let gone = |l: &[NodeInfo]| l.is_empty();
        wait_for(
            &mut watch,
            Duration::from_secs(1),
            "the watch sees it go",
            gone,
        )
        .await;
        clean_up(&reg).await;
    }

    /// A member that is down among live ones, as in a three-member cluster that lost one: every call
    /// still succeeds (one client over every endpoint failed about half of them here).
    #[tokio::test]
    async fn a_dead_member_among_the_endpoints_fails_no_call() {
        // Nothing listens on port 1: a connect there is refused at once, as to a member that is down.
        let mut with_dead = endpoints();
        with_dead.push("127.0.0.1:1".to_string());
        let prefix = unique_prefix();
        let mut failures = Vec::new();
        let mut regs = Vec::new();
        for i in 0..5 {
            match EtcdRegistry::connect(&with_dead, &prefix, Duration::from_secs(10)).await {
                Ok(reg) => regs.push(reg),
                Err(e) => failures.push(format!("connect {i}: {e}")),
            }
        }
        let reg = match regs.pop() {
            Some(r) => r,
            None => panic!("no connect succeeded: {failures:?}"),
        };
        for i in 0..30 {
            let node = NodeInfo::new(Role::Comet, format!("c{i}"));
            if let Err(e) = reg.register(node).await {
                failures.push(format!("register {i}: {e}"));
            }
            if let Err(e) = reg.list(Role::Comet).await {
                failures.push(format!("list {i}: {e}"));
            }
        }
        for i in 0..30 {
            if let Err(e) = reg.deregister(Role::Comet, &format!("c{i}")).await {
                failures.push(format!("deregister {i}: {e}"));
            }
        }
        clean_up(&reg).await;
        assert!(
            failures.is_empty(),
            "{} calls failed: {failures:?}",
            failures.len()
        );
    }

    #[tokio::test]
    async fn re_registers_after_its_lease_is_lost() {
        let reg = connect(&unique_prefix(), Duration::from_secs(3)).await;
        let mut watch = reg.watch(Role::Job);
        let mut lapses = reg.lapses();
        let mut node = NodeInfo::new(Role::Job, "survivor");
        reg.register(node.clone()).await.expect("register");
        let seen = |l: &[NodeInfo]| l == [node.clone()];
        wait_for(&mut watch, Duration::from_secs(5), "the node appears", seen).await;

        // Simulate a lease that expired while etcd was out of reach.
        let lost = {
            let registrations = reg.registrations.lock().await;
            let registration = registrations
                .get(&(Role::Job, node.id.clone()))
                .expect("registration");
            registration.entry.lock().await.lease
        };
        reg.members
            .call(|mut c| async move { c.lease_revoke(lost).await })
            .await
            .expect("revoke");
        let gone = |l: &[NodeInfo]| l.is_empty();
        wait_for(
            &mut watch,
            Duration::from_secs(5),
            "the revoke is seen",
            gone,
        )
        .await;
        wait_for(
            &mut watch,
            Duration::from_secs(5),
            "the node re-registers",
            seen,
        )
        .await;
        // The node is told that the others saw it leave.
        tokio::time::timeout(Duration::from_secs(5), lapses.wait_for(|n| *n == 1))
            .await
            .expect("the lapse is counted")
            .expect("lapses");

        // The new lease carries updates and is kept alive past the TTL.
        node.connections = 7;
        reg.register(node.clone()).await.expect("update");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(reg.list(Role::Job).await.expect("list"), vec![node.clone()]);
        clean_up(&reg).await;
    }
}
