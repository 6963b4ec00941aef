//! Room history: the bounded log of a room's **persistent** pushes, from which a client that rejoins a room
//! recovers what it missed (ops 23-25, docs/protocol.md). Embedded: [`crate::room_history_memory`];
//! distributed: [`crate::room_history_redis`] (one Redis or a Redis Cluster). Both pass
//! `room_history_conformance`.
//!
//! **Positions.** Each message appended to a room gets the next **offset** (1, 2, 3, … with no gaps) in
//! the room's current **epoch**. An epoch names one unbroken life of the history: when the history is lost
//! (it expired after `ttl` without a persistent push, Redis lost it, the process holding it in memory
//! restarted, or the appender asked for a reset after it could not append), the next read or append starts
//! a new epoch, with offsets from 1 again. An epoch is a number below 2^53 (so JSON and JavaScript keep it
//! exactly) and differs from the one before it.
//!
//! **Who appends.** Job appends, just before it hands a room batch to the comets, so the offset order is
//! the delivery order: Kafka keys room pushes by room, so one job consumes a room's messages in queue
//! order, one batch after another. Logic never appends; two logic nodes pushing to one room at once only
//! race for the queue order, which then decides both the offsets and the delivery order.
//!
//! **Redeliveries.** A message delivered again after a job takeover (at-least-once) carries the same queue
//! position ([`Source`]); the history recognises it and hands back the offset it already has, so clients
//! that track offsets drop the duplicate instead of seeing it twice under two offsets.
//!
//! **Bounds.** At most `size` messages per room (the oldest are dropped first); a room's whole history is
//! dropped `ttl` after its last append.

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("room history unavailable: {0}")]
    Unavailable(String),
}

/// Where a message came from in the queue: a redelivery has the same source as the first delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The queue's identity and partition (e.g. `kafka:imcloud-push/3`); positions compare only within it.
    pub scope: String,
    /// The message's position in that partition.
    pub position: i64,
}

/// A message to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub op: i32,
    pub body: Vec<u8>,
    pub source: Option<Source>,
}

/// A message in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub op: i32,
    pub body: Vec<u8>,
}

/// What [`RoomHistory::read`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Read {
    /// The room's current epoch and last offset (0 when nothing was appended in this epoch).
    pub epoch: u64,
    pub top: u64,
    /// The oldest offset still kept (`top + 1` when none is).
    pub first: u64,
    /// The entries after the asked offset, in order (only when the asked epoch is the current one and the
    /// history covers the gap), cut short at the byte limit.
    pub entries: Vec<Entry>,
    /// The entries stop before `top` because of the byte limit.
    pub truncated: bool,
}

/// Why a recovery did not succeed; the client falls back to the application's own sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRecovered {
    /// The room's history is not the one the client's position belongs to (it was lost and started again).
    EpochChanged,
    /// The history no longer holds every message after the client's offset.
    HistoryGap,
    /// The missed messages are more bytes than one recovery may carry.
    TooLarge,
    /// The client's offset is beyond the room's last one.
    Ahead,
}

impl NotRecovered {
    /// The `reason` told to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            NotRecovered::EpochChanged => "epoch_changed",
            NotRecovered::HistoryGap => "history_gap",
            NotRecovered::TooLarge => "too_large",
            NotRecovered::Ahead => "ahead",
        }
    }
}

impl Read {
    /// Whether the entries are exactly what a client at (`epoch`, `offset`) missed, or why not.
    pub fn outcome(&self, epoch: u64, offset: u64) -> Result<(), NotRecovered> {
        if epoch != self.epoch {
            Err(NotRecovered::EpochChanged)
        } else if offset > self.top {
            Err(NotRecovered::Ahead)
        } else if offset == self.top {
            Ok(())
        } else if offset + 1 < self.first {
            Err(NotRecovered::HistoryGap)
        } else if self.truncated {
            Err(NotRecovered::TooLarge)
        } else {
            Ok(())
        }
    }
}

/// The largest epoch: 2^53 - 1, so that JSON numbers and JavaScript keep it exactly.
pub const MAX_EPOCH: u64 = (1 << 53) - 1;

#[async_trait]
pub trait RoomHistory: Send + Sync + 'static {
    /// Appends messages to a room in order, atomically; returns the room's epoch and each message's offset.
    /// A message whose [`Source`] is already in the history (a redelivery) is not appended again and gets
    /// its first offset back. `reset` first drops the room's history, starting a new epoch (the appender
    /// could not append a message, so the history has a hole).
    async fn append(
        &self,
        room: &str,
        entries: &[NewEntry],
        reset: bool,
    ) -> Result<(u64, Vec<u64>), HistoryError>;

    /// The room's position, starting a new epoch (with no messages) when the room has no history, and,
    /// when `epoch` is the current one, the messages after `offset`: all of them while their bodies total at
    /// most `max_bytes` (at least one is always returned), else a prefix with `truncated` set. Does not
    /// extend the history's lifetime, except when it starts a new epoch.
    async fn read(
        &self,
        room: &str,
        epoch: u64,
        offset: u64,
        max_bytes: usize,
    ) -> Result<Read, HistoryError>;

    /// Whether the store answers (readiness).
    async fn health(&self) -> Result<(), HistoryError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(epoch: u64, top: u64, first: u64, truncated: bool) -> Read {
        Read {
            epoch,
            top,
            first,
            entries: Vec::new(),
            truncated,
        }
    }

    #[test]
    fn outcomes() {
        use NotRecovered::*;
        let r = read(7, 10, 4, false);
        assert_eq!(r.outcome(7, 10), Ok(()), "nothing missed");
        assert_eq!(r.outcome(7, 3), Ok(()), "4..=10 kept");
        assert_eq!(r.outcome(7, 2), Err(HistoryGap), "3 is gone");
        assert_eq!(r.outcome(7, 11), Err(Ahead));
        assert_eq!(r.outcome(8, 10), Err(EpochChanged));
        assert_eq!(r.outcome(0, 0), Err(EpochChanged), "no position");
        assert_eq!(read(7, 10, 4, true).outcome(7, 5), Err(TooLarge));
        assert_eq!(read(7, 0, 1, false).outcome(7, 0), Ok(()), "empty epoch");
    }
}
