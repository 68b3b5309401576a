//! gRPC statuses of Pub/Sub mapped into `QueueError`: a table of codes,
//! plus the one detail exactly-once delivery adds.

use flextide_queue_core::QueueError;
use gcloud_gax::grpc::{Code, Status};

use crate::BACKEND;

/// What exactly-once delivery answers for an ack or modack whose ack id is
/// no longer the message's newest (it was delivered again, or settled), in
/// the `ErrorInfo` metadata of an `INVALID_ARGUMENT` status.
const INVALID_ACK_ID: &str = "PERMANENT_FAILURE_INVALID_ACK_ID";
/// Its transient cousins (`TRANSIENT_FAILURE_UNORDERED_ACK_ID`, …): try again.
const TRANSIENT_ACK: &str = "TRANSIENT_FAILURE";

/// Whether the status is exactly-once delivery refusing a stale ack id.
pub(crate) fn is_stale(status: &Status) -> bool {
    status.code() == Code::InvalidArgument && mentions(status, INVALID_ACK_ID)
}

/// Whether `needle` is in the status's message or its encoded details
/// (a `google.rpc.Status` whose `ErrorInfo` metadata maps each failed ack
/// id to its reason: a byte search finds the reason without decoding).
fn mentions(status: &Status, needle: &str) -> bool {
    status.message().contains(needle)
        || status
            .details()
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
}

/// The ack ids a status of a batch ack or modack names as stale, when its
/// details say which (exactly-once delivery lists each failed id).
pub(crate) fn stale_ids<'a>(status: &Status, ack_ids: &'a [String]) -> Vec<&'a str> {
    if !is_stale(status) {
        return Vec::new();
    }
    let details = status.details();
    ack_ids
        .iter()
        .filter(|id| details.windows(id.len()).any(|w| w == id.as_bytes()))
        .map(String::as_str)
        .collect()
}

/// Whether a call that failed this way may succeed when sent again.
pub(crate) fn transient(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable
        | Code::Unknown
        | Code::Internal
        | Code::Aborted
        | Code::ResourceExhausted => true,
        Code::InvalidArgument => mentions(status, TRANSIENT_ACK),
        _ => false,
    }
}

/// Maps a failed call of `operation` into the queue's error vocabulary.
pub(crate) fn map(operation: &'static str, status: Status) -> QueueError {
    if is_stale(&status) {
        return QueueError::StaleReceipt { backend: BACKEND };
    }
    if status.code() == Code::InvalidArgument
        && status
            .message()
            .to_ascii_lowercase()
            .contains("invalid ack id")
    {
        return QueueError::invalid_receipt(BACKEND, "Pub/Sub does not know this ack id");
    }
    let what = || format!("{operation}: {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::DeadlineExceeded => QueueError::Timeout {
            backend: BACKEND,
            operation,
            after: std::time::Duration::ZERO,
        },
        Code::Unavailable | Code::Cancelled => QueueError::connection(BACKEND, what()),
        Code::ResourceExhausted => QueueError::Throttled {
            backend: BACKEND,
            source: what().into(),
        },
        Code::Unauthenticated | Code::PermissionDenied => QueueError::configuration(
            BACKEND,
            format!(
                "{} (check the credentials and their Pub/Sub roles; the Pub/Sub service account also needs publisher on the dead-letter topic and subscriber on the subscription)",
                what()
            ),
        ),
        Code::InvalidArgument if mentions(&status, TRANSIENT_ACK) => {
            QueueError::backend_error(BACKEND, true, what())
        }
        code => QueueError::backend_error(
            BACKEND,
            matches!(code, Code::Unknown | Code::Internal | Code::Aborted),
            what(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_and_transient() {
        let stale = Status::with_details(
            Code::InvalidArgument,
            "",
            bytes::Bytes::from_static(
                b"\x0a..projects/p/subscriptions/s:3\x12 PERMANENT_FAILURE_INVALID_ACK_ID",
            ),
        );
        assert!(is_stale(&stale));
        assert!(matches!(
            map("ack", stale.clone()),
            QueueError::StaleReceipt { .. }
        ));
        let ids = vec![
            "projects/p/subscriptions/s:3".to_owned(),
            "projects/p/subscriptions/s:4".to_owned(),
        ];
        assert_eq!(
            stale_ids(&stale, &ids),
            vec!["projects/p/subscriptions/s:3"]
        );
        assert!(!transient(&stale));
        assert!(transient(&Status::unavailable("down")));
        assert!(map("pull", Status::unavailable("down")).is_retryable());
        assert!(!map("pull", Status::invalid_argument("bad")).is_retryable());
        assert!(matches!(
            map("pull", Status::permission_denied("no")),
            QueueError::Configuration { .. }
        ));
        assert!(matches!(
            map("ack", Status::invalid_argument("Invalid ack id (ack_id=0)")),
            QueueError::InvalidReceipt { .. }
        ));
    }
}
