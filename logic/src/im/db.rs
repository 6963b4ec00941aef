//! The IM database: PostgreSQL in production, SQLite in standalone, through sqlx's `Any` driver so that
//! one set of queries (written with `$n` placeholders, integer times and integer flags) serves both.
//! Each engine has its own migrations under `logic/migrations/`.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use imcloud_common::config::redact_url;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::MigrateDatabase;
use sqlx::{Any, AnyPool};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("IMCLOUD_DATABASE_URL must start with postgres:// or sqlite: (got {0:?})")]
    Scheme(String),
    #[error("database at {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("creating {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Sqlite,
}

/// The default database of a node without IMCLOUD_DATABASE_URL: a SQLite file under ./data.
pub const DEFAULT_URL: &str = "sqlite://data/imcloud.db";
/// Longest wait for a pooled connection, connecting included: while PostgreSQL is down, a call fails
/// with a 503 after this long instead of retrying its connect for the 10 s an internal RPC allows (the
/// fault test `a_postgres_crash_refuses_sends_at_once_and_every_acknowledged_message_survives_it` saw
/// sends answer after 10.0 s with the former 10 s here).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub engine: Engine,
}

impl Db {
    /// Connects to `url` (empty = [`DEFAULT_URL`]) and applies the migrations.
    pub async fn open(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let url = if url.is_empty() { DEFAULT_URL } else { url };
        let engine = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Engine::Postgres
        } else if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else {
            return Err(DbError::Scheme(url.to_string()));
        };
        let connect_err = |source: sqlx::Error| DbError::Connect {
            url: redact_url(url),
            source,
        };
        let url = match engine {
            Engine::Sqlite => sqlite_url(url)?,
            Engine::Postgres => url.to_string(),
        };
        if engine == Engine::Postgres && !Any::database_exists(&url).await.map_err(connect_err)? {
            match Any::create_database(&url).await {
                Ok(()) => tracing::info!(url = %redact_url(&url), "created the IM database"),
                // Another logic starting at the same time created it first.
                Err(_) if Any::database_exists(&url).await.unwrap_or(false) => {}
                Err(e) => return Err(connect_err(e)),
            }
        }
        let options = AnyConnectOptions::from_str(&url).map_err(connect_err)?;
        // SQLite serialises writers anyway; one connection avoids SQLITE_BUSY between our own connections.
        let max = if engine == Engine::Sqlite { 1 } else { 16 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(connect_err)?;
        match engine {
            Engine::Postgres => sqlx::migrate!("migrations/postgres").run(&pool).await?,
            Engine::Sqlite => sqlx::migrate!("migrations/sqlite").run(&pool).await?,
        }
        Ok(Db { pool, engine })
    }
}

/// A SQLite url that creates the file (and its directory) when missing.
fn sqlite_url(url: &str) -> Result<String, DbError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Ok(url.to_string());
    }
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|source| DbError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let mut query: Vec<&str> = query.split('&').filter(|q| !q.is_empty()).collect();
    if !query.iter().any(|q| q.starts_with("mode=")) {
        query.push("mode=rwc");
    }
    Ok(format!("sqlite://{path}?{}", query.join("&")))
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_their_file() {
        assert_eq!(
            sqlite_url("sqlite://data/x.db").unwrap_or_default(),
            "sqlite://data/x.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite:/tmp/y.db?mode=ro").unwrap_or_default(),
            "sqlite:///tmp/y.db?mode=ro"
        );
        assert_eq!(
            sqlite_url("sqlite::memory:").unwrap_or_default(),
            "sqlite::memory:"
        );
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
    }
}
