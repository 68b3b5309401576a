//! Maps Redis errors into `QueueError`, classifying what a retry can fix.

use std::time::Duration;

use flextide_queue_core::QueueError;
use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::BACKEND;

/// The `QueueError` for a driver error raised by `operation` on the server
/// at `addr` (`host:port`, never the URL: it may hold a password). `after`
/// is the response timeout in force, reported when the call timed out.
pub(crate) fn map(
    operation: &'static str,
    after: Duration,
    addr: &str,
    e: RedisError,
) -> QueueError {
    if e.is_timeout() {
        return QueueError::Timeout {
            backend: BACKEND,
            operation,
            after,
        };
    }
    if e.is_connection_refusal() {
        return QueueError::connection(BACKEND, format!("connection refused at {addr}"));
    }
    if e.is_io_error() || e.is_connection_dropped() {
        return QueueError::connection(BACKEND, e);
    }
    let text = e.to_string();
    match e.kind() {
        ErrorKind::AuthenticationFailed
        | ErrorKind::InvalidClientConfig
        | ErrorKind::Server(ServerErrorKind::NoPerm) => {
            QueueError::configuration(BACKEND, format!("{operation}: {text}"))
        }
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask
            | ServerErrorKind::NoScript
            | ServerErrorKind::ExecAbort,
        ) => QueueError::backend_error(BACKEND, true, e),
        ErrorKind::Parse | ErrorKind::ClusterConnectionNotFound => {
            QueueError::connection(BACKEND, e)
        }
        // The server is out of memory (maxmemory reached): ask the caller to back off.
        _ if text.contains("OOM") => QueueError::Throttled {
            backend: BACKEND,
            source: Box::new(e),
        },
        _ if text.contains("BUSY") => QueueError::backend_error(BACKEND, true, e),
        _ => QueueError::backend_error(BACKEND, false, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let io = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert!(matches!(
            map("pop", Duration::ZERO, "h:1", io),
            QueueError::Connection { .. }
        ));
        let timeout = RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "slow"));
        assert!(map("pop", Duration::ZERO, "h:1", timeout).is_retryable());
        let client = RedisError::from((ErrorKind::Client, "bad"));
        assert!(!map("pop", Duration::ZERO, "h:1", client).is_retryable());
        let auth = RedisError::from((ErrorKind::AuthenticationFailed, "no"));
        assert!(matches!(
            map("pop", Duration::ZERO, "h:1", auth),
            QueueError::Configuration { .. }
        ));
        let loading = RedisError::from((
            ErrorKind::Server(ServerErrorKind::BusyLoading),
            "LOADING Redis is loading the dataset in memory",
        ));
        assert!(map("pop", Duration::ZERO, "h:1", loading).is_retryable());
        let refused = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        let e = map("connect", Duration::ZERO, "db.example:6380", refused);
        assert!(e.is_retryable());
        assert!(
            e.to_string()
                .contains("connection refused at db.example:6380"),
            "{e}"
        );
    }
}
