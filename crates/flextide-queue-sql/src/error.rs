//! sqlx errors mapped into `QueueError`: the logic once, each engine
//! supplying only the table of what its codes mean.

use std::io::ErrorKind;

use flextide_queue_core::QueueError;
use sqlx::error::DatabaseError;

/// What a database error means for the queue, as an engine's code table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The connection is lost or refused for now: retryable.
    Connection,
    /// The request was rolled back (deadlock, lock wait, busy): retryable.
    Retryable,
    /// Credentials, permissions, a database that does not exist or is not
    /// usable: a retry cannot fix it.
    Configuration,
    /// Our tables or columns are missing or outdated: run `migrate`.
    Schema,
    /// The server refused a value as too big.
    TooBig,
    /// Anything else: not retryable.
    Other,
}

/// One engine's error vocabulary.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// The backend's short name in errors (`"postgres"`).
    pub backend: &'static str,
    /// The engine's name in messages (`"PostgreSQL"`).
    pub engine: &'static str,
    /// What to run when the tables are missing (`flextide_queue_postgres::migrate()`).
    pub migrate: &'static str,
    /// The code table.
    pub classify: fn(&dyn DatabaseError) -> Class,
}

impl Dialect {
    /// Turns a driver error into the queue's error type. Connection
    /// settings (URLs, passwords) never appear in the result.
    pub fn map(&self, error: sqlx::Error) -> QueueError {
        let backend = self.backend;
        match error {
            sqlx::Error::Database(db) => {
                let message = db.message().to_owned();
                match (self.classify)(&*db) {
                    Class::Connection => QueueError::connection(backend, sqlx::Error::Database(db)),
                    Class::Retryable => {
                        QueueError::backend_error(backend, true, sqlx::Error::Database(db))
                    }
                    Class::Configuration => QueueError::configuration(backend, message),
                    Class::Schema => QueueError::configuration(backend, self.schema_hint(&message)),
                    Class::TooBig => QueueError::invalid_message(
                        backend,
                        format!("{} refused the value: {message}", self.engine),
                    ),
                    Class::Other => {
                        QueueError::backend_error(backend, false, sqlx::Error::Database(db))
                    }
                }
            }
            e @ (sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::BeginFailed) => QueueError::connection(backend, e),
            sqlx::Error::PoolTimedOut => {
                QueueError::connection(backend, "timed out waiting for a pooled connection")
            }
            // The pool was closed on purpose: waiting will not reopen it.
            sqlx::Error::PoolClosed => {
                QueueError::backend_error(backend, false, "the connection pool was closed")
            }
            // The source may quote the URL it failed to parse: keep it out.
            sqlx::Error::Configuration(_) => QueueError::configuration(
                backend,
                format!(
                    "invalid {} connection settings (check the URL)",
                    self.engine
                ),
            ),
            e @ (sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::Decode(_)) => {
                QueueError::configuration(backend, self.schema_hint(&e.to_string()))
            }
            e => QueueError::backend_error(backend, false, e),
        }
    }

    /// [`Dialect::map`] for an error of opening a connection to `target`
    /// (`host:port`, or a file's path): says where, and says
    /// `connection refused at HOST:PORT` for a refused connection.
    pub fn map_connect(&self, target: &str, error: sqlx::Error) -> QueueError {
        match &error {
            sqlx::Error::Io(io) if io.kind() == ErrorKind::ConnectionRefused => {
                QueueError::connection(self.backend, format!("connection refused at {target}"))
            }
            sqlx::Error::Io(io) => {
                QueueError::connection(self.backend, format!("cannot connect to {target}: {io}"))
            }
            sqlx::Error::Tls(tls) => {
                QueueError::connection(self.backend, format!("TLS with {target} failed: {tls}"))
            }
            sqlx::Error::PoolTimedOut => {
                QueueError::connection(self.backend, format!("timed out connecting to {target}"))
            }
            _ => self.map(error),
        }
    }

    fn schema_hint(&self, what: &str) -> String {
        format!(
            "the queue tables are missing or outdated ({what}): run {}",
            self.migrate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Dialect = Dialect {
        backend: "t",
        engine: "Test",
        migrate: "t::migrate()",
        classify: |_| Class::Other,
    };

    #[test]
    fn classification_of_driver_errors() {
        let io = T.map(sqlx::Error::Io(ErrorKind::ConnectionReset.into()));
        assert!(matches!(io, QueueError::Connection { .. }) && io.is_retryable());
        assert!(T.map(sqlx::Error::PoolTimedOut).is_retryable());
        let closed = T.map(sqlx::Error::PoolClosed);
        assert!(matches!(closed, QueueError::Backend { .. }) && !closed.is_retryable());
        let cfg = T.map(sqlx::Error::Configuration(
            "bad url mysql://u:secret@h/db".into(),
        ));
        assert!(!cfg.is_retryable() && !cfg.to_string().contains("secret"));
        let col = T.map(sqlx::Error::ColumnNotFound("pri".into()));
        assert!(col.to_string().contains("t::migrate()"));
    }

    #[test]
    fn refused_connections_name_the_address() {
        let e = T.map_connect(
            "db.example:5433",
            sqlx::Error::Io(ErrorKind::ConnectionRefused.into()),
        );
        assert!(e.is_retryable());
        assert!(
            e.to_string()
                .contains("connection refused at db.example:5433"),
            "{e}"
        );
    }
}
