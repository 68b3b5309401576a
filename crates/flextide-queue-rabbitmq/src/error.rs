//! lapin's errors mapped into `QueueError`, with the retry classification
//! the worker relies on.

use std::{future::Future, time::Duration};

use flextide_queue_core::QueueError;
use lapin::{
    ErrorKind,
    protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError},
};

use crate::BACKEND;

/// Maps a lapin error. Connection and channel trouble is retryable (the next
/// call reconnects); refused declarations and credentials are configuration.
pub(crate) fn map(error: lapin::Error) -> QueueError {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) => QueueError::configuration(
                BACKEND,
                format!("the broker refused the request: {amqp}"),
            ),
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
            | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => QueueError::configuration(
                BACKEND,
                format!("access refused (check user, password and vhost): {amqp}"),
            ),
            AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED) => {
                QueueError::backend_error(BACKEND, true, error)
            }
            AMQPErrorKind::Soft(AMQPSoftError::CONTENTTOOLARGE) => {
                QueueError::backend_error(BACKEND, false, error)
            }
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => {
                QueueError::backend_error(BACKEND, false, error)
            }
            AMQPErrorKind::Soft(_) => QueueError::backend_error(BACKEND, false, error),
            AMQPErrorKind::Hard(AMQPHardError::RESOURCEERROR) => QueueError::Throttled {
                backend: BACKEND,
                source: Box::new(error),
            },
            AMQPErrorKind::Hard(
                AMQPHardError::CONNECTIONFORCED
                | AMQPHardError::INTERNALERROR
                | AMQPHardError::CHANNELERROR,
            ) => QueueError::connection(BACKEND, error),
            AMQPErrorKind::Hard(_) => QueueError::connection(BACKEND, error),
        },
        ErrorKind::AuthProviderError(_) => {
            QueueError::configuration(BACKEND, format!("authentication failed: {error}"))
        }
        ErrorKind::InvalidProtocolVersion(_) => QueueError::configuration(
            BACKEND,
            format!("the server does not speak AMQP 0-9-1: {error}"),
        ),
        ErrorKind::ChannelsLimitReached => QueueError::Throttled {
            backend: BACKEND,
            source: Box::new(error),
        },
        ErrorKind::NoDefaultRuntime => QueueError::configuration(
            BACKEND,
            "lapin has no async runtime (enable its tokio feature)",
        ),
        ErrorKind::SerialisationError(_) | ErrorKind::FutureCompleted => {
            QueueError::backend_error(BACKEND, false, error)
        }
        _ => QueueError::connection(BACKEND, error),
    }
}

/// True when the error is a channel-level NOT_FOUND (a queue that does not exist).
pub(crate) fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(amqp) if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
}

/// Runs one broker round trip with the configured deadline.
pub(crate) async fn timed<T>(
    operation: &'static str,
    after: Duration,
    fut: impl Future<Output = lapin::Result<T>>,
) -> Result<T, QueueError> {
    match tokio::time::timeout(after, fut).await {
        Ok(result) => result.map_err(map),
        Err(_) => Err(QueueError::Timeout {
            backend: BACKEND,
            operation,
            after,
        }),
    }
}

/// Like [`timed`], keeping the lapin error for inspection.
pub(crate) async fn timed_raw<T>(
    operation: &'static str,
    after: Duration,
    fut: impl Future<Output = lapin::Result<T>>,
) -> Result<lapin::Result<T>, QueueError> {
    tokio::time::timeout(after, fut)
        .await
        .map_err(|_| QueueError::Timeout {
            backend: BACKEND,
            operation,
            after,
        })
}
