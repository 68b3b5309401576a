//! How a `Message` travels as a NATS message: the payload as the body, the
//! id in `Nats-Msg-Id` (JetStream's deduplication key), and our bookkeeping
//! in `Ft-*` headers. A plain push carries nothing else: its enqueue time is
//! the server's time of storing, which every delivery's ack subject holds.
//!
//! The user's headers travel as one JSON object in `Ft-Headers` rather than
//! as NATS headers: NATS header values cannot hold a line break and header
//! names are matched without regard to case by some clients, so a JSON
//! object is the only form that round-trips every header exactly.

use std::time::SystemTime;

use async_nats::HeaderMap;
use bytes::Bytes;
use flextide_queue_core::{
    Headers, Message, MessageId, QueueError, Result,
    backend::{foreign_id, now_millis, system_time_from_millis},
};

use crate::BACKEND;

/// JetStream's deduplication key; our message id on a push.
pub(crate) const H_MSG_ID: &str = "Nats-Msg-Id";
/// The message id, where `Nats-Msg-Id` holds something else (a replayed
/// message, a dead letter).
pub(crate) const H_ID: &str = "Ft-Id";
/// The message's dedup id (its `Nats-Msg-Id` on the push that stored it).
pub(crate) const H_DEDUP: &str = "Ft-Dedup-Id";
/// The longest dedup id: it is a header value and, in hex, a subject token.
pub(crate) const MAX_DEDUP_ID: usize = 1024;
/// When the message was first accepted, in milliseconds since the epoch.
pub(crate) const H_ENQUEUED: &str = "Ft-Enqueued";
/// The user's headers as a JSON object.
pub(crate) const H_HEADERS: &str = "Ft-Headers";
/// Dead letters: why.
pub(crate) const H_REASON: &str = "Ft-Reason";
/// Dead letters: deliveries made.
pub(crate) const H_ATTEMPTS: &str = "Ft-Attempts";
/// Dead letters: when, in milliseconds since the epoch.
pub(crate) const H_DEAD_AT: &str = "Ft-Dead-At";

/// Checks what NATS can carry: the id and the dedup id go into header
/// values, so they may not hold a line break; an empty `Nats-Msg-Id` would
/// not be checked by the server at all.
pub(crate) fn check_message(message: &Message) -> Result<()> {
    if message.id.as_str().contains(['\r', '\n']) {
        return Err(QueueError::invalid_message(
            BACKEND,
            "a message id cannot contain a line break on NATS",
        ));
    }
    if let Some(dedup) = &message.dedup_id {
        let why = if dedup.is_empty() {
            "a dedup id cannot be empty on NATS (the server ignores an empty Nats-Msg-Id)"
        } else if dedup.contains(['\r', '\n']) {
            "a dedup id cannot contain a line break on NATS"
        } else if dedup.len() > MAX_DEDUP_ID {
            "a dedup id is at most 1024 bytes on NATS"
        } else {
            return Ok(());
        };
        return Err(QueueError::invalid_message(BACKEND, why));
    }
    Ok(())
}

/// The headers of a message published to the queue: the id under
/// `dedup_key` (`Nats-Msg-Id`), the enqueue time when it is not the time of
/// this publish (`None`: the server's time of storing is), and the user's headers.
pub(crate) fn encode(message: &Message, enqueued_ms: Option<i64>, dedup_key: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(H_MSG_ID, dedup_key);
    if dedup_key != message.id.as_str() {
        h.insert(H_ID, message.id.as_str());
    }
    if let Some(dedup) = &message.dedup_id {
        h.insert(H_DEDUP, dedup.as_str());
    }
    if let Some(ms) = enqueued_ms {
        h.insert(H_ENQUEUED, ms.to_string().as_str());
    }
    if !message.headers.is_empty() {
        let json = serde_json::to_string(&message.headers).unwrap_or_else(|_| "{}".into());
        h.insert(H_HEADERS, json.as_str());
    }
    h
}

/// The enqueue time a message carries (a replayed or dead-lettered one), if any.
pub(crate) fn enqueued_ms(message: &Message) -> Option<i64> {
    message
        .enqueued_at
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
}

fn get<'h>(headers: Option<&'h HeaderMap>, key: &str) -> Option<&'h str> {
    headers?.get(key).map(|v| v.as_str())
}

/// Our headers of a stored message, found in one pass over its headers (a
/// lookup by name would allocate the name each time).
#[derive(Default)]
struct Ours<'h> {
    id: Option<&'h str>,
    msg_id: Option<&'h str>,
    dedup: Option<&'h str>,
    enqueued: Option<&'h str>,
    headers: Option<&'h str>,
}

fn ours(headers: Option<&HeaderMap>) -> Ours<'_> {
    let mut o = Ours::default();
    for (name, values) in headers.into_iter().flat_map(|h| h.iter()) {
        let slot = match AsRef::<str>::as_ref(name) {
            H_ID => &mut o.id,
            H_MSG_ID => &mut o.msg_id,
            H_DEDUP => &mut o.dedup,
            H_ENQUEUED => &mut o.enqueued,
            H_HEADERS => &mut o.headers,
            _ => continue,
        };
        *slot = values.first().map(|v| v.as_str());
    }
    o
}

/// A stored message read back, with what is wrong with it when our own
/// `Ft-*` headers cannot be read (another client wrote them): such a
/// message goes to the dead letters by itself (contract clause 12), and the
/// rest is read leniently so it can be listed and replayed from there.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub(crate) message: Message,
    pub(crate) undecodable: Option<String>,
}

/// Reads a message of the queue's stream; `seq` is its stream sequence (the
/// stable id of a message without one) and `stored` when the server stored it.
pub(crate) fn decode(
    headers: Option<&HeaderMap>,
    payload: Bytes,
    seq: u64,
    stored: SystemTime,
) -> Decoded {
    let mut problems = Vec::new();
    let o = ours(headers);
    let id =
        o.id.or(o.msg_id)
            .filter(|s| !s.is_empty())
            .map_or_else(|| foreign_id(BACKEND, seq), MessageId::new);
    // Absent on a plain push: the server's time of storing is the enqueue
    // time. Kept from the original on a replay.
    let enqueued_at = match o.enqueued {
        None => stored,
        Some(text) => match text.parse::<i64>() {
            Ok(ms) => system_time_from_millis(ms),
            Err(_) => {
                problems.push(format!("header {H_ENQUEUED} is not a number"));
                stored
            }
        },
    };
    let user_headers = match o.headers {
        None => Headers::new(),
        Some(text) => serde_json::from_str(text).unwrap_or_else(|e| {
            problems.push(format!("header {H_HEADERS} is not a JSON object: {e}"));
            Headers::new()
        }),
    };
    let mut message = Message::from_parts(id, payload);
    message.headers = user_headers;
    message.enqueued_at = Some(enqueued_at);
    message.dedup_id = o.dedup.map(str::to_owned);
    Decoded {
        message,
        undecodable: (!problems.is_empty()).then(|| problems.join("; ")),
    }
}

/// Headers of a dead letter: the message's own, plus why, how many
/// deliveries and when.
pub(crate) fn dead_letter_headers(
    message: &Message,
    reason: &str,
    attempts: u32,
    dead_key: &str,
) -> HeaderMap {
    let enqueued = enqueued_ms(message).unwrap_or_else(now_millis);
    let mut h = encode(message, Some(enqueued), dead_key);
    h.insert(H_ID, message.id.as_str());
    // A reason is free text: keep it on one line (a header cannot break).
    let one_line: String = reason
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    h.insert(H_REASON, one_line.as_str());
    h.insert(H_ATTEMPTS, attempts.to_string().as_str());
    h.insert(H_DEAD_AT, now_millis().to_string().as_str());
    h
}

/// A dead letter's reason, attempts and time, leniently.
pub(crate) fn dead_letter_fields(
    headers: Option<&HeaderMap>,
    stored: SystemTime,
) -> (String, u32, SystemTime) {
    let reason = get(headers, H_REASON).unwrap_or_default().to_owned();
    let attempts = get(headers, H_ATTEMPTS)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let at = get(headers, H_DEAD_AT)
        .and_then(|a| a.parse().ok())
        .map_or(stored, system_time_from_millis);
    (reason, attempts, at)
}

/// A server timestamp in nanoseconds as a `SystemTime`.
pub(crate) fn system_time_from_nanos(ns: i128) -> SystemTime {
    let ns = u64::try_from(ns.max(0)).unwrap_or(u64::MAX);
    SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_id_headers_and_time() {
        let msg = Message::new("x")
            .with_header("x-quotes", "a\"b\nc")
            .with_header("Ft-Headers", "mine");
        let h = encode(&msg, Some(1234), msg.id.as_str());
        assert!(h.get(H_ID).is_none());
        let d = decode(Some(&h), msg.payload.clone(), 7, SystemTime::UNIX_EPOCH);
        assert!(d.undecodable.is_none());
        assert_eq!(d.message.id, msg.id);
        assert_eq!(d.message.dedup_id, None);
        assert_eq!(d.message.headers, msg.headers);
        assert_eq!(d.message.enqueued_at, Some(system_time_from_millis(1234)));
    }

    #[test]
    fn dedup_id_is_the_key_and_travels() {
        let msg = Message::new("x").with_dedup_id("order-7");
        let h = encode(&msg, None, "order-7");
        assert_eq!(h.get(H_MSG_ID).unwrap().as_str(), "order-7");
        let d = decode(Some(&h), msg.payload.clone(), 7, SystemTime::UNIX_EPOCH);
        assert_eq!(d.message.id, msg.id);
        assert_eq!(d.message.dedup_id.as_deref(), Some("order-7"));
        for bad in ["", "a\nb", &"x".repeat(MAX_DEDUP_ID + 1)] {
            let m = Message::new("x").with_dedup_id(bad);
            assert!(check_message(&m).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn plain_and_garbled_messages() {
        let d = decode(None, Bytes::from("plain"), 42, SystemTime::UNIX_EPOCH);
        assert_eq!(d.message.id.as_str(), "nats-42");
        assert!(d.undecodable.is_none());
        let mut h = HeaderMap::new();
        h.insert(H_HEADERS, "not json");
        let d = decode(Some(&h), Bytes::from("x"), 43, SystemTime::UNIX_EPOCH);
        assert!(d.undecodable.unwrap().contains(H_HEADERS));
    }
}
