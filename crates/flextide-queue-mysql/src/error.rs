//! Maps sqlx / server errors into `QueueError`, with a retry classification.

use flextide_queue_core::QueueError;
use sqlx::mysql::MySqlDatabaseError;

use crate::BACKEND;

/// Server error numbers that mean "try again": the transaction was rolled
/// back or the connection is going away, not that the request was wrong.
const RETRYABLE: &[u16] = &[
    1205, // ER_LOCK_WAIT_TIMEOUT
    1213, // ER_LOCK_DEADLOCK
    1637, // ER_TOO_MANY_CONCURRENT_TRXS
    1180, // ER_ERROR_DURING_COMMIT
    1181, // ER_ERROR_DURING_ROLLBACK
    3024, // ER_QUERY_TIMEOUT (max_execution_time)
    1969, // MariaDB: statement timeout
    3572, // ER_LOCK_NOWAIT
];

/// Server error numbers that mean the connection is lost or refused for now.
const CONNECTION: &[u16] = &[
    1040, // ER_CON_COUNT_ERROR: too many connections
    1053, // ER_SERVER_SHUTDOWN
    1077, // ER_NORMAL_SHUTDOWN
    1078, // ER_GOT_SIGNAL
    1079, // ER_SHUTDOWN_COMPLETE
    1152, // ER_ABORTING_CONNECTION
    1158, 1159, 1160, 1161, // network read / write errors and timeouts
    1317, // ER_QUERY_INTERRUPTED (KILL QUERY)
    1927, // MariaDB: ER_CONNECTION_KILLED
    2002, 2003, 2006, 2013, // client-side: cannot connect, server gone away, lost connection
    4031, // MySQL 8: disconnected by the server for inactivity
];

/// Server error numbers that a retry cannot fix: credentials, database.
const CONFIGURATION: &[u16] = &[
    1044, // ER_DBACCESS_DENIED_ERROR
    1045, // ER_ACCESS_DENIED_ERROR
    1049, // ER_BAD_DB_ERROR
    1142, // ER_TABLEACCESS_DENIED_ERROR
    1227, // ER_SPECIFIC_ACCESS_DENIED_ERROR
];

/// Maps a sqlx error into the queue's error type. Connection URLs and
/// passwords never appear in the result: sqlx's configuration errors are
/// replaced by a fixed text.
pub(crate) fn map_err(error: sqlx::Error) -> QueueError {
    match error {
        sqlx::Error::Database(db) => {
            let Some(number) = db
                .try_downcast_ref::<MySqlDatabaseError>()
                .map(MySqlDatabaseError::number)
            else {
                return QueueError::backend_error(BACKEND, false, db.message().to_owned());
            };
            if number == 1146 {
                return QueueError::configuration(
                    BACKEND,
                    format!(
                        "the queue tables are missing ({}); run flextide_queue_mysql::migrate() first",
                        db.message()
                    ),
                );
            }
            if CONFIGURATION.contains(&number) {
                return QueueError::configuration(BACKEND, db.message().to_owned());
            }
            if CONNECTION.contains(&number) {
                return QueueError::connection(BACKEND, sqlx::Error::Database(db));
            }
            QueueError::backend_error(
                BACKEND,
                RETRYABLE.contains(&number),
                sqlx::Error::Database(db),
            )
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => QueueError::connection(BACKEND, error),
        sqlx::Error::PoolClosed => {
            QueueError::configuration(BACKEND, "the connection pool was closed")
        }
        sqlx::Error::Configuration(_) => {
            // The source may quote the URL it failed to parse: keep it out.
            QueueError::configuration(BACKEND, "invalid MySQL connection settings (check the URL)")
        }
        other => QueueError::backend_error(BACKEND, false, other),
    }
}

/// Whether the server rolled the request back over a lock conflict
/// (deadlock victim, lock wait timeout), so running it again is safe.
pub(crate) fn is_lock_conflict(error: &QueueError) -> bool {
    let QueueError::Backend { source, .. } = error else {
        return false;
    };
    match source.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(db)) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .is_some_and(|e| matches!(e.number(), 1205 | 1213)),
        _ => false,
    }
}

/// A stand-in for an error that has to be reported for several batch items:
/// same variant where it matters (retryability), same text.
pub(crate) fn duplicate(error: &QueueError) -> QueueError {
    match error {
        QueueError::Connection { .. } => QueueError::connection(BACKEND, error.to_string()),
        QueueError::Configuration { message, .. } => {
            QueueError::configuration(BACKEND, message.clone())
        }
        QueueError::InvalidMessage { reason, .. } => {
            QueueError::invalid_message(BACKEND, reason.clone())
        }
        QueueError::PayloadTooLarge { size, max, .. } => QueueError::PayloadTooLarge {
            backend: BACKEND,
            size: *size,
            max: *max,
        },
        QueueError::Unsupported { operation, .. } => QueueError::unsupported(BACKEND, operation),
        other => QueueError::backend_error(BACKEND, other.is_retryable(), other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_retryable_and_config_errors_hide_the_url() {
        let io = map_err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )));
        assert!(matches!(io, QueueError::Connection { .. }) && io.is_retryable());
        let cfg = map_err(sqlx::Error::Configuration(
            "bad url mysql://u:secret@h/db".into(),
        ));
        assert!(!cfg.is_retryable());
        assert!(!cfg.to_string().contains("secret"));
        assert!(duplicate(&io).is_retryable());
        assert!(!duplicate(&cfg).is_retryable());
    }
}
