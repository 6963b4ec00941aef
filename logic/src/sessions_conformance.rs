//! The behaviour every [`SessionStore`] must show; run by each implementation's tests.
//! The store must have been built with session and online TTLs of `ttl` (a few seconds).
//!
//! `run(store, ttl)`: add, then look up by key and by mid; re-adding a key on another comet moves it, and
//! removing the stale (key, comet) pair answers `false` and keeps the new one; renew checks the comet; an
//! unrenewed session lapses after the TTL and renewing it then answers `false`; online reports round-trip and
//! expire. Run against `MemorySessions` and `RedisSessions` (one Redis and a Redis Cluster, under unique
//! prefixes).

use std::time::Duration;

use crate::sessions::{ServerOnline, Session, SessionStore};

pub async fn run(store: &dyn SessionStore, ttl: Duration) {
    let tag = imcloud_common::test_name::unique_test_name("s");
    let mid = (crate::token::unix_now() as i64 % 1_000_000) * 1000 + 7;
    let s = |key: &str, server: &str| Session {
        mid,
        key: format!("{key}-{tag}"),
        server: format!("{server}-{tag}"),
    };

    // add, then look up by key and by mid
    store.add(&s("k1", "c1")).await.expect("add");
    store.add(&s("k2", "c2")).await.expect("add");
    let keys = vec![s("k1", "").key, s("k2", "").key, format!("absent-{tag}")];
    assert_eq!(
        store.sessions_by_keys(&keys).await.expect("by keys"),
        vec![Some(s("k1", "c1")), Some(s("k2", "c2")), None]
    );
    let mut by_mid = store
        .sessions_by_mids(&[mid, mid + 1])
        .await
        .expect("by mids");
    by_mid.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(by_mid, vec![s("k1", "c1"), s("k2", "c2")]);

    // a key re-added on another comet moves; removing the old (key, comet) pair leaves the new one
    store.add(&s("k1", "c3")).await.expect("re-add");
    assert!(!store.remove(&s("k1", "c1")).await.expect("remove stale"));
    assert_eq!(
        store.sessions_by_keys(&keys[..1]).await.expect("by keys"),
        vec![Some(s("k1", "c3"))]
    );
    assert!(store.remove(&s("k1", "c3")).await.expect("remove"));
    assert_eq!(
        store.sessions_by_keys(&keys[..1]).await.expect("by keys"),
        vec![None]
    );
    assert_eq!(
        store.sessions_by_mids(&[mid]).await.expect("by mids"),
        vec![s("k2", "c2")]
    );

    // renewal keeps a session past its TTL; an unrenewed one lapses and renew reports it missing
    store.add(&s("k3", "c1")).await.expect("add");
    let half = ttl / 2 + Duration::from_millis(200);
    tokio::time::sleep(half).await;
    assert!(store.renew(&s("k2", "c2")).await.expect("renew"));
    assert!(
        !store
            .renew(&s("k2", "c9"))
            .await
            .expect("renew on the wrong comet"),
        "renew checks the comet"
    );
    tokio::time::sleep(half).await;
    let live = store
        .sessions_by_keys(&[s("k2", "").key, s("k3", "").key])
        .await
        .expect("by keys");
    assert_eq!(live, vec![Some(s("k2", "c2")), None]);
    assert!(!store.renew(&s("k3", "c1")).await.expect("renew lapsed"));

    // online reports
    let report = ServerOnline {
        room_count: [("live://1".to_string(), 3)].into(),
        conn_count: 5,
        ip_count: 2,
    };
    store
        .put_online(&s("", "c1").server, &report)
        .await
        .expect("put online");
    let got = store
        .online(&[s("", "c1").server, s("", "c2").server])
        .await
        .expect("online");
    assert_eq!(got, vec![Some(report), None]);
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    assert_eq!(
        store.online(&[s("", "c1").server]).await.expect("online"),
        vec![None],
        "reports expire"
    );
    store.remove(&s("k2", "c2")).await.expect("cleanup");
}
