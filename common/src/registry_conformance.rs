//! The behaviour every [`Registry`] implementation must show; run by each implementation's tests.
//!
//! `run(registry)`: two nodes registered and listed (sorted, roles kept apart); re-registering updates in
//! place and the watch sees it; a deregistration shows in the watch; an empty id is refused. Run against
//! `MemoryRegistry` and against etcd at `IMCLOUD_TEST_ETCD_ENDPOINTS` under a unique prefix.

use std::time::Duration;

use crate::node::{NodeInfo, Role};
use crate::registry::Registry;

/// Runs the suite against a registry that holds no nodes of the ids used here.
pub async fn run(reg: &dyn Registry) {
    let suffix = crate::test_name::unique_test_name("conf");
    let a = NodeInfo::new(Role::Comet, format!("conf-a-{suffix}"));
    let mut b = NodeInfo::new(Role::Comet, format!("conf-b-{suffix}"));
    let mut watch = reg.watch(Role::Comet);

    reg.register(a.clone()).await.expect("register a");
    reg.register(b.clone()).await.expect("register b");
    let ours = |list: &[NodeInfo]| {
        list.iter()
            .filter(|n| n.id.ends_with(&suffix))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ours(&reg.list(Role::Comet).await.expect("list")),
        vec![a.clone(), b.clone()]
    );
    assert!(
        ours(&reg.list(Role::Job).await.expect("list jobs")).is_empty(),
        "roles are separate"
    );

    // Re-registering updates in place.
    b.connections = 42;
    reg.register(b.clone()).await.expect("update b");
    wait_for(&mut watch, |l| ours(l).iter().any(|n| n.connections == 42)).await;
    assert_eq!(
        ours(&reg.list(Role::Comet).await.expect("list")),
        vec![a.clone(), b.clone()]
    );

    reg.deregister(Role::Comet, &a.id)
        .await
        .expect("deregister");
    wait_for(&mut watch, |l| ours(l) == vec![b.clone()]).await;
    reg.deregister(Role::Comet, &b.id)
        .await
        .expect("deregister");
    wait_for(&mut watch, |l| ours(l).is_empty()).await;
    assert!(
        reg.register(NodeInfo::new(Role::Comet, "")).await.is_err(),
        "empty id is refused"
    );
}

async fn wait_for(
    rx: &mut tokio::sync::watch::Receiver<Vec<NodeInfo>>,
    cond: impl Fn(&[NodeInfo]) -> bool,
) {
    let res = tokio::time::timeout(Duration::from_secs(15), rx.wait_for(|l| cond(l))).await;
    assert!(
        matches!(res, Ok(Ok(_))),
        "watch did not reach the expected state"
    );
}
