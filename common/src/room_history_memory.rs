//! The embedded room history (standalone): each room's last `size` persistent messages in memory, dropped
//! `ttl` after the room's last append. Lost with the process, so a restarted process starts every room
//! in a new epoch (epochs are microseconds since the Unix epoch, strictly increasing within the process).
//! Expired rooms are swept at most once per `ttl`, during an append or read.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::room_history::{Entry, HistoryError, MAX_EPOCH, NewEntry, Read, RoomHistory, Source};

struct Kept {
    entry: Entry,
    source: Option<Source>,
}

struct Room {
    epoch: u64,
    top: u64,
    entries: VecDeque<Kept>,
    expires: Instant,
}

struct Inner {
    rooms: HashMap<String, Room>,
    last_epoch: u64,
    last_sweep: Instant,
}

pub struct MemoryHistory {
    size: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

impl MemoryHistory {
    pub fn new(size: usize, ttl: Duration) -> MemoryHistory {
        MemoryHistory {
            size: size.max(1),
            ttl,
            inner: Mutex::new(Inner {
                rooms: HashMap::new(),
                last_epoch: 0,
                last_sweep: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn new_epoch(&mut self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        self.last_epoch = now.max(self.last_epoch + 1) & MAX_EPOCH;
        self.last_epoch
    }

    fn sweep(&mut self, ttl: Duration) {
        let now = Instant::now();
        if now.duration_since(self.last_sweep) >= ttl {
            self.last_sweep = now;
            self.rooms.retain(|_, r| r.expires > now);
        }
    }

    /// The room's live history, a new empty one if it has none (or it expired).
    fn room(&mut self, name: &str, ttl: Duration) -> &mut Room {
        let now = Instant::now();
        if self.rooms.get(name).is_some_and(|r| r.expires <= now) {
            self.rooms.remove(name);
        }
        if !self.rooms.contains_key(name) {
            let epoch = self.new_epoch();
            self.rooms.insert(
                name.to_string(),
                Room {
                    epoch,
                    top: 0,
                    entries: VecDeque::new(),
                    expires: now + ttl,
                },
            );
        }
        self.rooms.get_mut(name).expect("just inserted")
    }
}

impl Room {
    /// The offset a redelivered message got the first time, if it is still kept.
    fn redelivered(&self, source: &Source) -> Option<u64> {
        let last = self.entries.back()?.source.as_ref()?;
        if last.scope != source.scope || last.position < source.position {
            return None;
        }
        self.entries
            .iter()
            .rev()
            .find(|k| k.source.as_ref() == Some(source))
            .map(|k| k.entry.offset)
    }
}

#[async_trait]
impl RoomHistory for MemoryHistory {
    async fn append(
        &self,
        room: &str,
        entries: &[NewEntry],
        reset: bool,
    ) -> Result<(u64, Vec<u64>), HistoryError> {
        let mut inner = self.lock();
        inner.sweep(self.ttl);
        if reset {
            inner.rooms.remove(room);
        }
        let r = inner.room(room, self.ttl);
        let mut offsets = Vec::with_capacity(entries.len());
        for e in entries {
            if let Some(offset) = e.source.as_ref().and_then(|s| r.redelivered(s)) {
                offsets.push(offset);
                continue;
            }
            r.top += 1;
            r.entries.push_back(Kept {
                entry: Entry {
                    offset: r.top,
                    op: e.op,
                    body: e.body.clone(),
                },
                source: e.source.clone(),
            });
            if r.entries.len() > self.size {
                r.entries.pop_front();
            }
            offsets.push(r.top);
        }
        r.expires = Instant::now() + self.ttl;
        Ok((r.epoch, offsets))
    }

    async fn read(
        &self,
        room: &str,
        epoch: u64,
        offset: u64,
        max_bytes: usize,
    ) -> Result<Read, HistoryError> {
        let mut inner = self.lock();
        inner.sweep(self.ttl);
        let r = inner.room(room, self.ttl);
        let first = r.entries.front().map_or(r.top + 1, |k| k.entry.offset);
        let mut read = Read {
            epoch: r.epoch,
            top: r.top,
            first,
            entries: Vec::new(),
            truncated: false,
        };
        if epoch != r.epoch || offset >= r.top || offset + 1 < first {
            return Ok(read);
        }
        let mut bytes = 0;
        for k in r.entries.iter().filter(|k| k.entry.offset > offset) {
            bytes += k.entry.body.len();
            if bytes > max_bytes && !read.entries.is_empty() {
                read.truncated = true;
                break;
            }
            read.entries.push(k.entry.clone());
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let ttl = Duration::from_secs(1);
        let h = MemoryHistory::new(crate::room_history_conformance::SIZE, ttl);
        crate::room_history_conformance::run(&h, ttl).await;
    }

    #[tokio::test]
    async fn a_new_process_starts_a_new_epoch() {
        let ttl = Duration::from_secs(60);
        let before = MemoryHistory::new(4, ttl);
        let (e1, _) = before.append("r", &[], false).await.unwrap();
        let after = MemoryHistory::new(4, ttl);
        let (e2, _) = after.append("r", &[], false).await.unwrap();
        assert!(e2 > e1, "{e2} after {e1}");
    }
}
