//! The IM tier's error: an HTTP status, a stable machine-readable code and a readable message. The api
//! answers it as `{"error":{"code","message"}}`.

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ImError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ImError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ImError {
        ImError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ImError {
        ImError::new(400, "invalid_argument", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> ImError {
        ImError::new(401, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ImError {
        ImError::new(403, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ImError {
        ImError::new(404, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> ImError {
        ImError::new(409, "conflict", message)
    }

    pub fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl From<sqlx::Error> for ImError {
    fn from(e: sqlx::Error) -> ImError {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                imcloud_common::engine_errors::count("database");
                tracing::warn!("database unavailable: {e}");
                ImError::new(503, "unavailable", "the database is unavailable")
            }
            // A row this request relied on went away meanwhile (a concurrent delete).
            sqlx::Error::RowNotFound => ImError::not_found("it was removed meanwhile"),
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                ImError::conflict("something this request refers to was removed meanwhile; retry")
            }
            e => {
                imcloud_common::engine_errors::count("database");
                tracing::error!("database: {e}");
                ImError::new(500, "internal", "internal database error")
            }
        }
    }
}

/// Whether a database error is a unique-constraint violation (a lost race for a unique value).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}
