//! The message box: friend requests, group join requests, their results and notices, per user, with
//! read state. Every new item is also pushed live (op 1002).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::FromRow;
use utoipa::ToSchema;

use super::args::Args;
use super::db::now_ms;
use super::error::ImError;
use super::events::{Event, OP_NOTIFICATION};
use super::{Im, ImResult, Reply};

#[derive(Debug, Clone, FromRow)]
struct Row {
    id: i64,
    kind: String,
    payload: String,
    is_read: i64,
    created_at: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Notification {
    pub id: i64,
    /// friend_request, friend_request_result, group_join_request, group_join_result, group_notice
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub read: bool,
    pub created_at: i64,
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

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadNotificationsReq {
    /// Items to mark read; omitted = all.
    pub ids: Option<Vec<i64>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoticeReq {
    /// 1 to 1000 users.
    pub user_ids: Vec<i64>,
    pub title: String,
    #[serde(default)]
    pub content: String,
}

impl Im {
    /// A system notice from a trusted backend to users' message boxes (kind `system`).
    pub(crate) async fn send_notice(&self, a: &Args) -> ImResult {
        let req: NoticeReq = a.body()?;
        if req.user_ids.is_empty() || req.user_ids.len() > 1000 {
            return Err(ImError::invalid("user_ids must list 1 to 1000 users"));
        }
        let title = super::args::text("title", &req.title, 1, 100)?;
        let content = super::args::text("content", &req.content, 0, 2000)?;
        let mut reply_events = Vec::new();
        let mut unknown = Vec::new();
        let mut ids = req.user_ids.clone();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            if self.find_user(id).await?.is_none() {
                unknown.push(id);
                continue;
            }
            reply_events.push(
                self.notify(id, "system", json!({"title": title, "content": content}))
                    .await?,
            );
        }
        let mut reply = Reply::ok(json!({"sent": reply_events.len(), "unknown_user_ids": unknown}));
        for e in reply_events {
            reply = reply.event(e);
        }
        Ok(reply)
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
            OP_NOTIFICATION,
            "notification",
            Notification::from(row),
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

    pub(crate) async fn notifications(&self, me: i64, a: &Args) -> ImResult {
        let (limit, offset) = a.page()?;
        let rows = sqlx::query_as::<_, Row>(
            "SELECT id, kind, payload, is_read, created_at FROM notifications WHERE user_id = $1 \
             ORDER BY id DESC LIMIT $2 OFFSET $3",
        )
        .bind(me)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.db.pool)
        .await?;
        let items: Vec<Notification> = rows.into_iter().map(Notification::from).collect();
        Ok(Reply::ok(
            json!({"items": items, "unread": self.unread_notifications(me).await?}),
        ))
    }

    pub(crate) async fn read_notifications(&self, me: i64, a: &Args) -> ImResult {
        let req: ReadNotificationsReq = a.body()?;
        match req.ids {
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
        Ok(Reply::ok(
            json!({"unread": self.unread_notifications(me).await?}),
        ))
    }
}
