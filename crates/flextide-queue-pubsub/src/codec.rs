//! How a `Message` travels as a Pub/Sub message: the payload as the data,
//! our id and bookkeeping as attributes (`ft-*`), the user's headers as one
//! JSON object in `ft-h`. A plain push carries no enqueue time: the
//! server's `publish_time` is it.
//!
//! The headers travel as one JSON object rather than one attribute each:
//! attribute names have rules of their own (no `goog` prefix, at most 256
//! bytes) that header names need not follow, and one object round-trips
//! every header exactly. Pub/Sub allows 1024 bytes per attribute value, so
//! a message's headers are refused above that, before anything is sent.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use flextide_queue_core::{
    Headers, Message, MessageId, QueueError, Result,
    backend::{foreign_id, now_millis, system_time_from_millis},
};
use gcloud_googleapis::pubsub::v1::PubsubMessage;

use crate::BACKEND;

/// The message id.
pub(crate) const A_ID: &str = "ft-id";
/// The user's headers as a JSON object.
pub(crate) const A_HEADERS: &str = "ft-h";
/// When the message was first accepted (a replayed or dead-lettered
/// message), in milliseconds since the epoch.
pub(crate) const A_ENQUEUED: &str = "ft-enq";
/// Dead letters: why.
pub(crate) const A_REASON: &str = "ft-reason";
/// Dead letters: deliveries made.
pub(crate) const A_ATTEMPTS: &str = "ft-attempts";
/// Dead letters: when, in milliseconds since the epoch.
pub(crate) const A_DEAD_AT: &str = "ft-dead-at";
/// What Pub/Sub's own dead-letter forwarding adds: the deliveries made.
pub(crate) const A_PUBSUB_COUNT: &str = "CloudPubSubDeadLetterSourceDeliveryCount";
/// The prefix of every attribute Pub/Sub's forwarding adds.
const PUBSUB_DL_PREFIX: &str = "CloudPubSubDeadLetter";

/// The most an attribute value may hold on Google Cloud.
pub(crate) const MAX_ATTRIBUTE: usize = 1024;

/// The Pub/Sub message of a push (or a replay: `enqueued` set).
pub(crate) fn encode(message: &Message, enqueued: Option<SystemTime>) -> Result<PubsubMessage> {
    let mut attributes = HashMap::with_capacity(3);
    if message.id.as_str().len() > MAX_ATTRIBUTE {
        return Err(QueueError::invalid_message(
            BACKEND,
            format!("a message id may hold at most {MAX_ATTRIBUTE} bytes on Pub/Sub"),
        ));
    }
    attributes.insert(A_ID.to_owned(), message.id.as_str().to_owned());
    if !message.headers.is_empty() {
        let json = serde_json::to_string(&message.headers)?;
        if json.len() > MAX_ATTRIBUTE {
            return Err(QueueError::invalid_message(
                BACKEND,
                format!(
                    "the headers take {} bytes as JSON; Pub/Sub allows {MAX_ATTRIBUTE} per attribute",
                    json.len()
                ),
            ));
        }
        attributes.insert(A_HEADERS.to_owned(), json);
    }
    if let Some(at) = enqueued {
        attributes.insert(A_ENQUEUED.to_owned(), millis(at).to_string());
    }
    Ok(PubsubMessage {
        data: message.payload.to_vec(),
        attributes,
        ..Default::default()
    })
}

fn millis(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A received Pub/Sub message read back, with what is wrong with it when
/// our own attributes cannot be read (another client wrote them): such a
/// message goes to the dead letters by itself, and the rest is read
/// leniently so it can be listed and replayed from there.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub(crate) message: Message,
    pub(crate) undecodable: Option<String>,
}

/// Reads a received message. A message without `ft-id` (another producer's)
/// gets `pubsub-<server message id>`, which every delivery of it shares.
pub(crate) fn decode(m: &PubsubMessage) -> Decoded {
    let a = &m.attributes;
    let id = match a.get(A_ID) {
        Some(id) if !id.is_empty() => MessageId::new(id.as_str()),
        _ => foreign_id(BACKEND, &m.message_id),
    };
    let mut undecodable = None;
    let headers: Headers = match a.get(A_HEADERS) {
        None => Headers::new(),
        Some(json) => match serde_json::from_str(json) {
            Ok(h) => h,
            Err(e) => {
                undecodable = Some(format!(
                    "attribute {A_HEADERS} is not a JSON object of strings: {e}"
                ));
                Headers::new()
            }
        },
    };
    let enqueued = a
        .get(A_ENQUEUED)
        .and_then(|v| v.parse::<i64>().ok())
        .map(system_time_from_millis)
        .or_else(|| m.publish_time.as_ref().map(timestamp));
    let mut message = Message::from_parts(id, Bytes::from(m.data.clone())).with_headers(headers);
    message.enqueued_at = enqueued;
    Decoded {
        message,
        undecodable,
    }
}

/// A protobuf timestamp as a `SystemTime`.
pub(crate) fn timestamp(t: &prost_types::Timestamp) -> SystemTime {
    let secs = Duration::from_secs(t.seconds.max(0) as u64);
    SystemTime::UNIX_EPOCH + secs + Duration::from_nanos(t.nanos.max(0) as u64)
}

/// The dead letter of a received message: its data and attributes as they
/// were (so a replay puts back what was stored), with our id made explicit
/// and the reason, attempts and time added. The reason is cut to what one
/// attribute holds.
pub(crate) fn dead_letter(
    original: &PubsubMessage,
    id: &MessageId,
    reason: &str,
    attempts: u32,
) -> PubsubMessage {
    let mut attributes = original.attributes.clone();
    attributes.insert(A_ID.to_owned(), id.as_str().to_owned());
    if !attributes.contains_key(A_ENQUEUED)
        && let Some(t) = &original.publish_time
    {
        attributes.insert(A_ENQUEUED.to_owned(), millis(timestamp(t)).to_string());
    }
    attributes.insert(A_REASON.to_owned(), cut(reason, MAX_ATTRIBUTE).to_owned());
    attributes.insert(A_ATTEMPTS.to_owned(), attempts.to_string());
    attributes.insert(A_DEAD_AT.to_owned(), now_millis().to_string());
    PubsubMessage {
        data: original.data.clone(),
        attributes,
        ..Default::default()
    }
}

/// A dead letter put back on the queue: the stored message without the
/// dead-letter bookkeeping (ours and Pub/Sub's forwarding's).
pub(crate) fn replayed(dead: &PubsubMessage, id: &MessageId) -> PubsubMessage {
    let mut attributes: HashMap<String, String> = dead
        .attributes
        .iter()
        .filter(|(k, _)| {
            !matches!(k.as_str(), A_REASON | A_ATTEMPTS | A_DEAD_AT)
                && !k.starts_with(PUBSUB_DL_PREFIX)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    attributes.insert(A_ID.to_owned(), id.as_str().to_owned());
    if !attributes.contains_key(A_ENQUEUED)
        && let Some(t) = &dead.publish_time
    {
        attributes.insert(A_ENQUEUED.to_owned(), millis(timestamp(t)).to_string());
    }
    PubsubMessage {
        data: dead.data.clone(),
        attributes,
        ..Default::default()
    }
}

/// The longest prefix of `s` of at most `max` bytes, cut at a character.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Message::new(&b"\x00\xff"[..]).with_header("k", "v\nw");
        let mut p = encode(&m, None).unwrap();
        p.message_id = "42".into();
        let d = decode(&p);
        assert!(d.undecodable.is_none());
        assert_eq!(d.message.id, m.id);
        assert_eq!(d.message.payload, m.payload);
        assert_eq!(d.message.headers, m.headers);
    }

    #[test]
    fn foreign_and_undecodable() {
        let p = PubsubMessage {
            data: b"raw".to_vec(),
            message_id: "77".into(),
            ..Default::default()
        };
        let d = decode(&p);
        assert_eq!(d.message.id.as_str(), "pubsub-77");
        let mut p = p;
        p.attributes.insert(A_HEADERS.into(), "not json".into());
        assert!(decode(&p).undecodable.is_some());
    }

    #[test]
    fn large_headers_are_refused() {
        let m = Message::new("x").with_header("k", "v".repeat(2000));
        assert!(matches!(
            encode(&m, None),
            Err(QueueError::InvalidMessage { .. })
        ));
    }

    #[test]
    fn dead_letter_and_replay() {
        let m = Message::new("x").with_header("k", "v");
        let p = encode(&m, None).unwrap();
        let dl = dead_letter(&p, &m.id, &"é".repeat(600), 3);
        assert!(dl.attributes[A_REASON].len() <= MAX_ATTRIBUTE);
        assert_eq!(dl.attributes[A_ATTEMPTS], "3");
        let mut dl = dl;
        dl.attributes.insert(A_PUBSUB_COUNT.into(), "5".into());
        let back = replayed(&dl, &m.id);
        assert!(!back.attributes.contains_key(A_REASON));
        assert!(!back.attributes.contains_key(A_PUBSUB_COUNT));
        assert_eq!(back.attributes[A_HEADERS], p.attributes[A_HEADERS]);
    }
}
