//! Maps sqlx / server errors into `QueueError`, with a retry classification.

use flextide_queue_core::QueueError;
use flextide_queue_sql::{Class, Dialect};
use sqlx::{error::DatabaseError, mysql::MySqlDatabaseError};

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

/// MySQL's and MariaDB's error vocabulary.
pub(crate) const DIALECT: Dialect = Dialect {
    backend: BACKEND,
    engine: "MySQL",
    migrate: "flextide_queue_mysql::migrate()",
    classify,
};

/// What a server error number means for the queue.
fn classify(db: &dyn DatabaseError) -> Class {
    let Some(number) = db
        .try_downcast_ref::<MySqlDatabaseError>()
        .map(MySqlDatabaseError::number)
    else {
        return Class::Other;
    };
    match number {
        1146 | 1054 => Class::Schema, // ER_NO_SUCH_TABLE, ER_BAD_FIELD_ERROR
        1046 => Class::Configuration, // ER_NO_DB_ERROR
        1153 | 1406 => Class::TooBig, // ER_NET_PACKET_TOO_LARGE, ER_DATA_TOO_LONG
        n if CONFIGURATION.contains(&n) => Class::Configuration,
        n if CONNECTION.contains(&n) => Class::Connection,
        n if RETRYABLE.contains(&n) => Class::Retryable,
        _ => Class::Other,
    }
}

/// Maps a sqlx error into the queue's error type. Connection URLs and
/// passwords never appear in the result.
pub(crate) fn map_err(error: sqlx::Error) -> QueueError {
    DIALECT.map(error)
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
    }
}
