//! How a `Message` travels as an AMQP message: the id in `message-id`,
//! headers as AMQP headers, and our own bookkeeping in `x-ft-*` headers.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use flextide_queue_core::{
    Headers, Message, MessageId, QueueError, Result,
    backend::{foreign_id, now_millis, system_time_from_millis},
};
use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

use crate::BACKEND;

/// Deliveries completed before this copy was published (0 on a push).
pub(crate) const H_ATTEMPTS: &str = "x-ft-attempts";
/// When the message was first accepted, in milliseconds since the epoch.
pub(crate) const H_ENQUEUED: &str = "x-ft-enqueued-ms";
/// Dead letters: why the message was dead-lettered.
pub(crate) const H_REASON: &str = "x-ft-reason";
/// Dead letters: when, in milliseconds since the epoch.
pub(crate) const H_DEAD_AT: &str = "x-ft-dead-ms";

/// Header keys the backend or the broker owns; a user header with one of
/// these names would not round-trip, so `push` refuses it.
pub(crate) fn is_reserved(key: &str) -> bool {
    key.starts_with("x-ft-")
        || key == "x-death"
        || key.starts_with("x-first-death-")
        || key.starts_with("x-last-death-")
        || key == "x-delivery-count"
        || key == "x-acquired-count"
}

/// Checks what a push can carry: id and header keys are AMQP short
/// strings (at most 255 bytes) and no header may use a reserved name.
pub(crate) fn check_message(message: &Message) -> Result<()> {
    if message.id.as_str().len() > 255 {
        return Err(QueueError::invalid_message(
            BACKEND,
            "message id longer than 255 bytes",
        ));
    }
    for key in message.headers.keys() {
        if key.len() > 255 {
            return Err(QueueError::invalid_message(
                BACKEND,
                "header name longer than 255 bytes",
            ));
        }
        if is_reserved(key) {
            return Err(QueueError::invalid_message(
                BACKEND,
                format!("header name {key:?} is reserved (x-ft-*, x-death, x-delivery-count)"),
            ));
        }
    }
    Ok(())
}

/// Properties of one published copy: persistent, with the id, the user's
/// headers and our bookkeeping headers.
pub(crate) fn properties(
    message: &Message,
    attempts_done: u32,
    enqueued_ms: i64,
    extra: Vec<(&'static str, AMQPValue)>,
) -> BasicProperties {
    let mut table = FieldTable::default();
    for (key, value) in &message.headers {
        // Checked by `check_message` before anything is published.
        if let Ok(key) = ShortString::try_new(key.as_str()) {
            table.insert(
                key,
                AMQPValue::LongString(LongString::from(value.as_bytes())),
            );
        }
    }
    table.insert(
        H_ATTEMPTS.into(),
        AMQPValue::LongLongInt(i64::from(attempts_done)),
    );
    table.insert(H_ENQUEUED.into(), AMQPValue::LongLongInt(enqueued_ms));
    for (key, value) in extra {
        table.insert(key.into(), value);
    }
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(table)
        .with_timestamp(u64::try_from(enqueued_ms / 1000).unwrap_or(0));
    if let Ok(id) = ShortString::try_new(message.id.as_str()) {
        props = props.with_message_id(id);
    }
    props
}

/// A received AMQP message read back into our terms.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub(crate) message: Message,
    /// Deliveries completed before this copy (our header; 0 when absent).
    pub(crate) attempts_done: u32,
    pub(crate) enqueued_ms: i64,
    /// Dead letters: our reason, or the broker's (`x-death`).
    pub(crate) reason: Option<String>,
    pub(crate) dead_at_ms: Option<i64>,
    /// What is wrong with it, when one of our own `x-ft-*` headers cannot be
    /// read (another client wrote it, or wrote it with the wrong type): such
    /// a delivery goes to the dead letters by itself (contract clause 12).
    /// The rest of the fields are read leniently, so it can still be listed
    /// and replayed from there.
    pub(crate) undecodable: Option<String>,
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn int(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        _ => None,
    }
}

fn any_text(value: &AMQPValue) -> String {
    text(value)
        .or_else(|| int(value).map(|v| v.to_string()))
        .unwrap_or_else(|| format!("{value:?}"))
}

/// The broker's reason for its latest dead-lettering, from `x-death`.
fn broker_reason(table: &FieldTable) -> Option<String> {
    let AMQPValue::FieldArray(deaths) = table.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(latest) = deaths.as_slice().first()? else {
        return None;
    };
    let reason = latest.inner().get("reason").and_then(text)?;
    Some(match reason.as_str() {
        "delivery_limit" => {
            "delivery limit exceeded (the broker gave up redelivering it)".to_owned()
        }
        other => format!("dead-lettered by the broker: {other}"),
    })
}

/// How often the broker itself redelivered this copy: quorum queues count
/// it in `x-delivery-count`; classic queues only flag a redelivery.
pub(crate) fn broker_returns(props: &BasicProperties, redelivered: bool) -> u32 {
    let counted = props
        .headers()
        .as_ref()
        .and_then(|t| t.inner().get("x-delivery-count").and_then(int))
        .and_then(|v| u32::try_from(v).ok());
    counted.unwrap_or(u32::from(redelivered))
}

/// Reads a delivery's payload and properties; `returns` are deliveries the
/// broker made that our header does not count (see [`broker_returns`]).
///
/// Never fails: a bookkeeping header that cannot be read is reported in
/// [`Decoded::undecodable`], and a message another client published without
/// `message-id` gets a stable id derived from its content (see [`stable_id`]).
pub(crate) fn decode(data: Vec<u8>, props: &BasicProperties, returns: u32) -> Decoded {
    let mut headers = Headers::new();
    let mut attempts_done = 0;
    let mut enqueued_ms = None;
    let mut reason = None;
    let mut dead_at_ms = None;
    let mut broker = None;
    let mut problems = Vec::new();
    let mut bad = |key: &str, value: &AMQPValue, want: &str| {
        problems.push(format!("header {key} is {}, not {want}", kind(value)));
    };
    if let Some(table) = props.headers() {
        for (key, value) in table {
            match key.as_str() {
                H_ATTEMPTS => match int(value).and_then(|v| u32::try_from(v).ok()) {
                    Some(v) => attempts_done = v,
                    None => bad(H_ATTEMPTS, value, "a count"),
                },
                H_ENQUEUED => match int(value) {
                    Some(v) => enqueued_ms = Some(v),
                    None => bad(H_ENQUEUED, value, "milliseconds"),
                },
                H_REASON => match text(value) {
                    Some(v) => reason = Some(v),
                    None => bad(H_REASON, value, "text"),
                },
                H_DEAD_AT => match int(value) {
                    Some(v) => dead_at_ms = Some(v),
                    None => bad(H_DEAD_AT, value, "milliseconds"),
                },
                k if is_reserved(k) => {}
                k => {
                    headers.insert(k.to_owned(), any_text(value));
                }
            }
        }
        broker = broker_reason(table);
    }
    let enqueued_ms = enqueued_ms
        .or_else(|| {
            props
                .timestamp()
                .and_then(|s| i64::try_from(s).ok())
                .map(|s| s * 1000)
        })
        .unwrap_or_else(now_millis);
    let id = match props.message_id() {
        Some(id) => MessageId::new(id.as_str()),
        None => stable_id(&data, props),
    };
    let message = Message::from_parts(id, Bytes::from(data))
        .with_headers(headers)
        .with_enqueued_at(system_time_from_millis(enqueued_ms));
    Decoded {
        message,
        attempts_done: attempts_done.saturating_add(returns),
        enqueued_ms,
        reason: reason.or(broker),
        dead_at_ms,
        undecodable: (!problems.is_empty()).then(|| problems.join("; ")),
    }
}

/// What kind of AMQP value this is, for an `undecodable:` reason.
fn kind(value: &AMQPValue) -> &'static str {
    match value {
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => "text",
        AMQPValue::FieldTable(_) => "a table",
        AMQPValue::FieldArray(_) => "an array",
        AMQPValue::Boolean(_) => "a boolean",
        AMQPValue::Float(_) | AMQPValue::Double(_) | AMQPValue::DecimalValue(_) => "a fraction",
        AMQPValue::Void => "void",
        AMQPValue::ByteArray(_) => "bytes",
        _ => "a number out of range",
    }
}

/// The id of a message published by another client without `message-id`
/// (contract clause 12): `rabbitmq-<128-bit hash>` of its body and of the
/// properties its producer set. The broker redelivers the very same body
/// and properties (it only adds `x-delivery-count` and the redelivered
/// flag, which are left out), so every delivery of that message, in any
/// process, gets the same id; once this backend republishes it (a nack, an
/// ended lease, the dead letters) the id travels in `message-id`.
///
/// Derived rather than assigned by republishing on first sight, because
/// that would open a crash window (republished, not yet acknowledged: the
/// original comes back and gets a second id) and cost a round trip per
/// message. The price: two messages with identical bodies and properties
/// share an id; a producer that wants them told apart sets `message-id`
/// (or a timestamp, or any header).
pub(crate) fn stable_id(body: &[u8], props: &BasicProperties) -> MessageId {
    let mut h = Fnv128::default();
    h.field(b"body", body);
    let short = |s: &Option<ShortString>| s.as_ref().map(|s| s.as_str().to_owned());
    for (name, value) in [
        ("content-type", short(props.content_type())),
        ("content-encoding", short(props.content_encoding())),
        ("correlation-id", short(props.correlation_id())),
        ("reply-to", short(props.reply_to())),
        ("type", short(props.kind())),
        ("user-id", short(props.user_id())),
        ("app-id", short(props.app_id())),
        ("timestamp", props.timestamp().map(|t| t.to_string())),
        ("priority", props.priority().map(|p| p.to_string())),
    ] {
        if let Some(value) = value {
            h.field(name.as_bytes(), value.as_bytes());
        }
    }
    if let Some(table) = props.headers() {
        // A BTreeMap: the keys come in the same order every time.
        for (key, value) in table {
            if !is_reserved(key.as_str()) {
                h.field(key.as_str().as_bytes(), any_text(value).as_bytes());
            }
        }
    }
    foreign_id(BACKEND, format!("{:032x}", h.0))
}

/// FNV-1a, 128 bits: stable across processes, platforms and Rust versions
/// (unlike `DefaultHasher`), which the id of a redelivered message needs.
struct Fnv128(u128);

impl Default for Fnv128 {
    fn default() -> Self {
        Fnv128(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d)
    }
}

impl Fnv128 {
    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u128::from(b);
            self.0 = self
                .0
                .wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
        }
    }

    /// A length-prefixed field, so `("ab", "c")` and `("a", "bc")` differ.
    fn field(&mut self, name: &[u8], value: &[u8]) {
        for part in [name, value] {
            self.bytes(&(part.len() as u64).to_le_bytes());
            self.bytes(part);
        }
    }
}

/// Time since `enqueued_ms`, for `oldest_age`.
pub(crate) fn age(enqueued_ms: i64) -> Duration {
    SystemTime::now()
        .duration_since(system_time_from_millis(enqueued_ms))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_id_headers_and_attempts() {
        let msg = Message::new(vec![0u8, 159, 146, 150])
            .with_header("x-task", "invoice")
            .with_header("content-type", "b");
        let props = properties(
            &msg,
            3,
            1_700_000_000_123,
            vec![(H_REASON, AMQPValue::LongString("why".into()))],
        );
        let d = decode(msg.payload.to_vec(), &props, 0);
        assert_eq!(d.message.id, msg.id);
        assert_eq!(d.message.payload, msg.payload);
        assert_eq!(d.message.headers, msg.headers);
        assert_eq!(d.attempts_done, 3);
        assert_eq!(d.enqueued_ms, 1_700_000_000_123);
        assert_eq!(d.reason.as_deref(), Some("why"));
    }

    #[test]
    fn broker_redeliveries_count_as_attempts() {
        let mut table = FieldTable::default();
        table.insert("x-delivery-count".into(), AMQPValue::LongLongInt(2));
        let quorum = BasicProperties::default().with_headers(table);
        assert_eq!(broker_returns(&quorum, true), 2);
        assert_eq!(broker_returns(&BasicProperties::default(), true), 1);
        assert_eq!(broker_returns(&BasicProperties::default(), false), 0);
        let msg = Message::new("x");
        let d = decode(Vec::new(), &properties(&msg, 3, 0, Vec::new()), 2);
        assert_eq!(d.attempts_done, 5);
        assert!(
            d.message.headers.is_empty(),
            "bookkeeping headers are not user headers"
        );
    }

    #[test]
    fn a_message_without_id_gets_the_same_id_every_time() {
        let mut table = FieldTable::default();
        table.insert("kind".into(), AMQPValue::LongString("order".into()));
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(table.clone());
        let first = decode(b"{}".to_vec(), &props, 0);
        // The broker's redelivery adds its own count; the id stays.
        let mut redelivered = table;
        redelivered.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
        let again = decode(b"{}".to_vec(), &props.clone().with_headers(redelivered), 1);
        assert_eq!(first.message.id, again.message.id);
        assert!(first.message.id.as_str().starts_with("rabbitmq-"));
        assert_eq!(
            first.message.id.as_str(),
            "rabbitmq-15bc75273f2daa64d10d1a8163788c5b",
            "the id must not change between versions: messages already on a broker keep theirs"
        );
        assert_ne!(
            decode(b"[]".to_vec(), &props, 0).message.id,
            first.message.id
        );
        assert!(first.undecodable.is_none());
    }

    #[test]
    fn our_headers_with_the_wrong_type_are_undecodable() {
        let mut table = FieldTable::default();
        table.insert(H_ATTEMPTS.into(), AMQPValue::LongString("many".into()));
        table.insert("x-task".into(), AMQPValue::LongString("ok".into()));
        let d = decode(
            b"x".to_vec(),
            &BasicProperties::default().with_headers(table),
            0,
        );
        assert_eq!(
            d.undecodable.as_deref(),
            Some("header x-ft-attempts is text, not a count")
        );
        assert_eq!(d.attempts_done, 0);
        assert_eq!(
            d.message.headers.get("x-task").map(String::as_str),
            Some("ok")
        );
    }

    #[test]
    fn reserved_headers_are_refused() {
        assert!(check_message(&Message::new("x").with_header("x-ft-attempts", "9")).is_err());
        assert!(check_message(&Message::new("x").with_header("x-death", "9")).is_err());
        assert!(check_message(&Message::new("x").with_id("i".repeat(256))).is_err());
        assert!(check_message(&Message::new("x").with_header("x-task", "ok")).is_ok());
    }
}
