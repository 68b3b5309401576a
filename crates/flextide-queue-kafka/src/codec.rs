//! The record on the wire: the payload as the record's value, the message's
//! headers as record headers under their own names, and the library's
//! bookkeeping in headers starting with `flextide-`.
//!
//! A record without `flextide-id` came from another producer: it is
//! delivered with its value as the payload and a stable id made from its
//! partition and offset. A record whose bookkeeping headers are garbled
//! cannot be decoded and goes to the dead letters by itself.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use flextide_queue_core::{
    Headers, Message, MessageId, QueueError, Result,
    backend::{foreign_id, now_millis, system_time_from_millis},
};

use crate::BACKEND;

/// Prefix of the headers the library writes; refused in a message's own headers.
pub(crate) const PREFIX: &str = "flextide-";
/// The message id.
pub(crate) const ID: &str = "flextide-id";
/// Attempts already spent before this record (nacked copies carry them).
pub(crate) const SPENT: &str = "flextide-attempts";
/// Not delivered before this time (Unix milliseconds).
pub(crate) const NOT_BEFORE: &str = "flextide-not-before";
/// When the message was first pushed (Unix milliseconds).
pub(crate) const ENQUEUED: &str = "flextide-enqueued";
/// The message's ordering key (also the record key, which picks the
/// partition, so one key's records share a partition and its order).
pub(crate) const ORDERING_KEY: &str = "flextide-ordering-key";
/// On a dead letter: why it was moved.
pub(crate) const REASON: &str = "flextide-reason";
/// On a dead letter: when it was moved (Unix milliseconds).
pub(crate) const DEAD_AT: &str = "flextide-dead-at";
/// On the dead-letter topic: this record removes the dead letter with the
/// id in its key (replayed or purged).
pub(crate) const REMOVED: &str = "flextide-removed";
/// On the dead-letter topic: every dead letter before this offset is removed.
pub(crate) const PURGED_BEFORE: &str = "flextide-purged-before";

/// A record as produced: key, value and headers.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Bytes,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
}

/// A record as consumed, before decoding.
#[derive(Debug, Clone)]
pub(crate) struct Raw {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Bytes,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    /// The record's timestamp (Unix milliseconds), when it has one.
    pub(crate) timestamp: Option<i64>,
}

impl Raw {
    /// A consumed record, owned.
    pub(crate) fn of(m: &impl rdkafka::Message) -> Raw {
        use rdkafka::message::Headers as _;
        Raw {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
            timestamp: m.timestamp().to_millis(),
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The record as it was, to produce again (a dead letter of what could
    /// not be decoded; a replay of it).
    pub(crate) fn to_record(&self) -> Record {
        Record {
            key: self.key.clone(),
            value: self.value.clone(),
            headers: self.headers.clone(),
        }
    }
}

/// A decoded queue record.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub(crate) message: Message,
    /// Attempts spent before this record.
    pub(crate) spent: u32,
    /// Not delivered before this time (Unix milliseconds).
    pub(crate) not_before: Option<i64>,
}

/// Checks what Kafka cannot carry or the library reserves, before anything
/// is sent.
pub(crate) fn check(message: &Message) -> Result<()> {
    if let Some(name) = message.headers.keys().find(|k| k.starts_with(PREFIX)) {
        return Err(QueueError::invalid_message(
            BACKEND,
            format!("header {name:?}: names starting with {PREFIX:?} are the library's own"),
        ));
    }
    Ok(())
}

/// The record of `message`, with `spent` attempts already made, not to be
/// delivered before `not_before` (Unix milliseconds).
pub(crate) fn encode(message: &Message, spent: u32, not_before: Option<i64>) -> Record {
    let mut headers: Vec<(String, Vec<u8>)> = message
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    headers.push((ID.to_owned(), message.id.as_str().as_bytes().to_vec()));
    let enqueued = message.enqueued_at.map(millis).unwrap_or_else(now_millis);
    headers.push((ENQUEUED.to_owned(), enqueued.to_string().into_bytes()));
    if spent > 0 {
        headers.push((SPENT.to_owned(), spent.to_string().into_bytes()));
    }
    if let Some(at) = not_before {
        headers.push((NOT_BEFORE.to_owned(), at.to_string().into_bytes()));
    }
    if let Some(k) = &message.ordering_key {
        headers.push((ORDERING_KEY.to_owned(), k.as_bytes().to_vec()));
    }
    // The record key picks the partition: a key's records share one (and
    // its order); without a key the id spreads records over partitions.
    let key = message
        .ordering_key
        .as_deref()
        .unwrap_or(message.id.as_str());
    Record {
        key: Some(key.as_bytes().to_vec()),
        value: message.payload.clone(),
        headers,
    }
}

/// The not-before time of a push with `delay`, in Unix ms rounded up: a
/// record is due once the clock's whole milliseconds reach it, so rounding
/// down would let it out up to a millisecond early.
pub(crate) fn due_after(delay: Option<Duration>) -> Option<i64> {
    delay
        .filter(|d| !d.is_zero())
        .map(|d| ceil_millis(SystemTime::now() + d))
}

/// Unix ms of `t`, rounded up.
fn ceil_millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn text<'a>(raw: &'a Raw, name: &str) -> std::result::Result<Option<&'a str>, String> {
    raw.header(name)
        .map(|v| std::str::from_utf8(v).map_err(|_| format!("header {name} is not UTF-8")))
        .transpose()
}

fn number<T: std::str::FromStr>(raw: &Raw, name: &str) -> std::result::Result<Option<T>, String> {
    text(raw, name)?
        .map(|t| {
            t.parse()
                .map_err(|_| format!("header {name} is not a number: {t:?}"))
        })
        .transpose()
}

/// Decodes a consumed record, or says what is wrong with it.
pub(crate) fn decode(raw: &Raw) -> std::result::Result<Decoded, String> {
    let id = match text(raw, ID)? {
        Some(id) if !id.is_empty() => MessageId::new(id),
        Some(_) => return Err(format!("header {ID} is empty")),
        None => foreign_id(BACKEND, format_args!("{}-{}", raw.partition, raw.offset)),
    };
    let spent = number::<u32>(raw, SPENT)?.unwrap_or(0);
    let not_before = number::<i64>(raw, NOT_BEFORE)?;
    let enqueued = number::<i64>(raw, ENQUEUED)?.or(raw.timestamp);
    let ordering_key = text(raw, ORDERING_KEY)?.map(str::to_owned);
    let mut headers = Headers::new();
    for (k, v) in &raw.headers {
        if k.starts_with(PREFIX) {
            continue;
        }
        let v = std::str::from_utf8(v)
            .map_err(|_| format!("header {k:?} is not UTF-8"))?
            .to_owned();
        headers.insert(k.clone(), v);
    }
    let mut message = Message::from_parts(id, raw.value.clone()).with_headers(headers);
    if let Some(at) = enqueued {
        message = message.with_enqueued_at(system_time_from_millis(at));
    }
    message.ordering_key = ordering_key;
    Ok(Decoded {
        message,
        spent,
        not_before,
    })
}

/// The dead-letter record of `message` after `attempts`, for `reason`.
pub(crate) fn dead_letter(message: &Message, attempts: u32, reason: &str) -> Record {
    let mut r = encode(message, attempts, None);
    mark_dead(&mut r, reason);
    r
}

/// Marks a record as a dead letter: its reason and when.
pub(crate) fn mark_dead(record: &mut Record, reason: &str) {
    record.headers.retain(|(k, _)| k != REASON && k != DEAD_AT);
    record
        .headers
        .push((REASON.to_owned(), reason.as_bytes().to_vec()));
    record
        .headers
        .push((DEAD_AT.to_owned(), now_millis().to_string().into_bytes()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(record: Record) -> Raw {
        Raw {
            partition: 2,
            offset: 9,
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp: Some(1),
        }
    }

    #[test]
    fn due_times_are_never_early() {
        for _ in 0..100 {
            let asked = SystemTime::now();
            let due = due_after(Some(Duration::from_millis(4000))).unwrap();
            assert!(system_time_from_millis(due) >= asked + Duration::from_millis(4000));
        }
        assert_eq!(due_after(Some(Duration::ZERO)), None);
    }

    #[test]
    fn round_trip() {
        let m = Message::new(&b"\x00\xff"[..]).with_header("x-a", "b");
        let r = encode(&m, 3, Some(77));
        assert_eq!(r.key.as_deref(), Some(m.id.as_str().as_bytes()));
        let d = decode(&raw(r)).unwrap();
        assert_eq!(d.message.id, m.id);
        assert_eq!(d.message.ordering_key, None);
        assert_eq!(d.message.payload, m.payload);
        assert_eq!(d.message.headers, m.headers);
        assert_eq!((d.spent, d.not_before), (3, Some(77)));
        let keyed = Message::new("k").with_ordering_key("customer-9");
        let r = encode(&keyed, 0, None);
        assert_eq!(
            r.key.as_deref(),
            Some(&b"customer-9"[..]),
            "the key picks the partition"
        );
        let d = decode(&raw(r)).unwrap();
        assert_eq!(d.message.ordering_key.as_deref(), Some("customer-9"));
    }

    #[test]
    fn foreign_and_undecodable() {
        let plain = Raw {
            partition: 1,
            offset: 5,
            key: None,
            value: Bytes::from_static(b"hi"),
            headers: vec![],
            timestamp: None,
        };
        assert_eq!(decode(&plain).unwrap().message.id.as_str(), "kafka-1-5");
        let mut bad = plain.clone();
        bad.headers.push((SPENT.to_owned(), b"many".to_vec()));
        assert!(decode(&bad).unwrap_err().contains(SPENT));
        let mut bad = plain;
        bad.headers.push(("x".to_owned(), vec![0xff]));
        assert!(decode(&bad).is_err());
        assert!(check(&Message::new("x").with_header("flextide-id", "1")).is_err());
    }
}
