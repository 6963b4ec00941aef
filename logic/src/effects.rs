//! What an operation asks the push core to do once it has committed: pushes to users' connections
//! and connections to close. The IM tier returns these (from `/v1` calls, op 4 commands and the
//! connection hooks); `LogicService` carries them out through the `Pusher`, best-effort: a push that
//! cannot be queued is logged and counted, and its recipients catch up from the stores.
//!
//! They are queued before the operation's reply returns (the `ImCall` answer, the op 5, the op 8 of a
//! login connection) and delivered asynchronously after it.

use imcloud_common::im::events::LiveEvent;

/// A push to every connection of some users.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub to: Vec<i64>,
    pub op: i32,
    pub body: Vec<u8>,
}

impl Event {
    /// A live IM event: its op and its JSON body.
    pub fn new(to: Vec<i64>, event: LiveEvent) -> Event {
        Event {
            to,
            op: event.op(),
            body: serde_json::to_vec(&event).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Effects {
    pub events: Vec<Event>,
    /// Connections to close (keys) and the reason they are told.
    pub kick: Option<(Vec<String>, String)>,
}

impl Effects {
    pub fn event(&mut self, to: Vec<i64>, event: LiveEvent) {
        if !to.is_empty() {
            self.events.push(Event::new(to, event));
        }
    }

    pub fn push(&mut self, e: Event) {
        if !e.to.is_empty() {
            self.events.push(e);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.kick.is_none()
    }
}
