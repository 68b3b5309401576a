//! The message envelope.

use std::{
    collections::BTreeMap,
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::{QueueError, Result};

/// A message's identifier: generated (a time-ordered UUIDv7) when not given.
///
/// Backends keep it through retries, nacks and dead-lettering, so it is the
/// key to make a handler idempotent. Cloning is cheap (a shared string).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(Arc<str>);

impl MessageId {
    /// A new unique id (UUIDv7: sortable by creation time).
    pub fn generate() -> Self {
        MessageId(uuid::Uuid::now_v7().to_string().into())
    }

    /// Wraps an id given by the caller or read back from a backend.
    pub fn new(id: impl Into<String>) -> Self {
        MessageId(id.into().into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for MessageId {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        String::deserialize(deserializer).map(MessageId::new)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.0)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for MessageId {
    fn from(s: String) -> Self {
        MessageId(s.into())
    }
}

impl From<&str> for MessageId {
    fn from(s: &str) -> Self {
        MessageId(s.into())
    }
}

/// Message headers: string keys and values, kept in key order.
///
/// Well-known keys have accessors on [`Message`]: `content-type`, and the W3C
/// trace context `traceparent` / `tracestate`.
pub type Headers = BTreeMap<String, String>;

/// A task to enqueue, or one that was received.
///
/// Build one with [`Message::new`] (bytes) or [`Message::json`] and the
/// `with_*` methods; backends fill in [`Message::enqueued_at`] on delivery.
///
/// ```
/// # use std::time::Duration;
/// # use flextide_queue_core::Message;
/// let msg = Message::json(&serde_json::json!({"invoice": 17}))?
///     .with_priority(5)
///     .with_delay(Duration::from_secs(30))
///     .with_ordering_key("customer-9");
/// assert_eq!(msg.content_type(), Some("application/json"));
/// # Ok::<_, flextide_queue_core::QueueError>(())
/// ```
///
/// `#[non_exhaustive]`: build it with [`Message::new`] or
/// [`Message::from_parts`] and the `with_*` methods (backends assign the
/// public fields of a message they decode), so a field added later breaks
/// no one.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// Identifier, generated when the message is built.
    pub id: MessageId,
    /// The body, carried byte for byte.
    pub payload: Bytes,
    /// Headers (content type, trace context, your own).
    pub headers: Headers,
    /// Higher is delivered first where the backend supports priority
    /// (`Capabilities::priority`); 0 is the default.
    pub priority: u8,
    /// Do not deliver before this much time has passed since the push
    /// (`Capabilities::delay`). On received messages this is `None`.
    pub delay: Option<Duration>,
    /// Messages with the same key are delivered one at a time, in push order,
    /// where `Capabilities::ordering_key` holds (SQS FIFO: the group id).
    pub ordering_key: Option<String>,
    /// Deduplication id for backends that deduplicate (SQS FIFO).
    pub dedup_id: Option<String>,
    /// When the backend accepted the message; set on received messages.
    pub enqueued_at: Option<SystemTime>,
}

impl fmt::Debug for Message {
    // The payload can hold customer data: show its size, not its bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("payload_len", &self.payload.len())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("priority", &self.priority)
            .field("delay", &self.delay)
            .field("ordering_key", &self.ordering_key)
            .field("dedup_id", &self.dedup_id)
            .field("enqueued_at", &self.enqueued_at)
            .finish()
    }
}

/// Header key of the payload's media type.
pub const CONTENT_TYPE: &str = "content-type";
/// Header key of the W3C trace context's `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// Header key of the W3C trace context's `tracestate`.
pub const TRACESTATE: &str = "tracestate";

impl Message {
    /// A message carrying these bytes, with a fresh id.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Message {
            id: MessageId::generate(),
            ..Message::without_id(payload.into())
        }
    }

    /// A message with a known id, for backends rebuilding a received message
    /// (no id is generated).
    pub fn from_parts(id: impl Into<MessageId>, payload: impl Into<Bytes>) -> Self {
        Message {
            id: id.into(),
            ..Message::without_id(payload.into())
        }
    }

    fn without_id(payload: Bytes) -> Self {
        Message {
            id: MessageId(Arc::from("")),
            payload,
            headers: Headers::new(),
            priority: 0,
            delay: None,
            ordering_key: None,
            dedup_id: None,
            enqueued_at: None,
        }
    }

    /// A message whose payload is `value` as JSON, with
    /// `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        let body = serde_json::to_vec(value)?;
        Ok(Message::new(body).with_header(CONTENT_TYPE, "application/json"))
    }

    /// Decodes the payload as JSON.
    pub fn json_payload<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload).map_err(QueueError::from)
    }

    /// Replaces the generated id.
    pub fn with_id(mut self, id: impl Into<MessageId>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }

    /// Sets the priority (higher first).
    pub fn with_priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }

    /// Delays delivery by `delay` from the moment of the push.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = (!delay.is_zero()).then_some(delay);
        self
    }

    /// Delays delivery until `at` (measured now, against the system clock).
    pub fn with_not_before(self, at: SystemTime) -> Self {
        let delay = at.duration_since(SystemTime::now()).unwrap_or_default();
        self.with_delay(delay)
    }

    /// Sets the ordering key.
    pub fn with_ordering_key(mut self, key: impl Into<String>) -> Self {
        self.ordering_key = Some(key.into());
        self
    }

    /// Sets the deduplication id.
    pub fn with_dedup_id(mut self, id: impl Into<String>) -> Self {
        self.dedup_id = Some(id.into());
        self
    }

    /// Sets when the backend accepted the message (backends, on delivery).
    pub fn with_enqueued_at(mut self, at: SystemTime) -> Self {
        self.enqueued_at = Some(at);
        self
    }

    /// Replaces every header.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the W3C `traceparent` (and optionally `tracestate`) headers.
    pub fn with_trace_context(
        mut self,
        traceparent: impl Into<String>,
        tracestate: Option<String>,
    ) -> Self {
        self.headers
            .insert(TRACEPARENT.to_owned(), traceparent.into());
        if let Some(state) = tracestate {
            self.headers.insert(TRACESTATE.to_owned(), state);
        }
        self
    }

    /// The `content-type` header.
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get(CONTENT_TYPE).map(String::as_str)
    }

    /// The W3C `traceparent` header.
    pub fn traceparent(&self) -> Option<&str> {
        self.headers.get(TRACEPARENT).map(String::as_str)
    }

    /// The W3C `tracestate` header.
    pub fn tracestate(&self) -> Option<&str> {
        self.headers.get(TRACESTATE).map(String::as_str)
    }
}

/// Fails with [`QueueError::PayloadTooLarge`] when `len` exceeds `max`.
/// Backends call it before sending anything.
pub fn check_payload(backend: &'static str, len: usize, max: Option<usize>) -> Result<()> {
    match max {
        Some(max) if len > max => Err(QueueError::PayloadTooLarge {
            backend,
            size: len,
            max,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_headers() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Task {
            n: u32,
        }
        let m = Message::json(&Task { n: 7 })
            .unwrap()
            .with_trace_context("00-abc-def-01", None);
        assert_eq!(m.json_payload::<Task>().unwrap(), Task { n: 7 });
        assert_eq!(m.content_type(), Some("application/json"));
        assert_eq!(m.traceparent(), Some("00-abc-def-01"));
        assert!(Message::new("not json").json_payload::<Task>().is_err());
    }

    #[test]
    fn ids_are_unique_and_debug_hides_payload() {
        let a = Message::new("secret-card-number");
        let b = Message::new("x");
        assert_ne!(a.id, b.id);
        assert!(!format!("{a:?}").contains("secret"));
    }

    #[test]
    fn zero_delay_is_no_delay() {
        assert_eq!(Message::new("x").with_delay(Duration::ZERO).delay, None);
        assert!(
            Message::new("x")
                .with_not_before(SystemTime::now() + Duration::from_secs(60))
                .delay
                .is_some()
        );
    }

    #[test]
    fn payload_limit() {
        assert!(check_payload("x", 10, Some(10)).is_ok());
        assert!(matches!(
            check_payload("x", 11, Some(10)),
            Err(QueueError::PayloadTooLarge {
                size: 11,
                max: 10,
                ..
            })
        ));
        assert!(check_payload("x", usize::MAX, None).is_ok());
    }
}
