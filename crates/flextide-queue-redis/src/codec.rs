//! What goes into and comes out of Redis: a message's stream fields,
//! receipts, and the shapes of script replies.
//!
//! Decoding is strict for what a pop delivers (an entry that does not decode
//! is dead-lettered as `undecodable: …`, contract clause 12) and lenient for
//! what is only listed (dead letters), so a listing never fails on an entry
//! another client wrote.

use std::time::Duration;

use flextide_queue_core::{
    DeadLetter, Message, QueueError, Receipt, Result,
    backend::{check_payload, decode_headers, encode_headers, foreign_id, system_time_from_millis},
};
use redis::Value;

use crate::BACKEND;

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A receipt is `<stream entry id>:<delivery count>.<consumer>`: the
/// delivery as the consumer group's pending entries list records it.
pub(crate) fn decode_receipt(receipt: &Receipt) -> Result<(&str, &str, &str)> {
    let (id, token) = receipt.as_str().split_once(':').ok_or_else(|| {
        QueueError::invalid_receipt(BACKEND, "expected <entry id>:<count>.<consumer>")
    })?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !id
        .split_once('-')
        .is_some_and(|(ms, seq)| digits(ms) && digits(seq))
    {
        return Err(QueueError::invalid_receipt(
            BACKEND,
            "not a stream entry id",
        ));
    }
    // The consumer is `c` or `c<epoch>`; never the nacked entries' `n`.
    let valid = token.split_once('.').filter(|(count, consumer)| {
        digits(count)
            && !count.starts_with('0')
            && consumer
                .strip_prefix('c')
                .is_some_and(|epoch| epoch.is_empty() || digits(epoch))
    });
    match valid {
        Some((count, consumer)) => Ok((id, count, consumer)),
        None => Err(QueueError::invalid_receipt(BACKEND, "malformed token")),
    }
}

/// The receipt of a delivery: see [`decode_receipt`].
pub(crate) fn receipt(entry_id: &str, count: i64, consumer: &str) -> Receipt {
    Receipt::new(format!("{entry_id}:{count}.{consumer}"))
}

pub(crate) fn bad_reply(what: &str) -> QueueError {
    QueueError::backend_error(
        BACKEND,
        false,
        format!("unexpected reply from a script: {what}"),
    )
}

pub(crate) fn int(v: &Value) -> Result<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad_reply("number")),
        Value::SimpleString(s) => s.parse().map_err(|_| bad_reply("number")),
        _ => Err(bad_reply("number")),
    }
}

pub(crate) fn text(v: &Value) -> Result<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| bad_reply("text")),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        _ => Err(bad_reply("text")),
    }
}

pub(crate) fn array(v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(Vec::new()),
        _ => Err(bad_reply("array")),
    }
}

/// The entries of an XREADGROUP reply on one stream (none: nil).
pub(crate) fn stream_entries(reply: Value) -> Result<Vec<Value>> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(m) => m.into_iter().map(|(_, v)| v).collect(),
        other => array(other)?
            .into_iter()
            .map(|s| array(s).map(|mut pair| pair.pop().unwrap_or_default()))
            .collect::<Result<Vec<_>>>()?,
    };
    let mut out = Vec::new();
    for entries in streams {
        out.extend(array(entries)?);
    }
    Ok(out)
}

/// A stream entry id as (milliseconds, sequence), for ordering; the id was
/// checked by `decode_receipt`.
pub(crate) fn entry_key(entry_id: &str) -> (u64, u64) {
    let (ms, seq) = entry_id.split_once('-').unwrap_or((entry_id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

fn entry_ms(entry_id: &str) -> i64 {
    entry_id
        .split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

/// A message's stream fields.
pub(crate) type Fields = Vec<(&'static str, Vec<u8>)>;

/// The stream fields of a message, after checking it fits this backend.
pub(crate) fn fields(message: &Message, max_payload: usize) -> Result<Fields> {
    check_payload(BACKEND, message.payload.len(), Some(max_payload))?;
    if message.priority > 0 {
        return Err(QueueError::unsupported(BACKEND, "priority"));
    }
    if message.ordering_key.is_some() {
        return Err(QueueError::unsupported(BACKEND, "ordering_key"));
    }
    let mut f = vec![
        ("i", message.id.as_str().as_bytes().to_vec()),
        ("p", message.payload.to_vec()),
    ];
    if !message.headers.is_empty() {
        f.push(("h", encode_headers(&message.headers).into_bytes()));
    }
    if let Some(dedup) = &message.dedup_id {
        f.push(("u", dedup.as_bytes().to_vec()));
    }
    Ok(f)
}

/// A stream entry's fields as stored, not yet interpreted: `i` the message
/// id, `p` the payload, `h` headers (JSON), `t` the enqueue time (ms) once
/// the message moved to another entry, `a` deliveries before this entry,
/// `u` the dedup id, and in dead letters `why` the reason and `n` the
/// attempts.
#[derive(Debug, Default)]
pub(crate) struct Stored {
    id: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Option<Vec<u8>>,
    enqueued_ms: Option<Vec<u8>>,
    base: Option<Vec<u8>>,
    dedup: Option<Vec<u8>>,
    reason: Option<Vec<u8>>,
    attempts: Option<Vec<u8>>,
}

/// The bytes of a field value; Redis sends them as bulk strings.
fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn number<T: std::str::FromStr>(raw: &[u8]) -> Option<T> {
    std::str::from_utf8(raw).ok()?.parse().ok()
}

impl Stored {
    /// Reads the field-value pairs of an entry. Fails only when the reply is
    /// not a list of fields at all; what the fields hold is checked later.
    pub(crate) fn parse(fields: Value) -> Result<Self> {
        let mut s = Stored::default();
        let mut it = array(fields)?.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let (Some(key), value) = (bytes(k), bytes(v)) else {
                continue;
            };
            let slot = match &key[..] {
                b"i" => &mut s.id,
                b"p" => &mut s.payload,
                b"h" => &mut s.headers,
                b"t" => &mut s.enqueued_ms,
                b"a" => &mut s.base,
                b"u" => &mut s.dedup,
                b"why" => &mut s.reason,
                b"n" => &mut s.attempts,
                _ => continue,
            };
            *slot = Some(value.unwrap_or_default());
        }
        Ok(s)
    }

    /// Deliveries before this stream entry (after a delayed nack), if the
    /// field is a number.
    pub(crate) fn base(&self) -> u32 {
        self.base.as_deref().and_then(number).unwrap_or(0)
    }

    /// The dedup id the message was pushed with. Only informative (the
    /// check happened at the push), so one that is not UTF-8 (another
    /// producer's field `u`) is left out rather than failing the entry.
    fn dedup_id(&self) -> Option<String> {
        self.dedup
            .as_deref()
            .and_then(|raw| std::str::from_utf8(raw).ok())
            .map(str::to_owned)
    }

    /// The message of a delivered entry, or what keeps it from being one.
    /// An entry with a payload but no id (another producer's plain `XADD …
    /// p <body>`) gets the stable id `redis-<entry id>`; `lua/common.lua`'s
    /// `portable()` writes that id into the entry when the message moves.
    pub(crate) fn message(&self, entry_id: &str) -> std::result::Result<Message, String> {
        let payload = self
            .payload
            .clone()
            .ok_or("no payload field `p` in the stream entry")?;
        let id = match &self.id {
            None => foreign_id(BACKEND, entry_id).as_str().to_owned(),
            Some(raw) => match std::str::from_utf8(raw) {
                Ok("") => return Err("an empty message id (field `i`)".to_owned()),
                Ok(id) => id.to_owned(),
                Err(_) => return Err("the message id (field `i`) is not UTF-8".to_owned()),
            },
        };
        let headers = match &self.headers {
            None => Default::default(),
            Some(raw) => std::str::from_utf8(raw)
                .ok()
                .and_then(|h| decode_headers(BACKEND, h).ok())
                .ok_or("the headers (field `h`) are not a JSON object of strings")?,
        };
        let enqueued = match &self.enqueued_ms {
            None => entry_ms(entry_id),
            Some(raw) => number(raw).ok_or("the enqueue time (field `t`) is not a number")?,
        };
        if self
            .base
            .as_deref()
            .is_some_and(|b| number::<u32>(b).is_none())
        {
            return Err("the attempt count (field `a`) is not a number".to_owned());
        }
        let mut message = Message::from_parts(id, payload)
            .with_headers(headers)
            .with_enqueued_at(system_time_from_millis(enqueued));
        message.dedup_id = self.dedup_id();
        Ok(message)
    }

    /// A dead letter, as well as its fields allow: listing never fails on an
    /// entry that does not decode (it is a dead letter for that reason, or
    /// another client wrote it), so what is missing or unreadable is left
    /// empty and the id falls back to one derived from the dead-letter entry.
    pub(crate) fn dead_letter(self, entry_id: &str) -> DeadLetter {
        let id = self
            .id
            .as_deref()
            .and_then(|raw| std::str::from_utf8(raw).ok())
            .filter(|id| !id.is_empty())
            .map_or_else(|| foreign_id(BACKEND, entry_id), Into::into);
        let headers = self
            .headers
            .as_deref()
            .and_then(|raw| std::str::from_utf8(raw).ok())
            .and_then(|h| decode_headers(BACKEND, h).ok())
            .unwrap_or_default();
        let enqueued = self
            .enqueued_ms
            .as_deref()
            .and_then(number)
            .unwrap_or_else(|| entry_ms(entry_id));
        let dedup_id = self.dedup_id();
        let mut message = Message::from_parts(id, self.payload.unwrap_or_default())
            .with_headers(headers)
            .with_enqueued_at(system_time_from_millis(enqueued));
        message.dedup_id = dedup_id;
        let reason = self
            .reason
            .map(|r| String::from_utf8_lossy(&r).into_owned())
            .unwrap_or_default();
        let attempts = self.attempts.as_deref().and_then(number).unwrap_or(0);
        DeadLetter::new(
            message,
            reason,
            attempts,
            system_time_from_millis(entry_ms(entry_id)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &[u8])]) -> Stored {
        let v = pairs
            .iter()
            .flat_map(|(k, v)| {
                [
                    Value::BulkString(k.as_bytes().to_vec()),
                    Value::BulkString(v.to_vec()),
                ]
            })
            .collect();
        Stored::parse(Value::Array(v)).unwrap()
    }

    #[test]
    fn receipts() {
        assert_eq!(
            decode_receipt(&Receipt::new("1700000000000-3:2.c")).unwrap(),
            ("1700000000000-3", "2", "c")
        );
        assert_eq!(
            decode_receipt(&Receipt::new("1-0:12.c3")).unwrap(),
            ("1-0", "12", "c3")
        );
        for bad in [
            "",
            "x",
            "1-2",
            "1-2:",
            "a-b:1.c",
            "12:1.c",
            "-1:1.c",
            "1-:1.c",
            "1-2:3.",
            "1-2:c",
            "1-2:.c",
            "1-2:1.n",
            "1-2:0.c",
            "1-2:1.cx",
            "1-2:1.c-1",
            "1-2:x.c",
            // The token of the layout before: <attempt>.<nonce>.
            "1-2:1.a3f09b21",
        ] {
            assert!(
                matches!(
                    decode_receipt(&Receipt::new(bad)),
                    Err(QueueError::InvalidReceipt { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn unsupported_fields_are_refused() {
        let m = Message::new("x").with_priority(1);
        assert!(matches!(
            fields(&m, 10),
            Err(QueueError::Unsupported { .. })
        ));
        let m = Message::new("x").with_ordering_key("k");
        assert!(matches!(
            fields(&m, 10),
            Err(QueueError::Unsupported { .. })
        ));
        let m = Message::new(vec![0u8; 11]);
        assert!(matches!(
            fields(&m, 10),
            Err(QueueError::PayloadTooLarge { .. })
        ));
    }

    #[test]
    fn dedup_ids_are_kept_in_the_entry() {
        let m = Message::new("x").with_dedup_id("order-7");
        let f = fields(&m, 10).unwrap();
        assert!(f.contains(&("u", b"order-7".to_vec())));
        let pairs: Vec<(&str, &[u8])> = f.iter().map(|(k, v)| (*k, &v[..])).collect();
        let back = entry(&pairs).message("1-0").unwrap();
        assert_eq!(back.dedup_id.as_deref(), Some("order-7"));
        let d = entry(&[("i", b"m"), ("p", b"x"), ("u", b"\xff")]).dead_letter("5-1");
        assert_eq!(d.message.dedup_id, None);
    }

    #[test]
    fn plain_bodies_get_an_id_from_their_entry() {
        let m = entry(&[("p", b"body")]).message("17-3").unwrap();
        assert_eq!(m.id.as_str(), "redis-17-3");
        assert_eq!(&m.payload[..], b"body");
        let m = entry(&[("i", b"mine"), ("p", b"")])
            .message("17-3")
            .unwrap();
        assert_eq!(m.id.as_str(), "mine");
    }

    #[test]
    fn undecodable_entries_say_why() {
        for (pairs, why) in [
            (&[("body", &b"x"[..])][..], "`p`"),
            (&[("i", b"id")], "`p`"),
            (&[("i", b""), ("p", b"x")], "`i`"),
            (&[("i", b"\xff"), ("p", b"x")], "`i`"),
            (&[("p", b"x"), ("h", b"{oops")], "`h`"),
            (&[("p", b"x"), ("h", b"[1]")], "`h`"),
            (&[("p", b"x"), ("t", b"noon")], "`t`"),
            (&[("a", b"zzz"), ("p", b"x")], "`a`"),
        ] {
            let e = entry(pairs).message("1-0").unwrap_err();
            assert!(e.contains(why), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn dead_letters_are_read_leniently() {
        let d = entry(&[("junk", b"\xff"), ("h", b"{"), ("n", b"many")]).dead_letter("5-1");
        assert_eq!(d.message.id.as_str(), "redis-5-1");
        assert!(d.message.payload.is_empty() && d.message.headers.is_empty());
        assert_eq!((d.reason.as_str(), d.attempts), ("", 0));
        let d =
            entry(&[("i", b"m"), ("p", b"x"), ("why", b"because"), ("n", b"2")]).dead_letter("5-1");
        assert_eq!(
            (d.message.id.as_str(), d.reason.as_str(), d.attempts),
            ("m", "because", 2)
        );
    }
}
