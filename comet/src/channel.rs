//! One authenticated connection as the buckets see it: identity, outbound queue, op filter and rooms.
//! The connection task owns the socket; everything else reaches the client through [`Channel::send`].
//!
//! `Channel::send` pushes into the `Outbox`, which never waits, so it is safe under a bucket lock; the state
//! (`filter`, `rooms`, `auth_room`) sits under a `Mutex` released before the push. A kick is a
//! first-reason-wins atomic flag plus a wake-up of the outbox (the task's one notification):
//! `Kick::Replaced`, `SlowConsumer`, `ByServer` (with the server's message), `Drain` or `HeartbeatTimeout`
//! (the comet's sweep of heartbeat deadlines, [`crate::heartbeat`]). `MAX_ROOM_LEN`
//! bounds a room id (128 bytes).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::batch::Batch;
use crate::op_filter::OpFilter;
use crate::out_frame::OutFrame;
use crate::outbox::{Outbox, PushError};
use crate::recovery::RoomPos;

/// Most rooms one connection may be in.
pub const MAX_ROOMS: usize = 32;
/// Longest room id accepted.
pub const MAX_ROOM_LEN: usize = 128;

/// Why a connection is being closed from outside its own task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kick {
    None = 0,
    /// Another connection authenticated with the same key.
    Replaced = 1,
    /// Its outbound queue was full: the client does not read fast enough.
    SlowConsumer = 2,
    /// The server closed it on purpose (a push of op 6 to its key, e.g. logged in elsewhere).
    ByServer = 3,
    /// The comet is draining: reconnect hint (op 22), then close (`drain.rs`).
    Drain = 4,
    /// No heartbeat before its deadline ([`crate::heartbeat`]).
    HeartbeatTimeout = 5,
}

#[derive(Debug)]
pub struct ChannelState {
    pub filter: OpFilter,
    /// Every room the connection is in, the auth room included.
    pub rooms: Vec<String>,
    /// The auth room (op 12 changes it); heartbeat replies carry its online count.
    pub auth_room: Option<String>,
    /// The rooms joined with op 23, where persistent messages arrive as publications
    /// ([`crate::recovery`]); empty for every goim client.
    pub positions: Vec<(String, RoomPos)>,
    /// Recoveries started (numbers each attempt).
    pub recoveries: u64,
}

pub struct Channel {
    pub conn_id: u64,
    pub mid: i64,
    pub key: String,
    pub ip: IpAddr,
    /// Frames waiting to be written by the connection task.
    pub outbox: Outbox,
    state: Mutex<ChannelState>,
    kicked: AtomicU8,
    /// Op 4 commands waiting for logic ([`crate::command`]).
    commands: AtomicU32,
    /// When the connection is closed unless a heartbeat comes first, in ms on the comet's clock
    /// ([`crate::heartbeat`]).
    deadline_ms: AtomicU64,
    /// Why the server closed it ([`Kick::ByServer`]), told to the client.
    kick_message: std::sync::OnceLock<String>,
}

impl Channel {
    pub fn new(
        conn_id: u64,
        mid: i64,
        key: String,
        ip: IpAddr,
        outbox: Outbox,
        state: ChannelState,
    ) -> Channel {
        Channel {
            conn_id,
            mid,
            key,
            ip,
            outbox,
            state: Mutex::new(state),
            kicked: AtomicU8::new(0),
            commands: AtomicU32::new(0),
            deadline_ms: AtomicU64::new(u64::MAX),
            kick_message: std::sync::OnceLock::new(),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, ChannelState> {
        // Only simple field updates happen under this lock, so a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an encoded frame; a full queue closes the connection as a slow consumer. `false` if not queued.
    pub fn send(&self, frame: OutFrame) -> bool {
        match self.outbox.push(frame) {
            Ok(()) => true,
            Err(PushError::Full) => {
                self.kick(Kick::SlowConsumer);
                false
            }
            Err(PushError::Closed) => false,
        }
    }

    /// Queues the part of a push this connection's filter accepts. `true` if something was queued.
    pub fn push(&self, batch: &Batch) -> bool {
        let bytes = batch.for_filter(&self.state().filter);
        match bytes {
            Some(b) => self.send(b),
            None => false,
        }
    }

    /// Queues a push to `room`: with positions if the connection joined that room with op 23 and the
    /// push holds persistent messages, else as [`Channel::push`].
    pub fn push_room(&self, room: &str, batch: &Batch) -> bool {
        if batch.has_positions() {
            let mut st = self.state();
            if st.positions.iter().any(|(r, _)| r == room) {
                // Under the state lock: positions and the outbox order move together.
                return crate::recovery::push_positioned(self, &mut st, room, batch);
            }
        }
        self.push(batch)
    }

    /// Moves the heartbeat deadline (ms on the comet's clock, [`crate::comet::Comet::clock_ms`]).
    pub fn set_deadline_ms(&self, at: u64) {
        self.deadline_ms.store(at, Ordering::Relaxed);
    }

    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms.load(Ordering::Relaxed)
    }

    /// Counts one more command in flight, unless `max` already are.
    pub fn begin_command(&self, max: u32) -> bool {
        self.commands
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn end_command(&self) {
        self.commands.fetch_sub(1, Ordering::AcqRel);
    }

    /// Op 4 commands still waiting for logic's answer.
    pub fn commands_in_flight(&self) -> u32 {
        self.commands.load(Ordering::Acquire)
    }

    /// Asks the connection task to close the connection (first reason wins). The task is woken through its
    /// outbox's notification, the one it waits on for pushes.
    pub fn kick(&self, why: Kick) {
        if self
            .kicked
            .compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.outbox.wake();
        }
    }

    /// Closes the connection on the server's behalf, telling the client `message` (op 6).
    pub fn kick_by_server(&self, message: &str) {
        let _ = self.kick_message.set(message.to_string());
        self.kick(Kick::ByServer);
    }

    /// The message of a [`Kick::ByServer`].
    pub fn kick_message(&self) -> &str {
        self.kick_message
            .get()
            .map(String::as_str)
            .unwrap_or("closed by the server")
    }

    pub fn kick_reason(&self) -> Kick {
        match self.kicked.load(Ordering::Acquire) {
            1 => Kick::Replaced,
            2 => Kick::SlowConsumer,
            3 => Kick::ByServer,
            4 => Kick::Drain,
            5 => Kick::HeartbeatTimeout,
            _ => Kick::None,
        }
    }

    /// Resolves once the connection has been kicked. Waits on the outbox's notification, so it is for a
    /// task that does not also wait for pushes (the connection task checks [`Channel::kick_reason`] on
    /// every wake-up instead).
    pub async fn kicked(&self) -> Kick {
        loop {
            let reason = self.kick_reason();
            if reason != Kick::None {
                return reason;
            }
            self.outbox.woken().await;
        }
    }
}

/// Checks a room id from a client.
pub fn valid_room(room: &str) -> Result<(), String> {
    if room.is_empty() {
        Err("empty room id".into())
    } else if room.len() > MAX_ROOM_LEN {
        Err(format!("room id longer than {MAX_ROOM_LEN} bytes"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use imcloud_proto::Frame;

    use crate::outbox::OutboxBudget;

    fn channel(limit: usize) -> Channel {
        let state = ChannelState {
            filter: OpFilter::from_accepts(&[]),
            rooms: vec![],
            auth_room: None,
            positions: Vec::new(),
            recoveries: 0,
        };
        let outbox = Outbox::new(limit, OutboxBudget::new(1 << 20));
        Channel::new(1, 1, "k".into(), [127, 0, 0, 1].into(), outbox, state)
    }

    fn frame() -> OutFrame {
        OutFrame::frame(&Frame::new(1000, 0, Bytes::from_static(b"a")))
    }

    #[tokio::test]
    async fn full_queue_kicks_as_slow_consumer() {
        let ch = channel(1);
        assert!(ch.send(frame()));
        assert!(!ch.send(frame()));
        assert_eq!(ch.kicked().await, Kick::SlowConsumer);
        ch.kick(Kick::Replaced);
        assert_eq!(ch.kick_reason(), Kick::SlowConsumer, "first reason wins");
    }
}
