//! Rows to messages: the columns every SQL backend stores a message in,
//! read by name, and what makes a row another producer wrote undecodable.

use std::time::Duration;

use flextide_queue_core::{
    DeadLetter, Delivery, Message, MessageId,
    backend::{Decoded, decode_headers, encode_receipt, foreign_id, system_time_from_millis},
};
use sqlx::{ColumnIndex, Decode, Row, Type};
use tokio::time::Instant;

/// Why a row is no message: its headers are not the JSON this crate writes.
pub const BAD_HEADERS: &str = "headers are not a JSON object of strings";

/// The message columns of a row: `seq` (where read), `id`, `payload`,
/// `headers`, `priority`, `ordering_key`, `enqueued_at`, `dedup_id`.
#[derive(Debug, Clone)]
pub struct Columns {
    /// The row key (0 for a dead-letter row).
    pub seq: i64,
    /// The id; empty or NULL for a row another producer inserted.
    pub id: Option<String>,
    /// The body.
    pub payload: Vec<u8>,
    /// JSON object text, empty for none.
    pub headers: String,
    /// Higher first.
    pub priority: i64,
    /// The ordering key.
    pub ordering_key: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub enqueued_at: i64,
    /// The dedup id the message was pushed with.
    pub dedup_id: Option<String>,
}

impl Columns {
    /// Reads the columns by name. `P` is the engine's priority type (the
    /// column's SQL type decides it), `with_seq` whether the row has `seq`.
    pub fn read<R, P>(row: &R, with_seq: bool) -> Result<Self, sqlx::Error>
    where
        R: Row,
        for<'a> &'a str: ColumnIndex<R>,
        P: Into<i64> + Type<R::Database> + for<'r> Decode<'r, R::Database>,
        i64: Type<R::Database> + for<'r> Decode<'r, R::Database>,
        String: Type<R::Database> + for<'r> Decode<'r, R::Database>,
        Vec<u8>: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    {
        Ok(Columns {
            seq: if with_seq { row.try_get("seq")? } else { 0 },
            id: row.try_get("id")?,
            payload: row.try_get("payload")?,
            headers: row.try_get("headers")?,
            priority: row.try_get::<P, _>("priority")?.into(),
            ordering_key: row.try_get("ordering_key")?,
            enqueued_at: row.try_get("enqueued_at")?,
            dedup_id: row.try_get("dedup_id")?,
        })
    }

    /// The message, or why the row is none ([`BAD_HEADERS`]). A row with no
    /// id gets the stable foreign id `<backend>-<seq>`.
    pub fn message(self, backend: &'static str) -> Result<Message, &'static str> {
        let Ok(headers) = decode_headers(backend, &self.headers) else {
            return Err(BAD_HEADERS);
        };
        Ok(self.message_with(backend, headers))
    }

    /// The message with whatever headers decode (none when they do not):
    /// how the dead letters list a row that was undecodable.
    pub fn listed(self, backend: &'static str) -> Message {
        let headers = decode_headers(backend, &self.headers).unwrap_or_default();
        self.message_with(backend, headers)
    }

    fn message_with(self, backend: &'static str, headers: flextide_queue_core::Headers) -> Message {
        let id = match self.id.filter(|id| !id.is_empty()) {
            Some(id) => MessageId::from(id),
            None => foreign_id(backend, self.seq),
        };
        let mut message = Message::from_parts(id, self.payload)
            .with_headers(headers)
            .with_priority(u8::try_from(self.priority.clamp(0, 255)).unwrap_or(u8::MAX));
        message.ordering_key = self.ordering_key;
        message.dedup_id = self.dedup_id;
        message.enqueued_at = Some(system_time_from_millis(self.enqueued_at));
        message
    }
}

/// What a claim writes into the empty id of a row another producer
/// inserted, followed by its seq: the [`foreign_id`] of the row, so the id
/// stays the same on every delivery and in the dead letters.
pub fn foreign_id_prefix(backend: &str) -> String {
    foreign_id(backend, "").as_str().to_owned()
}

/// Sorts claimed rows (their columns and the attempt this delivery is) into
/// deliveries under `token` and the seqs of undecodable rows with their
/// reasons (contract clause 12).
pub fn sort_claimed(
    backend: &'static str,
    rows: impl IntoIterator<Item = (Columns, u32)>,
    token: &str,
    lease_deadline: Instant,
) -> Decoded<(i64, Delivery), i64> {
    Decoded::sort(rows.into_iter().map(|(columns, attempt)| {
        let seq = columns.seq;
        match columns.message(backend) {
            Ok(message) => Ok((
                seq,
                Delivery::new(
                    message,
                    encode_receipt(seq, token),
                    attempt.max(1),
                    lease_deadline,
                ),
            )),
            Err(what) => Err((seq, what)),
        }
    }))
}

/// Deliveries in delivery order (priority high to low, then push order):
/// `UPDATE … RETURNING` keeps no order.
pub fn in_delivery_order(mut claimed: Vec<(i64, Delivery)>) -> Vec<Delivery> {
    claimed.sort_by(|(a_seq, a), (b_seq, b)| {
        b.message
            .priority
            .cmp(&a.message.priority)
            .then(a_seq.cmp(b_seq))
    });
    claimed.into_iter().map(|(_, d)| d).collect()
}

/// A dead-letter row: the message columns plus `attempts` (`A`),
/// `reason` and `dead_lettered_at`.
pub fn dead_letter<R, P, A>(backend: &'static str, row: &R) -> Result<DeadLetter, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    P: Into<i64> + Type<R::Database> + for<'r> Decode<'r, R::Database>,
    A: Into<i64> + Type<R::Database> + for<'r> Decode<'r, R::Database>,
    i64: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    String: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    Vec<u8>: Type<R::Database> + for<'r> Decode<'r, R::Database>,
{
    let message = Columns::read::<R, P>(row, false)?.listed(backend);
    let attempts: i64 = row.try_get::<A, _>("attempts")?.into();
    let at: i64 = row.try_get("dead_lettered_at")?;
    Ok(DeadLetter::new(
        message,
        row.try_get::<String, _>("reason")?,
        u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
        system_time_from_millis(at),
    ))
}

/// The lease deadline of a claim started at `started`.
pub fn lease_deadline(started: Instant, lease_ms: i64) -> Instant {
    started + Duration::from_millis(u64::try_from(lease_ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(seq: i64, id: Option<&str>, headers: &str, priority: i64) -> Columns {
        Columns {
            seq,
            id: id.map(str::to_owned),
            payload: b"x".to_vec(),
            headers: headers.into(),
            priority,
            ordering_key: None,
            enqueued_at: 0,
            dedup_id: None,
        }
    }

    #[test]
    fn foreign_rows_get_stable_ids_and_bad_headers_are_undecodable() {
        let sorted = sort_claimed(
            "t",
            [
                (columns(1, Some(""), "", 0), 1),
                (columns(2, None, "{bad", 0), 1),
                (columns(3, Some("ours"), "{\"a\":\"b\"}", 9), 2),
            ],
            &flextide_queue_core::backend::new_token(),
            Instant::now(),
        );
        assert_eq!(sorted.undecodable.len(), 1);
        assert!(sorted.undecodable[0].1.starts_with("undecodable:"));
        let out = in_delivery_order(sorted.ok);
        let ids: Vec<&str> = out.iter().map(|d| d.message.id.as_str()).collect();
        assert_eq!(ids, ["ours", "t-1"]);
        assert_eq!(out[0].attempt, 2);
        assert_eq!(columns(5, None, "{bad", 300).listed("t").priority, 255);
    }
}
