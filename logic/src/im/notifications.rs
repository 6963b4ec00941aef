//! The message box: friend requests, group join requests, their results and notices, per user, with
//! read state. Every new item is pushed live (op 1002); marking items read tells my other devices the
//! new unread count (op 1008).

use imcloud_common::im::events::{LiveEvent, NotificationsReadEvent};
use imcloud_common::im::notifications::*;
use imcloud_common::im::operations::{CreateNotice, ListNotifications, ReadNotifications};
use serde_json::{Value, json};
use sqlx::FromRow;

use super::db::now_ms;
use super::error::ImError;
use super::paging;
use super::{Caller, Done, Event, Im, ImResult};

#[derive(Debug, Clone, FromRow)]
struct Row {
    id: i64,
    kind: String,
    payload: String,
    is_read: i64,
    created_at: i64,
}

impl From<Row> for Notification {
    fn from(r: Row) -> Notification {
        Notification {
            id: r.id,
            kind: r.kind,
            payload: serde_json::from_str(&r.payload).unwrap_or(Value::Null),
            read: r.is_read != 0,
            created_at: r.created_at,
        }
    }
}

impl Im {
    /// A system notice from a trusted backend to users' message boxes (kind `system`).
    pub(crate) async fn send_notice(&self, r: CreateNotice) -> ImResult<NoticeSent> {
        let req = r.body;
        if req.user_ids.is_empty() || req.user_ids.len() > 1000 {
            return Err(ImError::invalid("user_ids must list 1 to 1000 users"));
        }
        let mut events = Vec::new();
        let mut unknown = Vec::new();
        let mut ids: Vec<i64> = req.user_ids.iter().map(|i| i.get()).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            if self
                .find_user(id)
                .await?
                .is_none_or(|u| u.deleted_at.is_some())
            {
                unknown.push(id);
                continue;
            }
            events.push(
                self.notify(
                    id,
                    "system",
                    json!({"title": req.title, "content": req.content}),
                )
                .await?,
            );
        }
        Ok(Done::ok(NoticeSent {
            sent: events.len(),
            unknown_user_ids: unknown,
        })
        .events(events))
    }

    /// Stores a message-box item for `user` and returns the event that announces it.
    pub(crate) async fn notify(
        &self,
        user: i64,
        kind: &str,
        payload: Value,
    ) -> Result<Event, ImError> {
        let row = sqlx::query_as::<_, Row>(
            "INSERT INTO notifications (user_id, kind, payload, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id, kind, payload, is_read, created_at",
        )
        .bind(user)
        .bind(kind)
        .bind(payload.to_string())
        .bind(now_ms())
        .fetch_one(&self.db.pool)
        .await?;
        Ok(Event::new(
            vec![user],
            LiveEvent::Notification(Notification::from(row)),
        ))
    }

    async fn unread_notifications(&self, me: i64) -> Result<i64, ImError> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND is_read = 0",
        )
        .bind(me)
        .fetch_one(&self.db.pool)
        .await?)
    }

    pub(crate) async fn notifications(
        &self,
        c: &Caller<'_>,
        r: ListNotifications,
    ) -> ImResult<NotificationPage> {
        let (limit, offset) = paging::page_of(&r.query)?;
        let rows = sqlx::query_as::<_, Row>(
            "SELECT id, kind, payload, is_read, created_at FROM notifications WHERE user_id = $1 \
             ORDER BY id DESC LIMIT $2 OFFSET $3",
        )
        .bind(c.me)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.db.pool)
        .await?;
        Ok(Done::ok(NotificationPage {
            items: rows.into_iter().map(Notification::from).collect(),
            unread: self.unread_notifications(c.me).await?,
        }))
    }

    pub(crate) async fn read_notifications(
        &self,
        c: &Caller<'_>,
        r: ReadNotifications,
    ) -> ImResult<Unread> {
        let me = c.me;
        match r.body.ids {
            None => {
                sqlx::query("UPDATE notifications SET is_read = 1 WHERE user_id = $1")
                    .bind(me)
                    .execute(&self.db.pool)
                    .await?;
            }
            Some(ids) => {
                if ids.len() > 500 {
                    return Err(ImError::invalid("at most 500 ids at once"));
                }
                for id in ids {
                    sqlx::query(
                        "UPDATE notifications SET is_read = 1 WHERE user_id = $1 AND id = $2",
                    )
                    .bind(me)
                    .bind(id)
                    .execute(&self.db.pool)
                    .await?;
                }
            }
        }
        let unread = self.unread_notifications(me).await?;
        Ok(Done::ok(Unread { unread }).event(
            vec![me],
            LiveEvent::NotificationsRead(NotificationsReadEvent { unread }),
        ))
    }
}
