//! librdkafka's errors mapped into `QueueError`: a table, not logic.

use std::{future::Future, time::Duration};

use flextide_queue_core::QueueError;
use rdkafka::{error::KafkaError, types::RDKafkaErrorCode as C};

use crate::BACKEND;

/// Maps a librdkafka error met while doing `what`.
pub(crate) fn map(what: &str, error: KafkaError) -> QueueError {
    let text = format!("{what}: {error}");
    match error.rdkafka_error_code() {
        Some(C::MessageSizeTooLarge) | Some(C::InvalidMessageSize) => {
            QueueError::invalid_message(BACKEND, text)
        }
        Some(C::BrokerTransportFailure | C::AllBrokersDown | C::Resolve | C::NetworkException) => {
            QueueError::connection(BACKEND, text)
        }
        Some(
            C::SaslAuthenticationFailed
            | C::Authentication
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::InvalidConfig
            | C::UnsupportedSASLMechanism,
        ) => QueueError::configuration(BACKEND, text),
        Some(C::ThrottlingQuotaExceeded) => QueueError::Throttled {
            backend: BACKEND,
            source: text.into(),
        },
        Some(
            C::InvalidTopic
            | C::InvalidPartitions
            | C::InvalidReplicationFactor
            | C::PolicyViolation
            | C::UnknownTopicOrPartition,
        ) => QueueError::backend_error(BACKEND, false, text),
        // Timeouts, leader elections, coordinator moves, queue full: a retry
        // later may succeed.
        _ => QueueError::backend_error(BACKEND, true, text),
    }
}

/// Runs `fut` with a deadline, as `operation`.
pub(crate) async fn timed<T>(
    operation: &'static str,
    after: Duration,
    fut: impl Future<Output = flextide_queue_core::Result<T>>,
) -> flextide_queue_core::Result<T> {
    tokio::time::timeout(after, fut)
        .await
        .map_err(|_| QueueError::Timeout {
            backend: BACKEND,
            operation,
            after,
        })?
}

/// A blocking librdkafka call (metadata, watermarks, committed offsets)
/// run off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> flextide_queue_core::Result<T> + Send + 'static,
) -> flextide_queue_core::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| QueueError::backend_error(BACKEND, true, format!("blocking task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let e = map("send", KafkaError::MessageProduction(C::AllBrokersDown));
        assert!(e.is_retryable(), "{e}");
        let e = map(
            "send",
            KafkaError::MessageProduction(C::MessageSizeTooLarge),
        );
        assert!(matches!(e, QueueError::InvalidMessage { .. }), "{e}");
        let e = map(
            "send",
            KafkaError::MessageProduction(C::SaslAuthenticationFailed),
        );
        assert!(!e.is_retryable(), "{e}");
    }
}
