//! What a handler returns when it fails, and how the worker reads it.
//!
//! A handler says whether a failure is worth retrying:
//! [`HandlerError::retryable`] (a timeout, a dependency down) or
//! [`HandlerError::fatal`] (a malformed message that no retry can fix). The
//! worker also understands errors of other types, which it gets from tower
//! layers: tower's timeout `Elapsed` is retryable, a [`QueueError`] is
//! retryable exactly when [`QueueError::is_retryable`] says so, and anything
//! else is retryable (it will end in the dead letters after the last
//! attempt if it keeps failing).

use std::{error::Error as StdError, fmt, time::Duration};

use flextide_queue_core::QueueError;

/// A boxed error, the error type of tower layers such as `Timeout`.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Whether a failed message should be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Try again later, with backoff, until the retry policy's attempts run out.
    Retryable,
    /// Do not try again: move the message to the dead letters now.
    Fatal,
}

/// A handler's failure: the error (with its whole `source()` chain) and
/// whether a retry may succeed.
///
/// Its `Display` and `source()` are those of the wrapped error, so wrapping
/// adds nothing to the chain that ends up as the dead-letter reason.
///
/// ```
/// use flextide_worker::{HandlerError, ErrorKind};
/// let err = HandlerError::retryable(std::io::Error::other("upstream returned 503"));
/// assert_eq!(err.kind(), ErrorKind::Retryable);
/// assert_eq!(err.to_string(), "upstream returned 503");
/// ```
pub struct HandlerError {
    kind: ErrorKind,
    retry_after: Option<Duration>,
    source: BoxError,
}

impl HandlerError {
    /// A failure worth retrying later (the retry policy picks the delay).
    pub fn retryable(error: impl Into<BoxError>) -> Self {
        HandlerError {
            kind: ErrorKind::Retryable,
            retry_after: None,
            source: error.into(),
        }
    }

    /// A failure no retry can fix: the message goes to the dead letters at once.
    pub fn fatal(error: impl Into<BoxError>) -> Self {
        HandlerError {
            kind: ErrorKind::Fatal,
            retry_after: None,
            source: error.into(),
        }
    }

    /// Retry after exactly `delay` instead of the policy's backoff (for
    /// example a `Retry-After` the handler got from an API). Only meaningful
    /// on a retryable error; the policy's attempt limit still applies.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// Retryable or fatal.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the message will be tried again (attempts permitting).
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    /// The delay asked for with [`HandlerError::with_retry_after`].
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The wrapped error.
    pub fn inner(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }

    /// The wrapped error, by value.
    pub fn into_inner(self) -> BoxError {
        self.source
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("kind", &self.kind)
            .field("retry_after", &self.retry_after)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl StdError for HandlerError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.source()
    }
}

/// A queue error met inside a handler (pushing a follow-up task, say) is
/// retryable exactly when the queue says so.
impl From<QueueError> for HandlerError {
    fn from(error: QueueError) -> Self {
        if error.is_retryable() {
            HandlerError::retryable(error)
        } else {
            HandlerError::fatal(error)
        }
    }
}

/// A payload that is not the expected JSON will not become so: fatal.
impl From<serde_json::Error> for HandlerError {
    fn from(error: serde_json::Error) -> Self {
        HandlerError::fatal(error)
    }
}

/// Tower's timeout expired: retryable.
impl From<tower::timeout::error::Elapsed> for HandlerError {
    fn from(error: tower::timeout::error::Elapsed) -> Self {
        HandlerError::retryable(error)
    }
}

/// An error of unknown kind (what tower layers return) is classified the
/// way the worker classifies it: a boxed `HandlerError` keeps its kind, a
/// `QueueError` is retryable when it says so, anything else is retryable.
impl From<BoxError> for HandlerError {
    fn from(error: BoxError) -> Self {
        classify(error)
    }
}

/// Marks the error of a `Result` as retryable or fatal, for use with `?`:
/// `client.send(req).await.retryable()?`.
pub trait ResultExt<T> {
    /// Maps the error into [`HandlerError::retryable`].
    fn retryable(self) -> Result<T, HandlerError>;
    /// Maps the error into [`HandlerError::fatal`].
    fn fatal(self) -> Result<T, HandlerError>;
}

impl<T, E: Into<BoxError>> ResultExt<T> for Result<T, E> {
    fn retryable(self) -> Result<T, HandlerError> {
        self.map_err(HandlerError::retryable)
    }

    fn fatal(self) -> Result<T, HandlerError> {
        self.map_err(HandlerError::fatal)
    }
}

/// Turns whatever a service failed with into a [`HandlerError`].
pub(crate) fn classify(error: BoxError) -> HandlerError {
    let error = match error.downcast::<HandlerError>() {
        Ok(handler) => return *handler,
        Err(other) => other,
    };
    let error = match error.downcast::<QueueError>() {
        Ok(queue) => return HandlerError::from(*queue),
        Err(other) => other,
    };
    // Timeouts, overload and everything unknown: retry, then dead-letter.
    HandlerError::retryable(error)
}

/// The error and its sources as one line: `outer: cause: root cause`.
/// A source whose text its parent already shows (`"connect failed: refused"`
/// over `"refused"`) is not repeated.
pub(crate) fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut out = error.to_string();
    let mut current = error.source();
    while let Some(source) = current {
        let text = source.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        current = source.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("charging the card failed")
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn chain_is_kept_and_not_repeated() {
        let err = HandlerError::fatal(Outer(std::io::Error::other("connection reset")));
        assert_eq!(
            error_chain(&err),
            "charging the card failed: connection reset"
        );
        let queue = QueueError::connection("x", "refused");
        assert_eq!(error_chain(&queue), "x: connection failed: refused");
    }

    #[test]
    fn classification() {
        let boxed: BoxError = Box::new(HandlerError::fatal("bad input"));
        assert_eq!(classify(boxed).kind(), ErrorKind::Fatal);
        let boxed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert_eq!(classify(boxed).kind(), ErrorKind::Retryable);
        let boxed: BoxError = Box::new(QueueError::StaleReceipt { backend: "x" });
        assert_eq!(classify(boxed).kind(), ErrorKind::Fatal);
        let boxed: BoxError = Box::new(QueueError::connection("x", "down"));
        assert_eq!(classify(boxed).kind(), ErrorKind::Retryable);
        let boxed: BoxError = "who knows".into();
        assert_eq!(classify(boxed).kind(), ErrorKind::Retryable);
        let json = serde_json::from_str::<u32>("nope").unwrap_err();
        assert_eq!(HandlerError::from(json).kind(), ErrorKind::Fatal);
    }

    #[test]
    fn result_ext_and_retry_after() {
        let r: Result<(), std::io::Error> = Err(std::io::Error::other("503"));
        let e = r
            .retryable()
            .unwrap_err()
            .with_retry_after(Duration::from_secs(3));
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        let r: Result<(), &str> = Err("malformed");
        assert!(!r.fatal().unwrap_err().is_retryable());
    }
}
