//! Maps SDK errors and per-entry batch errors into `QueueError`.
//!
//! A [`Fault`] is a clonable summary of one failure, so that a request that
//! failed as a whole can be reported once per message of a batch.

use std::error::Error;

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use flextide_queue_core::QueueError;

use crate::BACKEND;

/// What went wrong, in terms of what a caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The queue does not exist.
    NotFound,
    /// The receipt handle no longer settles the message.
    Stale,
    /// SQS refused the input (a value out of range, a body it cannot carry).
    Invalid(String),
    /// Slow down.
    Throttled(String),
    /// No answer, or the connection broke.
    Connection(String),
    /// The request timed out (it may or may not have taken effect).
    Timeout(String),
    /// Credentials, permissions, region or endpoint are wrong.
    Configuration(String),
    /// Anything else; `retryable` for 5xx and other transient states.
    Other { retryable: bool, text: String },
}

impl Fault {
    /// The `QueueError` of this fault, for queue `queue` and operation `op`.
    pub(crate) fn into_error(self, queue: &str, op: &'static str) -> QueueError {
        match self {
            Fault::NotFound => QueueError::QueueNotFound {
                backend: BACKEND,
                queue: queue.to_owned(),
            },
            Fault::Stale => QueueError::StaleReceipt { backend: BACKEND },
            Fault::Invalid(text) => QueueError::invalid_message(BACKEND, text),
            Fault::Throttled(text) => QueueError::Throttled {
                backend: BACKEND,
                source: text.into(),
            },
            Fault::Connection(text) => QueueError::connection(BACKEND, format!("{op}: {text}")),
            // The SDK does not say which of its timeouts fired, so there is
            // no honest `after` for `QueueError::Timeout`: report it as the
            // connection trouble it is (retryable all the same).
            Fault::Timeout(text) => {
                QueueError::connection(BACKEND, format!("{op}: timed out: {text}"))
            }
            Fault::Configuration(text) => {
                QueueError::configuration(BACKEND, format!("{op}: {text}"))
            }
            Fault::Other { retryable, text } => {
                QueueError::backend_error(BACKEND, retryable, format!("{op}: {text}"))
            }
        }
    }

    /// Classifies an SDK error.
    pub(crate) fn from_sdk<E>(error: &SdkError<E>) -> Fault
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let text = readable(error);
        match error {
            SdkError::ServiceError(service) => {
                let code = error.code().unwrap_or_default();
                let message = error.message().unwrap_or_default();
                Fault::from_code(code, message, service.raw().status().is_server_error())
            }
            SdkError::TimeoutError(_) => Fault::Timeout(text),
            SdkError::DispatchFailure(failure) if failure.is_timeout() => Fault::Timeout(text),
            SdkError::DispatchFailure(_) if is_missing_credentials(error) => {
                Fault::Configuration(NO_CREDENTIALS.to_owned())
            }
            SdkError::DispatchFailure(failure) if failure.is_user() => Fault::Configuration(text),
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Fault::Connection(text),
            SdkError::ConstructionFailure(_) => Fault::Configuration(text),
            _ => Fault::Other {
                retryable: false,
                text,
            },
        }
    }

    /// Classifies an error code from SQS (a whole request's or one batch
    /// entry's). `server` marks a 5xx answer or an entry that was not the
    /// sender's fault.
    pub(crate) fn from_code(code: &str, message: &str, server: bool) -> Fault {
        let text = if message.is_empty() {
            code.to_owned()
        } else {
            format!("{code}: {message}")
        };
        let code_is = |names: &[&str]| names.iter().any(|n| code.ends_with(n));
        if code_is(&["NonExistentQueue", "QueueDoesNotExist"]) {
            Fault::NotFound
        } else if code_is(&["ReceiptHandleIsInvalid", "MessageNotInflight"])
            || (code_is(&["InvalidParameterValue"]) && message.contains("ReceiptHandle"))
        {
            Fault::Stale
        } else if code_is(&[
            "RequestThrottled",
            "Throttling",
            "ThrottlingException",
            "ThrottledException",
            "KmsThrottled",
            "OverLimit",
            "PurgeQueueInProgress",
            "RequestLimitExceeded",
            "TooManyRequestsException",
            "SlowDown",
        ]) {
            Fault::Throttled(text)
        } else if code_is(&[
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "AccessDeniedException",
            "UnrecognizedClientException",
            "MissingAuthenticationToken",
            "IncompleteSignature",
            "InvalidSecurity",
            "ExpiredToken",
            "KmsAccessDenied",
            "KmsDisabled",
            "KmsNotFound",
            "KmsInvalidState",
            "KmsInvalidKeyUsage",
            "KmsOptInRequired",
            "InvalidAddress",
            "UnsupportedOperation",
        ]) {
            Fault::Configuration(text)
        } else if server
            || code_is(&[
                "InternalError",
                "InternalFailure",
                "ServiceUnavailable",
                "QueueDeletedRecently",
                "RequestTimeout",
            ])
        {
            Fault::Other {
                retryable: true,
                text,
            }
        } else if code_is(&[
            "InvalidParameterValue",
            "InvalidMessageContents",
            "InvalidAttributeValue",
            "InvalidAttributeName",
            "BatchRequestTooLong",
            "MissingParameter",
            "InvalidParameterCombination",
        ]) {
            Fault::Invalid(text)
        } else {
            Fault::Other {
                retryable: false,
                text,
            }
        }
    }
}

/// What to say when the AWS chain found no credentials (instead of the
/// failure of its last provider, typically the instance metadata service).
const NO_CREDENTIALS: &str =
    "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE";

/// The errors in `error`'s source chain, outermost first.
fn chain<'e>(error: &'e (dyn Error + 'static)) -> impl Iterator<Item = &'e (dyn Error + 'static)> {
    std::iter::successors(Some(error), |e: &&'e (dyn Error + 'static)| (*e).source())
}

/// The error as one readable line: each cause's message once, outermost
/// first, never the `Debug` dump the SDK's own context display appends. A
/// refused connection says where it was refused.
pub(crate) fn readable(error: &(dyn Error + 'static)) -> String {
    for e in chain(error) {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return match chain(error).find_map(connect_address) {
                Some(addr) => format!("connection refused at {addr}"),
                None => "connection refused".to_owned(),
            };
        }
    }
    let mut parts: Vec<String> = Vec::new();
    for e in chain(error) {
        let text = e.to_string();
        if text.is_empty() || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

/// The address of a failed TCP connect. hyper's connect error shows it
/// only in its `Debug` form (`ConnectError("tcp connect error", ADDR, …)`).
fn connect_address(e: &(dyn Error + 'static)) -> Option<String> {
    let debug = format!("{e:?}");
    let rest = debug.split_once("ConnectError(\"tcp connect error\", ")?.1;
    let addr = rest.split([',', ')']).next()?.trim();
    addr.parse::<std::net::SocketAddr>()
        .is_ok()
        .then(|| addr.to_owned())
}

/// Whether the request could not be signed because no credentials were
/// found (no provider, or none in the chain had any).
fn is_missing_credentials(error: &(dyn Error + 'static)) -> bool {
    chain(error).any(|e| {
        let text = e.to_string();
        text.contains("no identity resolver")
            || text.contains("no providers in chain provided credentials")
            || text.contains("failed to load credentials")
            || text.contains("the credential provider was not enabled")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        assert_eq!(
            Fault::from_code("AWS.SimpleQueueService.NonExistentQueue", "", false),
            Fault::NotFound
        );
        assert_eq!(
            Fault::from_code("ReceiptHandleIsInvalid", "x", false),
            Fault::Stale
        );
        assert!(matches!(
            Fault::from_code("RequestThrottled", "", false),
            Fault::Throttled(_)
        ));
        assert!(matches!(
            Fault::from_code("InvalidClientTokenId", "", false),
            Fault::Configuration(_)
        ));
        assert!(matches!(
            Fault::from_code("Whatever", "", true),
            Fault::Other {
                retryable: true,
                ..
            }
        ));
        assert!(matches!(
            Fault::from_code("InvalidParameterValue", "bad delay", false),
            Fault::Invalid(_)
        ));
        assert!(
            Fault::from_code("ServiceUnavailable", "", false)
                .into_error("q", "op")
                .is_retryable()
        );
        assert!(
            Fault::Throttled("t".into())
                .into_error("q", "op")
                .is_retryable()
        );
        assert!(!Fault::Stale.into_error("q", "op").is_retryable());
    }
}
