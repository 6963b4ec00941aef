//! The IM tier's error: an HTTP status, a stable machine-readable code and a readable message (and,
//! for `rate_limited`, how long to wait). The api answers it as `{"error":{"code","message"}}`; op 4
//! answers `{"code": -status, "message", "error"}`.

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ImError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// 429 only: seconds until the limit lets the caller through again.
    pub retry_after_secs: Option<u32>,
}

impl ImError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ImError {
        ImError {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
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

    pub fn unavailable(message: impl Into<String>) -> ImError {
        ImError::new(503, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> ImError {
        ImError::new(500, "internal", message)
    }

    /// 429: a limit was reached; retry after `secs` (at least 1).
    pub fn rate_limited(message: impl Into<String>, secs: u64) -> ImError {
        let secs = secs.clamp(1, u32::MAX as u64) as u32;
        ImError {
            retry_after_secs: Some(secs),
            ..ImError::new(429, "rate_limited", message)
        }
    }

    pub fn body(&self) -> Value {
        let mut b = json!({"error": {"code": self.code, "message": self.message}});
        if let Some(s) = self.retry_after_secs {
            b["error"]["retry_after_secs"] = json!(s);
        }
        b
    }
}

impl From<sqlx::Error> for ImError {
    fn from(e: sqlx::Error) -> ImError {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                imcloud_common::engine_errors::count("database");
                tracing::warn!("database unavailable: {e}");
                ImError::unavailable("the database is unavailable")
            }
            // A row this request relied on went away meanwhile (a concurrent delete).
            sqlx::Error::RowNotFound => ImError::not_found("it was removed meanwhile"),
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                ImError::conflict("something this request refers to was removed meanwhile; retry")
            }
            e => {
                imcloud_common::engine_errors::count("database");
                tracing::error!("database: {e}");
                ImError::internal("internal database error")
            }
        }
    }
}

/// Whether a database error is a unique-constraint violation (a lost race for a unique value).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}
