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
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) if home_node_down(&error) => {
                QueueError::backend_error(
                    BACKEND,
                    true,
                    format!(
                        "a classic queue's node is down or inaccessible (the queue exists; retry once the node \
                         is back): {amqp}"
                    ),
                )
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

/// True when the error is a channel-level NOT_FOUND of a queue that does
/// not exist (not one whose node is down: see [`home_node_down`]).
pub(crate) fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(amqp) if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
        && !home_node_down(error)
}

/// The broker's text for a durable classic queue that exists but whose
/// node (in a cluster) is down: `NOT_FOUND - home node '…' of durable queue
/// '…' in vhost '/' is down or inaccessible`. Transient, unlike a queue
/// that does not exist.
const HOME_NODE_DOWN: &str = "is down or inaccessible";

/// True when a NOT_FOUND names a queue whose node is down.
pub(crate) fn home_node_down(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(amqp) if amqp.get_message().as_str().contains(HOME_NODE_DOWN))
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

#[cfg(test)]
mod tests {
    use lapin::{protocol::AMQPError, types::ShortString};

    use super::*;

    fn not_found(text: &str) -> lapin::Error {
        lapin::Error::from(ErrorKind::ProtocolError(AMQPError::new(
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND),
            ShortString::from(text),
        )))
    }

    #[test]
    fn a_queue_whose_node_is_down_is_no_missing_queue() {
        let down = not_found(
            "NOT_FOUND - home node 'rabbit@b' of durable queue 'q.dlq' in vhost '/' is down or inaccessible",
        );
        assert!(!is_not_found(&down));
        let mapped = map(down);
        assert!(mapped.is_retryable(), "{mapped}");
        assert!(mapped.to_string().contains(HOME_NODE_DOWN), "{mapped}");

        let missing = not_found("NOT_FOUND - no queue 'q' in vhost '/'");
        assert!(is_not_found(&missing));
        let mapped = map(missing);
        assert!(!mapped.is_retryable(), "{mapped}");
        assert!(!mapped.to_string().contains(HOME_NODE_DOWN), "{mapped}");
    }
}
