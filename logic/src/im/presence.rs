//! Presence: a user's friends hear when the user's first connection opens and last connection closes
//! (on any comet, abrupt closes included: the comet reports every closed connection). Logic calls this
//! from Connect and Disconnect; lists show the current state from the session store.

use imcloud_common::im::events::{LiveEvent, PresenceEvent};

use super::error::ImError;
use super::{Event, Im};

impl Im {
    /// The event telling `mid`'s online friends that `mid` is now online or offline (`None` when no
    /// friend is online).
    pub async fn presence_event(&self, mid: i64, online: bool) -> Result<Option<Event>, ImError> {
        let friends: Vec<i64> =
            sqlx::query_scalar::<_, i64>("SELECT friend_id FROM friendships WHERE user_id = $1")
                .bind(mid)
                .fetch_all(&self.db.pool)
                .await?;
        let live = self.online(&friends).await;
        let to: Vec<i64> = friends.into_iter().filter(|f| live.contains(f)).collect();
        if to.is_empty() {
            return Ok(None);
        }
        Ok(Some(Event::new(
            to,
            LiveEvent::Presence(PresenceEvent {
                user_id: mid,
                online,
            }),
        )))
    }
}
