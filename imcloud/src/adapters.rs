//! Picks each adapter from the configuration: the distributed engine when its setting is present, otherwise
//! the embedded implementation.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use imcloud_common::Config;
use imcloud_common::registry::Registry;
use imcloud_common::registry_etcd::EtcdRegistry;
use imcloud_common::registry_memory::MemoryRegistry;
use imcloud_logic::sessions::SessionStore;
use imcloud_logic::sessions_memory::MemorySessions;
use imcloud_logic::sessions_redis::RedisSessions;

/// Refuses settings for engines this build cannot use yet, rather than silently ignoring them.
pub fn refuse_unbuilt(cfg: &Config) -> Result<()> {
    if !cfg.kafka_brokers.is_empty() {
        bail!(
            "IMCLOUD_KAFKA_BROKERS is set, but the Kafka queue is not in this build yet; unset it to use the embedded queue"
        );
    }
    Ok(())
}

/// etcd when IMCLOUD_ETCD_ENDPOINTS is set, else the in-process registry.
pub async fn registry(cfg: &Config) -> Result<Arc<dyn Registry>> {
    let endpoints = Config::list(&cfg.etcd_endpoints);
    if endpoints.is_empty() {
        return Ok(Arc::new(MemoryRegistry::new()));
    }
    let reg = EtcdRegistry::connect(
        &endpoints,
        &cfg.etcd_prefix,
        Duration::from_secs(cfg.etcd_lease_ttl_secs),
    )
    .await
    .with_context(|| format!("etcd at {}", endpoints.join(",")))?;
    Ok(Arc::new(reg))
}

/// How long a comet's online report lives in the session store: three report intervals.
pub fn online_ttl(cfg: &Config) -> Duration {
    Duration::from_secs(cfg.online_renew_secs * 3)
}

/// Redis when IMCLOUD_REDIS_URL is set, else the in-memory store.
pub async fn sessions(cfg: &Config) -> Result<Arc<dyn SessionStore>> {
    let ttl = Duration::from_secs(cfg.session_ttl_secs);
    if cfg.redis_url.is_empty() {
        return Ok(MemorySessions::new(ttl, online_ttl(cfg)));
    }
    let store = RedisSessions::connect(&cfg.redis_url, &cfg.redis_prefix, ttl, online_ttl(cfg))
        .await
        .with_context(|| format!("Redis at {}", redact(&cfg.redis_url)))?;
    Ok(Arc::new(store))
}

/// A URL with its password (`scheme://user:password@host`) masked, for logs.
pub fn redact(url: &str) -> String {
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

/// One line per adapter, for the start-up banner.
pub fn describe(cfg: &Config) -> Vec<String> {
    let registry = if cfg.etcd_endpoints.is_empty() {
        "embedded (in-process)".to_string()
    } else {
        format!("etcd {} under {}", cfg.etcd_endpoints, cfg.etcd_prefix)
    };
    let sessions = if cfg.redis_url.is_empty() {
        "embedded (in-memory)".to_string()
    } else {
        format!(
            "Redis {} with prefix {}",
            redact(&cfg.redis_url),
            cfg.redis_prefix
        )
    };
    vec![
        format!("registry     {registry}"),
        format!("sessions     {sessions}"),
        "queue        embedded (in-process)".to_string(),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            super::redact("redis://:s3cret@10.0.0.1:6379/0"),
            "redis://:***@10.0.0.1:6379/0"
        );
        assert_eq!(
            super::redact("redis://app:s3cret@r:6379"),
            "redis://app:***@r:6379"
        );
        assert_eq!(
            super::redact("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
    }
}
