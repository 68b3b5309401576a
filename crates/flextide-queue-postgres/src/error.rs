//! PostgreSQL's SQLSTATE codes, mapped into `QueueError` by the shared
//! [`Dialect`]: a table, not logic.

use flextide_queue_core::QueueError;
use flextide_queue_sql::{Class, Dialect};
use sqlx::error::DatabaseError;

use crate::BACKEND;

/// PostgreSQL's error vocabulary.
pub(crate) const DIALECT: Dialect = Dialect {
    backend: BACKEND,
    engine: "PostgreSQL",
    migrate: "flextide_queue_postgres::migrate()",
    classify,
};

/// What an SQLSTATE means for the queue.
fn classify(db: &dyn DatabaseError) -> Class {
    let code = db.code().unwrap_or_default();
    match &*code {
        // connection_exception class; admin/crash shutdown, cannot connect
        // now, idle session timeout
        c if c.starts_with("08") => Class::Connection,
        "57P01" | "57P02" | "57P03" | "57P05" => Class::Connection,
        // serialization_failure, deadlock_detected, lock_not_available,
        // query_canceled (statement_timeout), insufficient resources
        "40001" | "40P01" | "55P03" | "57014" | "53000" | "53100" | "53200" | "53300" | "53400" => {
            Class::Retryable
        }
        // undefined_table, invalid_schema_name, undefined_column
        "42P01" | "3F000" | "42703" => Class::Schema,
        // invalid_authorization_specification and friends
        c if c.starts_with("28") => Class::Configuration,
        // program_limit_exceeded (a value too big for a row)
        "54000" => Class::TooBig,
        _ => Class::Other,
    }
}

/// Turns a driver error into the queue's error type.
pub(crate) fn map_err(err: sqlx::Error) -> QueueError {
    DIALECT.map(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_errors() {
        assert!(map_err(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(!map_err(sqlx::Error::PoolClosed).is_retryable());
    }
}
