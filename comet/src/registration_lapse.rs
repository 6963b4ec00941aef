//! A comet whose registration lapsed closes every connection it holds.
//!
//! A lapse ([`imcloud_common::registry::Registry::lapses`]) is a registry entry that expired while the
//! comet was alive but could not renew it: the process was paused (SIGSTOP, a long GC-like stall of the
//! host), or it was cut off from etcd. Meanwhile job saw the comet leave, ended the deliveries addressed
//! to it and committed the pushes for it as addressed to an unknown comet (`job/src/comet_pool.rs`). Its
//! clients may therefore have missed pushes without any sign of it. Closed, they reconnect and resync (IM
//! sync, room recovery with op 23), exactly as after a comet crash: "every push acknowledged while its
//! target stayed connected is delivered" stays true (docs/reliability.md).
//!
//! Every connection is closed at once, with op 6 and [`LAPSE_REASON`]: spreading the closes over a window,
//! as the drain does, would leave some clients connected and unaware while they are already missing
//! pushes.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::comet::Comet;

/// What op 6 tells a client closed after a lapse.
pub const LAPSE_REASON: &str =
    "this comet lost its registration and may have missed pushes; reconnect and resync";

/// Closes every connection of `comet` each time `lapses` counts a lapse, until `stop`.
pub async fn close_on_lapse(
    comet: Arc<Comet>,
    mut lapses: watch::Receiver<u64>,
    stop: CancellationToken,
) {
    lapses.borrow_and_update();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = lapses.changed() => if changed.is_err() { return },
        }
        let closed = close_all(&comet);
        metrics::counter!("imcloud_comet_registration_lapses_total").increment(1);
        tracing::warn!(
            connections = closed,
            "this comet's registration lapsed (the other nodes saw it leave and may have given up pushes \
             to it): closed its connections so that their clients reconnect and resync"
        );
    }
}

fn close_all(comet: &Comet) -> usize {
    let mut closed = 0;
    for bucket in comet.buckets() {
        for ch in bucket.channels() {
            ch.kick_by_server(LAPSE_REASON);
            closed += 1;
        }
    }
    closed
}
