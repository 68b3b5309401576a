//! The one error type of every queue operation.

use std::time::Duration;

/// Shorthand for `Result<T, QueueError>`.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a queue operation can fail with, on any backend.
///
/// Each variant says what a caller can do about it; [`QueueError::is_retryable`]
/// tells the worker whether trying again later may succeed, so it never needs
/// to look at a driver's own error type. `backend` is the backend's short name
/// (`"postgres"`, `"sqs"`, …).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The backend cannot do this operation at all; check
    /// [`Capabilities`](crate::Capabilities) before calling it.
    #[error("{backend}: `{operation}` is not supported by this backend{}", hint_text(.hint))]
    #[non_exhaustive]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// The operation that was refused.
        operation: &'static str,
        /// Why, when it depends on how the queue was set up, and what to do
        /// about it (an SQS queue without a dead-letter queue).
        hint: Option<String>,
    },

    /// The payload is larger than the backend accepts; nothing was sent.
    /// Store the body elsewhere and enqueue a reference to it.
    #[error(
        "{backend}: payload of {size} bytes exceeds the maximum of {max} bytes; nothing was sent"
    )]
    PayloadTooLarge {
        /// Backend name.
        backend: &'static str,
        /// Size of the refused payload in bytes.
        size: usize,
        /// Largest payload the backend accepts.
        max: usize,
    },

    /// The queue name breaks the naming rules shared by every backend
    /// (1 to 80 characters of ASCII letters, digits, `-` and `_`).
    #[error("invalid queue name {name:?}: {reason}")]
    InvalidQueueName {
        /// The refused name (shown with escapes, never interpreted).
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// The message or an argument is malformed (a delay beyond the backend's
    /// maximum, an empty batch where one is required, a field the backend
    /// cannot carry). Nothing was sent; fix the input.
    #[error("{backend}: invalid message: {reason}")]
    InvalidMessage {
        /// Backend name.
        backend: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The receipt no longer owns the message: its lease expired and the
    /// message was delivered again (or it was already deleted, nacked or
    /// dead-lettered). The newer delivery is untouched. Do not retry with
    /// this receipt; the message will be (or was) handled by its new holder.
    #[error("{backend}: receipt is stale; the lease expired or the message was already settled")]
    StaleReceipt {
        /// Backend name.
        backend: &'static str,
    },

    /// A receipt that this backend did not issue, or that is garbled.
    #[error("{backend}: malformed receipt handle: {reason}")]
    InvalidReceipt {
        /// Backend name.
        backend: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The queue does not exist on the broker; create it (for example with
    /// the backend's `ensure_queue`) or fix the name or URL.
    #[error("{backend}: queue {queue:?} does not exist")]
    QueueNotFound {
        /// Backend name.
        backend: &'static str,
        /// The queue that was asked for.
        queue: String,
    },

    /// The broker could not be reached or the connection broke. Retryable:
    /// the backend reconnects on the next call.
    #[error("{backend}: connection failed: {source}")]
    Connection {
        /// Backend name.
        backend: &'static str,
        /// The driver's error.
        #[source]
        source: Source,
    },

    /// The operation did not finish within its deadline. Retryable; the
    /// operation may or may not have taken effect.
    #[error("{backend}: `{operation}` timed out after {after:?}")]
    Timeout {
        /// Backend name.
        backend: &'static str,
        /// The operation that timed out.
        operation: &'static str,
        /// How long it was given.
        after: Duration,
    },

    /// The broker asked us to slow down. Retryable after a backoff.
    #[error("{backend}: throttled by the broker: {source}")]
    Throttled {
        /// Backend name.
        backend: &'static str,
        /// The driver's error.
        #[source]
        source: Source,
    },

    /// The backend is configured wrongly (a missing or malformed setting,
    /// credentials refused, a schema not migrated). Not retryable: fix the
    /// configuration. Messages never contain secrets.
    #[error("{backend}: configuration error: {message}")]
    Configuration {
        /// Backend name.
        backend: &'static str,
        /// What is wrong and, where possible, which variable to set.
        message: String,
    },

    /// A payload could not be encoded to or decoded from JSON.
    #[error("payload is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),

    /// Some items of a batch failed; the others took effect. Each failure
    /// carries the index of its item in the batch given.
    #[error("{backend}: {} of the batch's items failed (first: {})", .failures.len(), .failures.first().map(|f| f.error.to_string()).unwrap_or_default())]
    PartialBatch {
        /// Backend name.
        backend: &'static str,
        /// The items that failed, by index; every other item succeeded.
        failures: Vec<BatchFailure>,
    },

    /// Any other error from the broker or driver. `retryable` says whether the
    /// backend judged it transient (a deadlock, a failover, a 5xx).
    #[error("{backend}: {source}")]
    Backend {
        /// Backend name.
        backend: &'static str,
        /// Whether trying again later may succeed.
        retryable: bool,
        /// The driver's error.
        #[source]
        source: Source,
    },
}

fn hint_text(hint: &Option<String>) -> String {
    hint.as_deref()
        .map(|h| format!(": {h}"))
        .unwrap_or_default()
}

/// One failed item of a batch operation.
#[derive(Debug)]
pub struct BatchFailure {
    /// Index of the item in the batch that was given.
    pub index: usize,
    /// Why it failed.
    pub error: QueueError,
}

impl QueueError {
    /// Whether the same call may succeed if tried again later (connection
    /// trouble, timeouts, throttling, transient broker errors). A partial
    /// batch is retryable when every failed item is.
    pub fn is_retryable(&self) -> bool {
        match self {
            QueueError::Connection { .. }
            | QueueError::Timeout { .. }
            | QueueError::Throttled { .. } => true,
            QueueError::Backend { retryable, .. } => *retryable,
            QueueError::PartialBatch { failures, .. } => {
                failures.iter().all(|f| f.error.is_retryable())
            }
            _ => false,
        }
    }

    /// The backend that raised the error, when it came from one.
    pub fn backend(&self) -> Option<&'static str> {
        match self {
            QueueError::Unsupported { backend, .. }
            | QueueError::PayloadTooLarge { backend, .. }
            | QueueError::InvalidMessage { backend, .. }
            | QueueError::StaleReceipt { backend }
            | QueueError::InvalidReceipt { backend, .. }
            | QueueError::QueueNotFound { backend, .. }
            | QueueError::Connection { backend, .. }
            | QueueError::Timeout { backend, .. }
            | QueueError::Throttled { backend, .. }
            | QueueError::Configuration { backend, .. }
            | QueueError::PartialBatch { backend, .. }
            | QueueError::Backend { backend, .. } => Some(backend),
            QueueError::InvalidQueueName { .. } | QueueError::Json(_) => None,
        }
    }

    /// Shorthand for [`QueueError::Unsupported`].
    pub fn unsupported(backend: &'static str, operation: &'static str) -> Self {
        QueueError::Unsupported {
            backend,
            operation,
            hint: None,
        }
    }

    /// [`QueueError::Unsupported`] for an operation this queue lacks
    /// because of how it was set up, saying what to change.
    pub fn unsupported_because(
        backend: &'static str,
        operation: &'static str,
        hint: impl Into<String>,
    ) -> Self {
        QueueError::Unsupported {
            backend,
            operation,
            hint: Some(hint.into()),
        }
    }

    /// Shorthand for [`QueueError::Connection`].
    pub fn connection(backend: &'static str, source: impl Into<Source>) -> Self {
        QueueError::Connection {
            backend,
            source: source.into(),
        }
    }

    /// Shorthand for [`QueueError::Backend`].
    pub fn backend_error(
        backend: &'static str,
        retryable: bool,
        source: impl Into<Source>,
    ) -> Self {
        QueueError::Backend {
            backend,
            retryable,
            source: source.into(),
        }
    }

    /// Shorthand for [`QueueError::Configuration`].
    pub fn configuration(backend: &'static str, message: impl Into<String>) -> Self {
        QueueError::Configuration {
            backend,
            message: message.into(),
        }
    }

    /// Shorthand for [`QueueError::InvalidMessage`].
    pub fn invalid_message(backend: &'static str, reason: impl Into<String>) -> Self {
        QueueError::InvalidMessage {
            backend,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`QueueError::InvalidReceipt`].
    pub fn invalid_receipt(backend: &'static str, reason: impl Into<String>) -> Self {
        QueueError::InvalidReceipt {
            backend,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_says_why_when_it_can() {
        assert_eq!(
            QueueError::unsupported("x", "peek").to_string(),
            "x: `peek` is not supported by this backend"
        );
        let e = QueueError::unsupported_because(
            "sqs",
            "dead_letters",
            "the queue has no dead-letter queue",
        );
        assert!(
            e.to_string()
                .ends_with(": the queue has no dead-letter queue"),
            "{e}"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn retry_classification() {
        assert!(QueueError::connection("x", "refused").is_retryable());
        assert!(!QueueError::StaleReceipt { backend: "x" }.is_retryable());
        assert!(!QueueError::configuration("x", "bad").is_retryable());
        let partial = QueueError::PartialBatch {
            backend: "x",
            failures: vec![
                BatchFailure {
                    index: 0,
                    error: QueueError::connection("x", "reset"),
                },
                BatchFailure {
                    index: 3,
                    error: QueueError::StaleReceipt { backend: "x" },
                },
            ],
        };
        assert!(!partial.is_retryable());
        assert!(partial.to_string().contains("2 of the batch"));
        assert_eq!(partial.backend(), Some("x"));
    }
}
