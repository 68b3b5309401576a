//! Service Bus's AMQP error conditions and `$management` status codes
//! mapped into `QueueError`: two tables, no logic beyond them.

use std::time::Duration;

use flextide_queue_core::QueueError;

use crate::BACKEND;

/// What a condition means to a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The lock expired or the message was settled: the receipt is stale.
    Stale,
    /// The entity does not exist.
    NotFound,
    /// The broker sheds load or the entity is full: back off, retry.
    Throttled,
    /// The connection or link went away: reconnect, retry.
    Connection,
    /// The broker timed out the operation: retry.
    Timeout,
    /// The credentials lack a right, or the entity is disabled: retrying
    /// does not help.
    Denied,
    /// The message is too large or malformed.
    InvalidMessage,
    /// Anything else: retry once more is reasonable.
    Other,
}

/// AMQP error conditions (`amqp:*` from the AMQP 1.0 specification,
/// `com.microsoft:*` from the Service Bus AMQP guide).
const CONDITIONS: &[(&str, Kind)] = &[
    ("com.microsoft:message-lock-lost", Kind::Stale),
    ("com.microsoft:session-lock-lost", Kind::Stale),
    ("com.microsoft:message-not-found", Kind::Stale),
    ("amqp:not-found", Kind::NotFound),
    ("com.microsoft:entity-not-found", Kind::NotFound),
    ("com.microsoft:server-busy", Kind::Throttled),
    ("amqp:resource-limit-exceeded", Kind::Throttled),
    ("com.microsoft:timeout", Kind::Timeout),
    ("amqp:connection:forced", Kind::Connection),
    ("amqp:connection:framing-error", Kind::Connection),
    ("amqp:link:detach-forced", Kind::Connection),
    ("amqp:link:stolen", Kind::Connection),
    ("amqp:session:window-violation", Kind::Connection),
    ("amqp:unauthorized-access", Kind::Denied),
    ("com.microsoft:entity-disabled", Kind::Denied),
    ("com.microsoft:argument-error", Kind::InvalidMessage),
    ("amqp:link:message-size-exceeded", Kind::InvalidMessage),
    ("amqp:decode-error", Kind::InvalidMessage),
];

/// `$management` response status codes (HTTP-like, per the Service Bus
/// AMQP request/response guide).
const STATUSES: &[(u16, Kind)] = &[
    (410, Kind::Stale), // Gone: the lock token is unknown or expired
    (404, Kind::NotFound),
    (401, Kind::Denied),
    (403, Kind::Denied),
    (408, Kind::Timeout),
    (503, Kind::Throttled),
    (400, Kind::InvalidMessage),
];

/// The kind of an AMQP error condition.
pub(crate) fn condition_kind(condition: &str) -> Kind {
    CONDITIONS
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(condition))
        .map_or(Kind::Other, |(_, k)| *k)
}

/// The kind of a `$management` status code.
pub(crate) fn status_kind(code: u16) -> Kind {
    STATUSES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(Kind::Other, |(_, k)| *k)
}

/// The queue error for a failure of `operation` on `entity`, of `kind`,
/// described by `detail` (the condition and the broker's description;
/// never a token or key).
pub(crate) fn to_queue_error(
    kind: Kind,
    operation: &'static str,
    entity: &str,
    detail: String,
) -> QueueError {
    match kind {
        Kind::Stale => QueueError::StaleReceipt { backend: BACKEND },
        Kind::NotFound => QueueError::QueueNotFound {
            backend: BACKEND,
            queue: entity.to_owned(),
        },
        Kind::Throttled => QueueError::Throttled {
            backend: BACKEND,
            source: format!("{operation}: {detail}").into(),
        },
        Kind::Connection => QueueError::connection(BACKEND, format!("{operation}: {detail}")),
        Kind::Timeout => QueueError::Timeout {
            backend: BACKEND,
            operation,
            after: Duration::ZERO,
        },
        Kind::Denied => QueueError::configuration(
            BACKEND,
            format!(
                "{operation} on {entity:?} was refused ({detail}); check that the SAS policy has the Send, Listen (and for admin commands Manage) rights and that the entity is enabled"
            ),
        ),
        Kind::InvalidMessage => {
            QueueError::invalid_message(BACKEND, format!("{operation}: {detail}"))
        }
        Kind::Other => QueueError::backend_error(BACKEND, true, format!("{operation}: {detail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_lost_is_a_stale_receipt() {
        let e = to_queue_error(
            condition_kind("com.microsoft:message-lock-lost"),
            "complete",
            "jobs",
            "lock lost".into(),
        );
        assert!(matches!(e, QueueError::StaleReceipt { .. }), "{e}");
        assert!(!e.is_retryable());
        assert_eq!(status_kind(410), Kind::Stale);
    }

    #[test]
    fn retry_classification_follows_the_table() {
        let classify = |c: &str| to_queue_error(condition_kind(c), "op", "q", "d".into());
        assert!(classify("com.microsoft:server-busy").is_retryable());
        assert!(classify("amqp:connection:forced").is_retryable());
        assert!(classify("AMQP:LINK:DETACH-FORCED").is_retryable());
        assert!(classify("com.microsoft:timeout").is_retryable());
        assert!(classify("something:new").is_retryable());
        assert!(!classify("amqp:unauthorized-access").is_retryable());
        assert!(!classify("com.microsoft:entity-disabled").is_retryable());
        assert!(!classify("amqp:link:message-size-exceeded").is_retryable());
        assert!(matches!(
            classify("amqp:not-found"),
            QueueError::QueueNotFound { ref queue, .. } if queue == "q"
        ));
        let denied = classify("amqp:unauthorized-access").to_string();
        assert!(denied.contains("Listen"), "{denied}");
        assert_eq!(status_kind(503), Kind::Throttled);
        assert_eq!(status_kind(200), Kind::Other);
    }
}
