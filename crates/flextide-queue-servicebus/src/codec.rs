//! The message on the wire: a Flextide message as an AMQP 1.0 message
//! Service Bus understands, and back.
//!
//! - body: one `data` section holding the payload;
//! - `message-id` (Service Bus's `MessageId`, the key of its duplicate
//!   detection): the Flextide id, or the dedup id of a unique push, or a
//!   fresh one for a copy (`nack(delay)`, replay) on a queue with duplicate
//!   detection, which would otherwise drop the copy; the Flextide id then
//!   travels in the application property `flextide-id`;
//! - application properties: the headers, plus `flextide-attempts`, the
//!   attempts a message had before it was scheduled again by
//!   `nack(delay)` (a new copy starts Service Bus's delivery count at 0);
//! - message annotation `x-opt-scheduled-enqueue-time`: a delayed push.
//!
//! From Service Bus a received message also carries `x-opt-lock-token`,
//! `x-opt-locked-until`, `x-opt-sequence-number` and `x-opt-enqueued-time`
//! (annotations) and the delivery count (header).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fe2o3_amqp_types::{
    messaging::{
        ApplicationProperties, Body, Data, Header, Message as AmqpMessage, MessageAnnotations,
        MessageId as AmqpId, Properties, annotations::OwnedKey,
    },
    primitives::{Binary, SimpleValue, Symbol, Timestamp, Value},
};
use flextide_queue_core::{Message, MessageId, backend::foreign_id};
use uuid::Uuid;

use crate::BACKEND;

/// The application property carrying attempts made before this copy.
pub(crate) const ATTEMPTS: &str = "flextide-attempts";
/// The Flextide id, when `message-id` holds something else.
pub(crate) const FLEXTIDE_ID: &str = "flextide-id";
/// When the message was sent (Unix milliseconds), for brokers that do not
/// say when they enqueued it.
pub(crate) const SENT_AT: &str = "flextide-sent-at";
/// When a scheduled message becomes visible (Service Bus annotation).
pub(crate) const SCHEDULED: &str = "x-opt-scheduled-enqueue-time";
const LOCK_TOKEN: &str = "x-opt-lock-token";
const LOCKED_UNTIL: &str = "x-opt-locked-until";
const SEQUENCE: &str = "x-opt-sequence-number";
const ENQUEUED: &str = "x-opt-enqueued-time";
/// Why Service Bus dead-lettered a message (application properties).
pub(crate) const DLQ_REASON: &str = "DeadLetterReason";
pub(crate) const DLQ_DESCRIPTION: &str = "DeadLetterErrorDescription";

/// A Flextide message as it is sent with `wire_id` as its `message-id`:
/// `earlier_attempts` are carried for a rescheduled copy, `visible_at`
/// schedules it.
pub(crate) fn encode(
    message: &Message,
    wire_id: &str,
    earlier_attempts: u32,
    visible_at: Option<SystemTime>,
) -> AmqpMessage<Data> {
    let mut props = ApplicationProperties::builder();
    for (k, v) in message.headers.iter() {
        props = props.insert(k.clone(), SimpleValue::String(v.clone()));
    }
    if wire_id != message.id.as_str() {
        props = props.insert(
            FLEXTIDE_ID,
            SimpleValue::String(message.id.as_str().to_owned()),
        );
    }
    if earlier_attempts > 0 {
        props = props.insert(ATTEMPTS, SimpleValue::Uint(earlier_attempts));
    }
    // Brokers other than Service Bus add no enqueued time. Not the
    // `creation-time` property: RabbitMQ's AMQP 1.0 plugin (3.10) stops
    // answering a link's sends after one carrying it.
    let sent_at = timestamp(SystemTime::now()).milliseconds();
    props = props.insert(SENT_AT, SimpleValue::Long(sent_at));
    let mut builder = AmqpMessage::builder()
        .header(Header {
            durable: true,
            ..Header::default()
        })
        .properties(Properties {
            message_id: Some(AmqpId::String(wire_id.to_owned())),
            ..Properties::default()
        })
        .application_properties(props.build());
    if let Some(at) = visible_at {
        builder = builder.message_annotations(
            MessageAnnotations::builder()
                .insert(Symbol::from(SCHEDULED), Value::Timestamp(timestamp(at)))
                .build(),
        );
    }
    builder.data(Binary::from(message.payload.to_vec())).build()
}

/// What a received message says about itself, beside its Flextide message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Received {
    /// The message, or why it cannot be read (foreign bodies).
    pub(crate) message: Result<Message, String>,
    /// Service Bus's lock token (`x-opt-lock-token`), else the one the
    /// delivery tag holds.
    pub(crate) lock_token: Option<Uuid>,
    /// When the lock runs out (`x-opt-locked-until`), if the broker says.
    pub(crate) locked_until: Option<SystemTime>,
    /// Deliveries before this one (header `delivery-count`).
    pub(crate) delivery_count: u32,
    /// Attempts of earlier copies (`flextide-attempts`).
    pub(crate) earlier_attempts: u32,
    /// Service Bus's sequence number.
    pub(crate) sequence: Option<i64>,
    /// `DeadLetterReason` and `DeadLetterErrorDescription`, on the
    /// dead-letter sub-queue.
    pub(crate) dead_letter_reason: Option<String>,
}

impl Received {
    /// The attempt this delivery is: 1 on the first delivery of the first
    /// copy.
    pub(crate) fn attempt(&self) -> u32 {
        self.earlier_attempts
            .saturating_add(self.delivery_count)
            .saturating_add(1)
    }
}

/// Reads a received message; `tag` is the delivery tag (Service Bus: the
/// lock token as a .NET GUID, bytes of its first three fields reversed).
pub(crate) fn decode(message: AmqpMessage<Body<Value>>, tag: &[u8]) -> Received {
    let annotation = |name: &str| {
        message
            .message_annotations
            .as_ref()
            .and_then(|a| a.0.get(&OwnedKey::Symbol(Symbol::from(name))).cloned())
    };
    let lock_token = match annotation(LOCK_TOKEN) {
        Some(Value::Uuid(u)) => Some(Uuid::from_bytes(*u.as_inner())),
        _ => <[u8; 16]>::try_from(tag).ok().map(Uuid::from_bytes_le),
    };
    let locked_until = match annotation(LOCKED_UNTIL) {
        Some(Value::Timestamp(t)) => Some(system_time(t)),
        _ => None,
    };
    let sequence = match annotation(SEQUENCE) {
        Some(Value::Long(n)) => Some(n),
        _ => None,
    };
    let enqueued_at = match annotation(ENQUEUED) {
        Some(Value::Timestamp(t)) => Some(system_time(t)),
        _ => match message
            .application_properties
            .as_ref()
            .and_then(|p| p.0.get(SENT_AT))
        {
            Some(SimpleValue::Long(ms)) => Some(system_time(Timestamp::from_milliseconds(*ms))),
            _ => None,
        },
    };
    let delivery_count = message.header.as_ref().map_or(0, |h| h.delivery_count);
    let mut earlier_attempts = 0;
    let mut dead_letter_reason = None;
    let mut own_id = None;
    let mut headers = Vec::new();
    if let Some(props) = &message.application_properties {
        for (k, v) in props.0.iter() {
            match (k.as_str(), v) {
                (ATTEMPTS, SimpleValue::Uint(n)) => earlier_attempts = *n,
                (FLEXTIDE_ID, SimpleValue::String(s)) => own_id = Some(MessageId::new(s.clone())),
                (DLQ_REASON, SimpleValue::String(s)) => dead_letter_reason = Some(s.clone()),
                (DLQ_DESCRIPTION | SENT_AT, _) => {}
                (_, SimpleValue::String(s)) => headers.push((k.clone(), s.clone())),
                _ => {}
            }
        }
    }
    let wire_id = message
        .properties
        .as_ref()
        .and_then(|p| p.message_id.clone());
    let id = match (own_id, wire_id) {
        (Some(id), _) => id,
        (None, Some(AmqpId::String(s))) => MessageId::new(s),
        (None, Some(AmqpId::Uuid(u))) => {
            MessageId::new(Uuid::from_bytes(*u.as_inner()).to_string())
        }
        (None, Some(AmqpId::Ulong(n))) => MessageId::new(n.to_string()),
        (None, Some(AmqpId::Binary(b))) => foreign_id(BACKEND, hex(&b)),
        (None, None) => foreign_id(
            BACKEND,
            sequence.map_or_else(|| hex(tag), |s| s.to_string()),
        ),
    };
    let payload = match message.body {
        Body::Data(batch) => Ok(batch
            .into_iter()
            .flat_map(|d| d.0.into_vec())
            .collect::<Vec<u8>>()),
        Body::Value(v) => match v.0 {
            Value::Binary(b) => Ok(b.into_vec()),
            Value::String(s) => Ok(s.into_bytes()),
            other => Err(format!(
                "an amqp-value body of type {:?}",
                other.format_code()
            )),
        },
        Body::Empty => Ok(Vec::new()),
        Body::Sequence(_) => Err("an amqp-sequence body".to_owned()),
    };
    let message = payload.map(|p| {
        let mut m = Message::from_parts(id, Bytes::from(p));
        for (k, v) in headers {
            m = m.with_header(k, v);
        }
        if let Some(at) = enqueued_at {
            m = m.with_enqueued_at(at);
        }
        m
    });
    Received {
        message,
        lock_token,
        locked_until,
        delivery_count,
        earlier_attempts,
        sequence,
        dead_letter_reason,
    }
}

pub(crate) fn timestamp(at: SystemTime) -> Timestamp {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    Timestamp::from_milliseconds(i64::try_from(ms).unwrap_or(i64::MAX))
}

pub(crate) fn system_time(t: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(t.milliseconds()).unwrap_or(0))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use fe2o3_amqp_types::messaging::{AmqpValue, Batch};

    use super::*;

    fn as_received(m: AmqpMessage<Data>) -> AmqpMessage<Body<Value>> {
        m.map_body(|d| Body::Data(Batch::new(vec![d])))
    }

    #[test]
    fn round_trips_id_payload_headers_and_carried_attempts() {
        let m = Message::from_parts("job-1", &b"\x00payload\xff"[..])
            .with_header("traceparent", "00-ab");
        let wire = encode(&m, "job-1", 2, None);
        assert!(wire.message_annotations.is_none());
        let r = decode(as_received(wire), &[]);
        let back = r.message.clone().unwrap();
        assert_eq!(back.id.as_str(), "job-1");
        assert_eq!(&back.payload[..], b"\x00payload\xff");
        assert_eq!(
            back.headers.get("traceparent").map(String::as_str),
            Some("00-ab")
        );
        assert_eq!(
            (r.earlier_attempts, r.delivery_count, r.attempt()),
            (2, 0, 3)
        );
    }

    #[test]
    fn another_wire_id_carries_the_flextide_id_beside_it() {
        let m = Message::from_parts("job-7", "p");
        let wire = encode(&m, "order-42", 0, None);
        assert_eq!(
            wire.properties.as_ref().unwrap().message_id,
            Some(AmqpId::String("order-42".into())),
            "Service Bus's duplicate detection keys on message-id"
        );
        let r = decode(as_received(wire), &[]);
        assert_eq!(r.message.unwrap().id.as_str(), "job-7");
        let plain = encode(&m, "job-7", 0, None);
        assert!(
            plain
                .application_properties
                .as_ref()
                .unwrap()
                .0
                .get(FLEXTIDE_ID)
                .is_none(),
            "the id is not sent twice"
        );
    }

    #[test]
    fn a_delay_becomes_the_scheduled_enqueue_time() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let wire = encode(&Message::from_parts("x", "p"), "x", 0, Some(at));
        let ann = wire.message_annotations.as_ref().unwrap();
        assert_eq!(
            ann.0.get(&OwnedKey::Symbol(Symbol::from(SCHEDULED))),
            Some(&Value::Timestamp(Timestamp::from_milliseconds(
                1_700_000_000_123
            )))
        );
        let props = wire.application_properties.as_ref().unwrap();
        assert!(
            props.0.get(ATTEMPTS).is_none(),
            "first copies carry no count"
        );
    }

    #[test]
    fn reads_service_bus_annotations_and_the_lock_token_tag() {
        // A delivery as Service Bus sends it (AMQP guide, "Message
        // annotations"): delivery-count 3, lock token both as the
        // delivery tag (GUID byte order) and as x-opt-lock-token.
        let token = Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        let tag = token.to_bytes_le();
        let mut m = as_received(encode(&Message::from_parts("a", "p"), "a", 0, None));
        m.header.as_mut().unwrap().delivery_count = 3;
        m.message_annotations = Some(
            MessageAnnotations::builder()
                .insert(
                    Symbol::from(LOCKED_UNTIL),
                    Value::Timestamp(Timestamp::from_milliseconds(5_000)),
                )
                .insert(Symbol::from(SEQUENCE), Value::Long(42))
                .insert(
                    Symbol::from(ENQUEUED),
                    Value::Timestamp(Timestamp::from_milliseconds(1_000)),
                )
                .build(),
        );
        let r = decode(m.clone(), &tag);
        assert_eq!(r.lock_token, Some(token));
        assert_eq!(r.locked_until, Some(UNIX_EPOCH + Duration::from_secs(5)));
        assert_eq!((r.sequence, r.attempt()), (Some(42), 4));
        assert_eq!(
            r.message.unwrap().enqueued_at,
            Some(UNIX_EPOCH + Duration::from_secs(1))
        );
        // With the annotation present it wins over the tag.
        m.message_annotations.as_mut().unwrap().0.insert(
            OwnedKey::Symbol(Symbol::from(LOCK_TOKEN)),
            Value::Uuid(fe2o3_amqp_types::primitives::Uuid::from(*token.as_bytes())),
        );
        assert_eq!(decode(m, b"not-16-bytes").lock_token, Some(token));
    }

    #[test]
    fn foreign_bodies_and_dead_letter_reasons() {
        let plain: AmqpMessage<Body<Value>> = AmqpMessage::builder()
            .application_properties(
                ApplicationProperties::builder()
                    .insert(DLQ_REASON, SimpleValue::String("max attempts".into()))
                    .build(),
            )
            .body(Body::Value(AmqpValue(Value::String("hello".into()))))
            .build();
        let r = decode(plain, &[1, 2]);
        assert_eq!(r.dead_letter_reason.as_deref(), Some("max attempts"));
        let m = r.message.unwrap();
        assert_eq!(&m.payload[..], b"hello");
        assert!(m.id.as_str().contains("0102"), "{}", m.id.as_str());
        let odd: AmqpMessage<Body<Value>> = AmqpMessage::builder()
            .body(Body::Value(AmqpValue(Value::Int(7))))
            .build();
        assert!(decode(odd, &[]).message.is_err());
    }
}
