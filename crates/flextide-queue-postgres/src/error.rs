//! Maps sqlx errors into `QueueError` with the right retry classification.

use flextide_queue_core::QueueError;

use crate::BACKEND;

/// SQLSTATE codes that a retry can fix.
fn retryable_state(code: &str) -> bool {
    matches!(
        code,
        "40001" // serialization_failure
            | "40P01" // deadlock_detected
            | "55P03" // lock_not_available
            | "57014" // query_canceled (statement_timeout)
            | "53000" | "53100" | "53200" | "53300" | "53400" // insufficient resources, too many connections
    )
}

/// SQLSTATE codes that mean the connection is gone or going.
fn connection_state(code: &str) -> bool {
    code.starts_with("08") // connection_exception class
        || matches!(code, "57P01" | "57P02" | "57P03" | "57P05") // admin/crash shutdown, cannot connect now, idle session timeout
}

/// Turns a driver error into the queue's error type.
pub(crate) fn map_err(err: sqlx::Error) -> QueueError {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => {
            QueueError::connection(BACKEND, err)
        }
        sqlx::Error::PoolTimedOut => QueueError::connection(BACKEND, err),
        sqlx::Error::PoolClosed => QueueError::backend_error(BACKEND, false, err),
        // A protocol error is almost always a connection broken mid-message.
        sqlx::Error::Protocol(_) => QueueError::backend_error(BACKEND, true, err),
        sqlx::Error::Configuration(_) => {
            QueueError::configuration(BACKEND, format!("invalid connection settings: {err}"))
        }
        sqlx::Error::Database(ref db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if connection_state(&code) {
                QueueError::connection(BACKEND, err)
            } else if code == "42P01" || code == "3F000" {
                QueueError::configuration(
                    BACKEND,
                    format!(
                        "the queue tables are missing ({}): run flextide_queue_postgres::migrate()",
                        db.message()
                    ),
                )
            } else if code == "42703" {
                QueueError::configuration(
                    BACKEND,
                    format!(
                        "the queue tables are outdated ({}): run flextide_queue_postgres::migrate()",
                        db.message()
                    ),
                )
            } else if code.starts_with("28") {
                QueueError::configuration(
                    BACKEND,
                    format!("authentication failed: {}", db.message()),
                )
            } else {
                QueueError::backend_error(BACKEND, retryable_state(&code), err)
            }
        }
        other => QueueError::backend_error(BACKEND, false, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_retryable() {
        let e = map_err(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(matches!(e, QueueError::Connection { .. }));
        assert!(e.is_retryable());
        assert!(map_err(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(!map_err(sqlx::Error::PoolClosed).is_retryable());
    }

    #[test]
    fn sqlstate_classes() {
        assert!(retryable_state("40001") && retryable_state("40P01"));
        assert!(connection_state("57P01") && connection_state("08006"));
        assert!(!retryable_state("23505") && !connection_state("42P01"));
    }
}
