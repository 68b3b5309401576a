//! How a Flextide message travels through SQS: the payload as a base64 text
//! body, the rest of the envelope as one JSON message attribute, and how
//! batches are cut to SQS's limits.

use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flextide_queue_core::Headers;
use serde::{Deserialize, Serialize};

/// Name of the message attribute that carries the envelope.
pub(crate) const ENVELOPE_ATTRIBUTE: &str = "flextide";
/// SQS data type of the envelope attribute.
pub(crate) const ENVELOPE_TYPE: &str = "String";
/// Body of a message whose payload is empty (SQS refuses empty bodies; `-`
/// is not a base64 character, so it cannot be confused with an encoding).
const EMPTY_BODY: &str = "-";

/// Bytes of every message kept for the envelope attribute, so that a
/// payload of `max_payload_bytes` still fits once encoded.
pub(crate) const ENVELOPE_RESERVE: usize = 4096;
/// Largest envelope a push may carry (id, headers, ordering key, dedup id);
/// the rest of [`ENVELOPE_RESERVE`] is left for the dead-letter fields.
pub(crate) const MAX_PUSH_ENVELOPE: usize = 2560;
/// Longest dead-letter reason kept, in bytes (longer ones are cut).
pub(crate) const MAX_REASON: usize = 1024;

/// SQS's limit on entries per batch request.
pub(crate) const MAX_BATCH_ENTRIES: usize = 10;
/// SQS's classic limit on a batch request's total size (256 KiB); queues
/// whose `MaximumMessageSize` is larger allow batches of that size.
pub(crate) const CLASSIC_BATCH_BYTES: usize = 262_144;

/// The largest payload whose base64 encoding, with the envelope reserve,
/// fits in a message of `max_message_size` bytes.
pub(crate) fn max_payload_for(max_message_size: usize) -> usize {
    max_message_size.saturating_sub(ENVELOPE_RESERVE) / 4 * 3
}

/// The fields of a message that are not its payload, as carried in the
/// envelope attribute. Short keys: they count towards the message size.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Envelope {
    /// Message id.
    pub(crate) id: String,
    /// Headers.
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub(crate) h: Headers,
    /// Ordering key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) k: Option<String>,
    /// Dedup id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) d: Option<String>,
    /// Dead-letter reason (only on messages in the dead-letter queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) r: Option<String>,
    /// Attempts made before dead-lettering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) a: Option<u32>,
    /// When it was dead-lettered, in milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) t: Option<i64>,
}

impl Envelope {
    /// The envelope as attribute text SQS accepts.
    pub(crate) fn encode(&self) -> String {
        sqs_safe(serde_json::to_string(self).unwrap_or_default())
    }

    /// Reads an envelope attribute, or says what is wrong with it.
    pub(crate) fn decode(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// The same envelope without its dead-letter fields.
    pub(crate) fn without_dead_letter(mut self) -> Self {
        self.r = None;
        self.a = None;
        self.t = None;
        self
    }
}

/// Replaces the characters SQS refuses in attribute values by JSON escapes.
/// serde_json already escapes control characters; SQS also refuses U+FFFE
/// and U+FFFF, which can only appear inside JSON strings, where `\uXXXX` is
/// a valid escape.
fn sqs_safe(json: String) -> String {
    if !json.contains(['\u{fffe}', '\u{ffff}']) {
        return json;
    }
    json.replace('\u{fffe}', "\\ufffe")
        .replace('\u{ffff}', "\\uffff")
}

/// The message body for a payload.
pub(crate) fn encode_body(payload: &[u8]) -> String {
    if payload.is_empty() {
        EMPTY_BODY.to_owned()
    } else {
        STANDARD.encode(payload)
    }
}

/// The payload of a body made by [`encode_body`], or `None` when it is not one.
pub(crate) fn decode_body(body: &str) -> Option<Vec<u8>> {
    if body == EMPTY_BODY {
        Some(Vec::new())
    } else {
        STANDARD.decode(body).ok()
    }
}

/// How many bytes SQS counts for a message: the body plus each attribute's
/// name, type and value.
pub(crate) fn message_size(body: &str, envelope: &str) -> usize {
    body.len() + ENVELOPE_ATTRIBUTE.len() + ENVELOPE_TYPE.len() + envelope.len()
}

/// Cuts a batch of messages of these sizes into consecutive chunks of at most
/// `max_entries` messages and at most `max_bytes` bytes in total. A message
/// larger than `max_bytes` on its own gets a chunk of its own (SQS will
/// refuse it, and the refusal is reported for that message alone).
pub(crate) fn chunk(sizes: &[usize], max_entries: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let max_entries = max_entries.max(1);
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let count = i - start;
        if count > 0 && (count == max_entries || bytes + size > max_bytes) {
            chunks.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        chunks.push(start..sizes.len());
    }
    chunks
}

/// Whether SQS accepts `value` as a message group or deduplication id:
/// 1 to 128 characters of ASCII letters, digits and punctuation.
pub(crate) fn valid_sqs_token(value: &str) -> bool {
    (1..=128).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic())
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_ten_entries_at_most() {
        let sizes = vec![100; 25];
        assert_eq!(
            chunk(&sizes, 10, CLASSIC_BATCH_BYTES),
            vec![0..10, 10..20, 20..25]
        );
        assert_eq!(
            chunk(&[], 10, CLASSIC_BATCH_BYTES),
            Vec::<Range<usize>>::new()
        );
        assert_eq!(chunk(&[1], 10, CLASSIC_BATCH_BYTES), vec![0..1]);
    }

    #[test]
    fn chunks_respect_the_total_size() {
        let big = 100 * 1024;
        // 100 KiB each: two fit in 256 KiB, a third does not.
        assert_eq!(
            chunk(&[big; 5], 10, CLASSIC_BATCH_BYTES),
            vec![0..2, 2..4, 4..5]
        );
        // Exactly the limit fits.
        assert_eq!(
            chunk(&[131_072, 131_072, 1], 10, CLASSIC_BATCH_BYTES),
            vec![0..2, 2..3]
        );
        // An oversized message stands alone, its neighbours are unaffected.
        assert_eq!(
            chunk(&[10, 300_000, 10, 10], 10, CLASSIC_BATCH_BYTES),
            vec![0..1, 1..2, 2..4]
        );
        // Both limits at once: small messages after a big one.
        let mut sizes = vec![200_000];
        sizes.extend([1_000; 12]);
        assert_eq!(chunk(&sizes, 10, CLASSIC_BATCH_BYTES), vec![0..10, 10..13]);
        // Every index is covered exactly once, in order.
        let sizes: Vec<usize> = (0..57).map(|i| (i * 7919) % 90_000).collect();
        let chunks = chunk(&sizes, 10, CLASSIC_BATCH_BYTES);
        let flat: Vec<usize> = chunks.iter().flat_map(|r| r.clone()).collect();
        assert_eq!(flat, (0..57).collect::<Vec<_>>());
        for r in chunks {
            assert!(r.len() <= 10);
            assert!(r.len() == 1 || sizes[r].iter().sum::<usize>() <= CLASSIC_BATCH_BYTES);
        }
    }

    #[test]
    fn bodies_round_trip() {
        for payload in [&b""[..], b"x", b"\xff\xfe\x00binary", &[7u8; 1000][..]] {
            let body = encode_body(payload);
            assert!(!body.is_empty());
            assert_eq!(decode_body(&body).unwrap(), payload);
        }
        assert!(decode_body("not base64!").is_none());
    }

    #[test]
    fn max_payload_fits_once_encoded() {
        for max_message in [8192, 262_144, 1_048_576] {
            let max = max_payload_for(max_message);
            let body = encode_body(&vec![0u8; max]);
            let envelope =
                "e".repeat(ENVELOPE_RESERVE - ENVELOPE_ATTRIBUTE.len() - ENVELOPE_TYPE.len());
            assert!(
                message_size(&body, &envelope) <= max_message,
                "{max_message}"
            );
            // One more byte would need another base64 quantum that no longer fits.
            assert!(encode_body(&vec![0u8; max + 1]).len() + ENVELOPE_RESERVE > max_message);
        }
        assert_eq!(max_payload_for(262_144), 193_536);
    }

    #[test]
    fn envelopes_are_safe_text() {
        let mut h = Headers::new();
        h.insert("x".into(), "a\u{1}b\u{ffff}c\u{fffe}\"".into());
        let env = Envelope {
            id: "i\u{0}d".into(),
            h,
            ..Envelope::default()
        };
        let text = env.encode();
        assert!(
            !text
                .chars()
                .any(|c| (c < ' ' && !"\t\r\n".contains(c)) || c == '\u{fffe}' || c == '\u{ffff}')
        );
        assert_eq!(Envelope::decode(&text).unwrap(), env);
    }

    #[test]
    fn tokens_and_truncation() {
        assert!(valid_sqs_token("group-1:a/b"));
        assert!(!valid_sqs_token(""));
        assert!(!valid_sqs_token("a b"));
        assert!(!valid_sqs_token(&"x".repeat(129)));
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
