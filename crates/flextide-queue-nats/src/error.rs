//! async-nats's errors mapped into `QueueError`, with the retry
//! classification the worker relies on: each error kind of the client maps
//! to one [`Class`] (a table, below), and the class to a `QueueError`.

use std::{fmt, future::Future, time::Duration};

use async_nats::{
    ConnectErrorKind,
    client::{PublishErrorKind as CorePublishKind, RequestErrorKind as CoreRequestKind},
    error::Error as NatsError,
    jetstream::{
        Error as JsError, ErrorCode,
        context::{
            ConsumerInfoErrorKind, CreateStreamErrorKind, GetStreamErrorKind, PublishErrorKind,
            RequestErrorKind,
        },
        stream::{
            ConsumerErrorKind, DeleteMessageErrorKind, DirectGetErrorKind, LastRawMessageErrorKind,
            PurgeErrorKind,
        },
    },
};
use flextide_queue_core::QueueError;

use crate::BACKEND;

/// What an error means to a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// No answer in time: retryable.
    Timeout,
    /// The connection (or JetStream behind it) is not there now: retryable.
    Connection,
    /// The stream, consumer or message does not exist.
    NotFound,
    /// The server refused what we asked for; retrying will not help.
    Refused,
    /// Anything else, retryable.
    Transient,
}

/// The class of one error kind of async-nats.
pub(crate) trait Classify {
    fn class(&self) -> Class;
}

fn js_class(e: &JsError) -> Class {
    match e.error_code() {
        ErrorCode::STREAM_NOT_FOUND
        | ErrorCode::CONSUMER_NOT_FOUND
        | ErrorCode::NO_MESSAGE_FOUND => Class::NotFound,
        // 503: JetStream is restarting or has no quorum yet.
        _ if e.code() == 503 => Class::Connection,
        _ if e.code() >= 500 => Class::Transient,
        _ => Class::Refused,
    }
}

macro_rules! table {
    ($kind:ty { $($pat:pat => $class:expr),+ $(,)? }) => {
        impl Classify for $kind {
            fn class(&self) -> Class {
                #[allow(unreachable_patterns)]
                match self { $($pat => $class),+ }
            }
        }
    };
}

table!(ConnectErrorKind {
    ConnectErrorKind::TimedOut => Class::Timeout,
    ConnectErrorKind::Io | ConnectErrorKind::Dns => Class::Connection,
    _ => Class::Refused,
});
table!(CoreRequestKind {
    CoreRequestKind::TimedOut => Class::Timeout,
    // Nobody listens on the subject: JetStream is down or the stream is gone.
    CoreRequestKind::NoResponders => Class::Connection,
    CoreRequestKind::InvalidSubject | CoreRequestKind::MaxPayloadExceeded => Class::Refused,
    _ => Class::Connection,
});
table!(CorePublishKind {
    CorePublishKind::InvalidSubject | CorePublishKind::MaxPayloadExceeded => Class::Refused,
    _ => Class::Connection,
});
table!(PublishErrorKind {
    PublishErrorKind::TimedOut => Class::Timeout,
    PublishErrorKind::StreamNotFound => Class::NotFound,
    PublishErrorKind::MaxPayloadExceeded => Class::Refused,
    _ => Class::Connection,
});
table!(RequestErrorKind {
    RequestErrorKind::TimedOut => Class::Timeout,
    _ => Class::Connection,
});
table!(CreateStreamErrorKind {
    CreateStreamErrorKind::TimedOut => Class::Timeout,
    CreateStreamErrorKind::JetStream(e) => js_class(e),
    CreateStreamErrorKind::JetStreamUnavailable => Class::Refused,
    CreateStreamErrorKind::NotFound => Class::NotFound,
    CreateStreamErrorKind::Response | CreateStreamErrorKind::ResponseParse => Class::Transient,
    _ => Class::Refused,
});
table!(GetStreamErrorKind {
    GetStreamErrorKind::JetStream(e) => js_class(e),
    GetStreamErrorKind::Request => Class::Connection,
    _ => Class::Refused,
});
table!(ConsumerErrorKind {
    ConsumerErrorKind::TimedOut => Class::Timeout,
    ConsumerErrorKind::Request => Class::Connection,
    ConsumerErrorKind::JetStream(e) => js_class(e),
    _ => Class::Refused,
});
table!(ConsumerInfoErrorKind {
    ConsumerInfoErrorKind::TimedOut => Class::Timeout,
    ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound => Class::NotFound,
    ConsumerInfoErrorKind::JetStream(e) => js_class(e),
    ConsumerInfoErrorKind::InvalidName => Class::Refused,
    _ => Class::Connection,
});
table!(PurgeErrorKind {
    PurgeErrorKind::TimedOut => Class::Timeout,
    PurgeErrorKind::Request => Class::Connection,
    PurgeErrorKind::JetStream(e) => js_class(e),
});
table!(DeleteMessageErrorKind {
    DeleteMessageErrorKind::TimedOut => Class::Timeout,
    DeleteMessageErrorKind::Request => Class::Connection,
    DeleteMessageErrorKind::JetStream(e) => js_class(e),
});
table!(DirectGetErrorKind {
    DirectGetErrorKind::NotFound => Class::NotFound,
    DirectGetErrorKind::TimedOut => Class::Timeout,
    DirectGetErrorKind::Request => Class::Connection,
    _ => Class::Transient,
});
table!(LastRawMessageErrorKind {
    LastRawMessageErrorKind::NoMessageFound => Class::NotFound,
    LastRawMessageErrorKind::JetStream(e) => js_class(e),
    _ => Class::Connection,
});

/// Maps an async-nats error met during `operation`.
pub(crate) fn map<K>(operation: &'static str, queue: &str, error: NatsError<K>) -> QueueError
where
    K: Classify + Clone + fmt::Debug + fmt::Display + PartialEq + Send + Sync + 'static,
{
    let class = error.kind().class();
    from_class(operation, queue, class, error)
}

/// The `QueueError` of an error of a known class.
pub(crate) fn from_class(
    operation: &'static str,
    queue: &str,
    class: Class,
    error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> QueueError {
    let error = error.into();
    match class {
        Class::Timeout => QueueError::Timeout {
            backend: BACKEND,
            operation,
            after: Duration::ZERO,
        },
        Class::Connection => QueueError::connection(BACKEND, error),
        Class::NotFound => QueueError::QueueNotFound {
            backend: BACKEND,
            queue: queue.to_owned(),
        },
        Class::Refused => QueueError::backend_error(
            BACKEND,
            false,
            format!("{operation}: the server refused the request: {error}"),
        ),
        Class::Transient => QueueError::backend_error(BACKEND, true, error),
    }
}

/// The class of an async-nats error, for callers that treat one class
/// (a missing stream) as success.
pub(crate) fn class_of<K: Classify + Clone + fmt::Debug + fmt::Display + PartialEq>(
    error: &NatsError<K>,
) -> Class {
    error.kind().class()
}

/// Runs one server round trip with a deadline; a late answer is a
/// retryable `Timeout` naming the operation.
pub(crate) async fn timed<T>(
    operation: &'static str,
    after: Duration,
    fut: impl Future<Output = Result<T, QueueError>>,
) -> Result<T, QueueError> {
    match tokio::time::timeout(after, fut).await {
        Ok(result) => result.map_err(|e| match e {
            QueueError::Timeout {
                backend, operation, ..
            } => QueueError::Timeout {
                backend,
                operation,
                after,
            },
            other => other,
        }),
        Err(_) => Err(QueueError::Timeout {
            backend: BACKEND,
            operation,
            after,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_map_to_the_retry_classification() {
        let t = from_class("push", "q", Class::Timeout, "late");
        assert!(matches!(t, QueueError::Timeout { .. }) && t.is_retryable());
        assert!(from_class("pop", "q", Class::Connection, "gone").is_retryable());
        assert!(from_class("pop", "q", Class::Transient, "hm").is_retryable());
        assert!(!from_class("open", "q", Class::Refused, "no").is_retryable());
        assert!(matches!(
            from_class("stats", "q", Class::NotFound, "x"),
            QueueError::QueueNotFound { .. }
        ));
    }
}
