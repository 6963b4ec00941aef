//! A shard of a comet's connections (by key hash) and of its rooms. Each bucket has its own lock, so
//! pushes to different buckets never contend. Lock order: bucket, then channel state.
//!
//! Each bucket holds its channels (a set of `Arc<Channel>` looked up by key, the key stored once, in the
//! channel) and its share of every room (`room id -> Room{conn_id -> Arc<Channel>}`). A room push visits
//! every bucket, each under its own read lock; a key push takes a read lock only to clone the
//! `Arc<Channel>`. No code takes a bucket lock while holding a channel state; the outbox's own lock is a
//! leaf, and all of them are `std` locks never held across an `.await`. `put` of a key already present
//! (same key, so same bucket) removes the older channel from its rooms and kicks it (`Kick::Replaced`);
//! `remove` removes a key's entry only if the conn id still matches, so a late removal never drops the
//! successor. Room joins over `comet_max_rooms` are refused and counted in
//! `imcloud_comet_rooms_refused_total`. `change_auth_room` is a sequence of joins and leaves, not one
//! critical section; only the connection's own task calls it.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::batch::Batch;
#[cfg(test)]
use crate::channel::MAX_ROOMS;
use crate::channel::{Channel, Kick};
use crate::room::Room;

/// A channel in its bucket's set, found by its key: the set's entry is the `Arc` alone (8 bytes), not a
/// second copy of the key beside it.
struct ByKey(Arc<Channel>);

impl Borrow<str> for ByKey {
    fn borrow(&self) -> &str {
        &self.0.key
    }
}

impl PartialEq for ByKey {
    fn eq(&self, other: &ByKey) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for ByKey {}

impl Hash for ByKey {
    // As `str` hashes, so that lookups by `&str` find it (`Borrow`'s contract).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key.as_str().hash(state)
    }
}

#[derive(Default)]
struct Inner {
    channels: HashSet<ByKey>,
    rooms: HashMap<String, Room>,
}

#[derive(Default)]
pub struct Bucket {
    inner: RwLock<Inner>,
}

impl Inner {
    fn leave_room(&mut self, room: &str, conn_id: u64) {
        if let Some(r) = self.rooms.get_mut(room)
            && r.leave(conn_id)
        {
            self.rooms.remove(room);
        }
    }
}

impl Bucket {
    // The critical sections below never panic midway, so a poisoned lock still guards consistent maps.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection with its rooms; an older connection with the same key is removed and kicked.
    pub fn put(&self, ch: Arc<Channel>) {
        let mut inner = self.write();
        if let Some(ByKey(old)) = inner.channels.replace(ByKey(ch.clone())) {
            let rooms = std::mem::take(&mut old.state().rooms);
            for room in rooms {
                inner.leave_room(&room, old.conn_id);
            }
            old.kick(Kick::Replaced);
        }
        let rooms = ch.state().rooms.clone();
        for room in rooms {
            inner.rooms.entry(room).or_default().join(ch.clone());
        }
    }

    /// Removes a connection and its room memberships (unless a newer connection took its key).
    pub fn remove(&self, ch: &Channel) {
        let mut inner = self.write();
        if inner
            .channels
            .get(ch.key.as_str())
            .is_some_and(|c| c.0.conn_id == ch.conn_id)
        {
            inner.channels.remove(ch.key.as_str());
        }
        let rooms = std::mem::take(&mut ch.state().rooms);
        for room in rooms {
            inner.leave_room(&room, ch.conn_id);
        }
    }

    /// Puts a connection in a room. Errors when it is in `max_rooms` rooms already.
    pub fn join(&self, ch: &Arc<Channel>, room: &str, max_rooms: usize) -> Result<(), String> {
        let mut inner = self.write();
        let mut st = ch.state();
        if st.rooms.iter().any(|r| r == room) {
            return Ok(());
        }
        if st.rooms.len() >= max_rooms {
            metrics::counter!("imcloud_comet_rooms_refused_total").increment(1);
            return Err(format!(
                "already in {max_rooms} rooms (the most one connection may join)"
            ));
        }
        st.rooms.push(room.to_string());
        drop(st);
        inner
            .rooms
            .entry(room.to_string())
            .or_default()
            .join(ch.clone());
        Ok(())
    }

    /// Takes a connection out of a room (and clears its auth room if that was it).
    pub fn leave(&self, ch: &Channel, room: &str) {
        let mut inner = self.write();
        let mut st = ch.state();
        st.rooms.retain(|r| r != room);
        st.positions.retain(|(r, _)| r != room);
        if st.auth_room.as_deref() == Some(room) {
            st.auth_room = None;
        }
        drop(st);
        inner.leave_room(room, ch.conn_id);
    }

    /// Moves a connection's auth room (goim op 12); `None` leaves it without one.
    /// The new room counts against `max_rooms` once the old one is left.
    pub fn change_auth_room(
        &self,
        ch: &Arc<Channel>,
        new: Option<&str>,
        max_rooms: usize,
    ) -> Result<(), String> {
        let old = ch.state().auth_room.clone();
        if old.as_deref() == new {
            return Ok(());
        }
        if let Some(new) = new {
            self.join(ch, new, max_rooms + usize::from(old.is_some()))?;
        }
        if let Some(old) = old {
            self.leave(ch, &old);
        }
        ch.state().auth_room = new.map(str::to_string);
        Ok(())
    }

    pub fn channel(&self, key: &str) -> Option<Arc<Channel>> {
        self.read().channels.get(key).map(|c| c.0.clone())
    }

    pub fn push_room(&self, room: &str, batch: &Batch) -> u32 {
        self.read()
            .rooms
            .get(room)
            .map(|r| r.push(room, batch))
            .unwrap_or(0)
    }

    pub fn broadcast(&self, batch: &Batch) -> u32 {
        self.read()
            .channels
            .iter()
            .filter(|ch| ch.0.push(batch))
            .count() as u32
    }

    pub fn channel_count(&self) -> usize {
        self.read().channels.len()
    }

    /// Adds this bucket's room sizes, connections and client IPs to the running totals.
    pub fn count_into(&self, rooms: &mut HashMap<String, i32>, ips: &mut HashSet<IpAddr>) -> usize {
        let inner = self.read();
        for (id, room) in &inner.rooms {
            *rooms.entry(id.clone()).or_default() += room.len() as i32;
        }
        ips.extend(inner.channels.iter().map(|c| c.0.ip));
        inner.channels.len()
    }

    /// Calls `f` on every connection, under the bucket's read lock (`f` must not take a bucket lock).
    pub fn for_each_channel(&self, mut f: impl FnMut(&Arc<Channel>)) {
        self.read().channels.iter().for_each(|c| f(&c.0));
    }

    /// Every connection (a snapshot, for the drain).
    pub fn channels(&self) -> Vec<Arc<Channel>> {
        self.read().channels.iter().map(|c| c.0.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use imcloud_proto::protocol::Proto;

    use super::*;
    use crate::channel::ChannelState;
    use crate::op_filter::OpFilter;
    use crate::outbox::{Outbox, OutboxBudget};

    fn channel(id: u64, key: &str, room: Option<&str>) -> Arc<Channel> {
        let state = ChannelState {
            filter: OpFilter::from_accepts(&[]),
            rooms: room.iter().map(|r| r.to_string()).collect(),
            auth_room: room.map(str::to_string),
            positions: Vec::new(),
            recoveries: 0,
        };
        let outbox = Outbox::new(1 << 20, OutboxBudget::new(1 << 30));
        Arc::new(Channel::new(
            id,
            1,
            key.into(),
            [127, 0, 0, 1].into(),
            outbox,
            state,
        ))
    }

    fn batch() -> Batch {
        Batch::new(vec![Proto {
            ver: 1,
            op: 1000,
            seq: 0,
            body: b"x".to_vec(),
            ..Default::default()
        }])
    }

    #[tokio::test]
    async fn same_key_replaces_and_kicks() {
        let b = Bucket::default();
        let old = channel(1, "k", Some("live://1"));
        let new = channel(2, "k", Some("live://2"));
        b.put(old.clone());
        b.put(new.clone());
        assert_eq!(old.kick_reason(), Kick::Replaced);
        assert_eq!(b.channel("k").unwrap().conn_id, 2);
        assert_eq!(
            b.push_room("live://1", &batch()),
            0,
            "the old connection left its rooms"
        );
        assert_eq!(b.push_room("live://2", &batch()), 1);
        b.remove(&old);
        assert_eq!(
            b.channel("k").unwrap().conn_id,
            2,
            "removing the replaced one keeps the new one"
        );
    }

    #[tokio::test]
    async fn rooms_join_leave_and_change() {
        let b = Bucket::default();
        let ch = channel(1, "k", Some("live://1"));
        b.put(ch.clone());
        b.join(&ch, "live://2", MAX_ROOMS).unwrap();
        b.join(&ch, "live://2", MAX_ROOMS).unwrap();
        assert_eq!(ch.state().rooms, vec!["live://1", "live://2"]);
        b.change_auth_room(&ch, Some("live://3"), MAX_ROOMS)
            .unwrap();
        assert_eq!(ch.state().rooms, vec!["live://2", "live://3"]);
        assert_eq!(ch.state().auth_room.as_deref(), Some("live://3"));
        b.leave(&ch, "live://2");
        let mut rooms = HashMap::new();
        let mut ips = HashSet::new();
        assert_eq!(b.count_into(&mut rooms, &mut ips), 1);
        assert_eq!(rooms, HashMap::from([("live://3".to_string(), 1)]));
        for i in 0..MAX_ROOMS {
            let _ = b.join(&ch, &format!("r{i}"), MAX_ROOMS);
        }
        assert!(b.join(&ch, "one-too-many", MAX_ROOMS).is_err());
        b.remove(&ch);
        assert_eq!(b.channel_count(), 0);
        assert_eq!(b.push_room("live://3", &batch()), 0);
    }
}
