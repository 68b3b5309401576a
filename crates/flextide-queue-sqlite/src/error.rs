//! Maps sqlx and SQLite errors into [`QueueError`], with the retry
//! classification the worker relies on.

use flextide_queue_core::QueueError;

use flextide_queue_sql::{Class, Dialect};
use sqlx::error::DatabaseError;

use crate::BACKEND;

// Primary SQLite result codes (the low byte of an extended code).
const SQLITE_ERROR: i64 = 1;
const SQLITE_PERM: i64 = 3;
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_NOMEM: i64 = 7;
const SQLITE_READONLY: i64 = 8;
const SQLITE_IOERR: i64 = 10;
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_PROTOCOL: i64 = 15;
const SQLITE_SCHEMA: i64 = 17;
const SQLITE_TOOBIG: i64 = 18;
const SQLITE_AUTH: i64 = 23;
const SQLITE_NOTADB: i64 = 26;

/// SQLite's error vocabulary.
pub(crate) const DIALECT: Dialect = Dialect {
    backend: BACKEND,
    engine: "SQLite",
    migrate: "flextide_queue_sqlite::migrate(&pool) (or apply the .sql files of the crate's migrations/ folder)",
    classify,
};

/// What a primary result code (the low byte of an extended one) means.
fn classify(db: &dyn DatabaseError) -> Class {
    let code = db
        .code()
        .and_then(|c| c.parse::<i64>().ok())
        .unwrap_or(SQLITE_ERROR);
    match code & 0xff {
        // Another connection or process holds the write lock longer than
        // busy_timeout: try again later.
        SQLITE_BUSY | SQLITE_LOCKED | SQLITE_PROTOCOL | SQLITE_SCHEMA => Class::Retryable,
        SQLITE_IOERR | SQLITE_FULL | SQLITE_NOMEM => Class::Retryable,
        SQLITE_CANTOPEN => Class::Connection,
        SQLITE_TOOBIG => Class::TooBig,
        SQLITE_READONLY | SQLITE_PERM | SQLITE_AUTH | SQLITE_CORRUPT | SQLITE_NOTADB => {
            Class::Configuration
        }
        _ if is_schema_problem(db.message()) => Class::Schema,
        _ => Class::Other,
    }
}

/// Converts a sqlx error into the matching [`QueueError`].
pub(crate) fn map(error: sqlx::Error) -> QueueError {
    DIALECT.map(error)
}

/// Whether SQLite's message says our tables or columns are missing.
fn is_schema_problem(message: &str) -> bool {
    message.contains("no such table")
        || message.contains("no such column")
        || message.contains("has no column named")
}

/// Whether an error is SQLite's "database is locked" (SQLITE_BUSY / LOCKED).
pub(crate) fn is_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0);
            matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_table_is_configuration_with_hint() {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let err = sqlx::query("SELECT * FROM flextide_queue_messages")
            .execute(&pool)
            .await
            .unwrap_err();
        let mapped = map(err);
        assert!(
            matches!(mapped, QueueError::Configuration { .. }),
            "{mapped:?}"
        );
        assert!(mapped.to_string().contains("migrate"));
        assert!(!mapped.is_retryable());
    }

    #[test]
    fn pool_errors_are_retryable_connection_errors() {
        assert!(matches!(
            map(sqlx::Error::PoolTimedOut),
            QueueError::Connection { .. }
        ));
        assert!(map(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(map(sqlx::Error::WorkerCrashed).is_retryable());
    }

    #[tokio::test]
    async fn busy_is_retryable() {
        let dir = std::env::temp_dir().join(format!(
            "flextide-sqlite-busy-{}.db",
            flextide_queue_core::backend::new_token()
        ));
        let url = format!("sqlite://{}?mode=rwc", dir.display());
        let opts = |timeout| {
            url.parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .busy_timeout(std::time::Duration::from_millis(timeout))
        };
        let a = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts(0))
            .await
            .unwrap();
        let b = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts(0))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&a)
            .await
            .unwrap();
        let mut tx = a.begin_with("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let err = sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&b)
            .await
            .unwrap_err();
        assert!(is_busy(&err), "{err}");
        assert!(map(err).is_retryable());
        tx.rollback().await.unwrap();
        a.close().await;
        b.close().await;
        crate::connect::remove_database_files(&dir);
    }
}
