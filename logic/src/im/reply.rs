//! What an IM operation returns: [`Done`], its typed success (status, reply body) plus the
//! [`Effects`] logic carries out after the operation committed (live events to push, connections to
//! close); and [`Reply`], the same encoded for the wire (the ImCall reply, or an op 5 body).

use std::any::Any;

use imcloud_common::im::events::LiveEvent;
use imcloud_common::im::operations::Binary;
use serde::Serialize;

use super::error::ImError;
pub use crate::effects::{Effects, Event};

/// A typed success.
#[derive(Debug)]
pub struct Done<T> {
    pub status: u16,
    pub body: T,
    pub effects: Effects,
}

impl<T> Done<T> {
    pub fn ok(body: T) -> Done<T> {
        Done::status(200, body)
    }

    pub fn created(body: T) -> Done<T> {
        Done::status(201, body)
    }

    pub fn status(status: u16, body: T) -> Done<T> {
        Done {
            status,
            body,
            effects: Effects::default(),
        }
    }

    pub fn event(mut self, to: Vec<i64>, event: LiveEvent) -> Done<T> {
        self.effects.event(to, event);
        self
    }

    pub fn push(mut self, e: Event) -> Done<T> {
        self.effects.push(e);
        self
    }

    pub fn events(mut self, es: impl IntoIterator<Item = Event>) -> Done<T> {
        for e in es {
            self.effects.push(e);
        }
        self
    }
}

/// An operation's answer as it travels: HTTP status, body, content type, and the effects.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: String,
    pub retry_after_secs: u32,
    pub effects: Effects,
}

impl Reply {
    pub fn json(status: u16, data: &impl Serialize) -> Reply {
        Reply {
            status,
            body: serde_json::to_vec(data).unwrap_or_default(),
            content_type: "application/json".into(),
            retry_after_secs: 0,
            effects: Effects::default(),
        }
    }

    pub fn error(e: &ImError) -> Reply {
        let mut r = Reply::json(e.status, &e.body());
        r.retry_after_secs = e.retry_after_secs.unwrap_or(0);
        r
    }

    /// A typed success, encoded (a download's bytes travel as they are).
    pub fn done<T: Serialize + 'static>(d: Done<T>) -> Reply {
        let mut r = match (&d.body as &dyn Any).downcast_ref::<Binary>() {
            Some(b) => Reply {
                status: d.status,
                body: b.data.clone(),
                content_type: b.content_type.clone(),
                retry_after_secs: 0,
                effects: Effects::default(),
            },
            None => Reply::json(d.status, &d.body),
        };
        r.effects = d.effects;
        r
    }
}
