//! The members of one room within one bucket (a room spans buckets; each holds its own share).

use std::collections::HashMap;
use std::sync::Arc;

use crate::batch::Batch;
use crate::channel::Channel;

#[derive(Default)]
pub struct Room {
    members: HashMap<u64, Arc<Channel>>,
}

impl Room {
    pub fn join(&mut self, ch: Arc<Channel>) {
        self.members.insert(ch.conn_id, ch);
    }

    /// Removes a member; `true` when the room is now empty.
    pub fn leave(&mut self, conn_id: u64) -> bool {
        self.members.remove(&conn_id);
        self.members.is_empty()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Queues a push to every member (this is room `id`); returns how many got it.
    pub fn push(&self, id: &str, batch: &Batch) -> u32 {
        self.members
            .values()
            .filter(|ch| ch.push_room(id, batch))
            .count() as u32
    }
}
