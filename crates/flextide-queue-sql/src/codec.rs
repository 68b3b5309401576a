//! Small conversions every SQL backend makes the same way.

use std::time::Duration;

use flextide_queue_core::{Message, QueueError, Receipt, Result, backend};

/// Longest delay (or lease extension) accepted: about 100 years, far from
/// overflowing a millisecond clock in a BIGINT.
pub const MAX_DELAY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Milliseconds of a duration, saturating.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The milliseconds of a delay, refused past [`MAX_DELAY`].
pub fn check_delay(backend: &'static str, delay: Duration) -> Result<i64> {
    if delay > MAX_DELAY {
        return Err(QueueError::invalid_message(
            backend,
            format!("delay {delay:?} is longer than the maximum of 100 years"),
        ));
    }
    Ok(millis(delay))
}

/// Headers as stored: JSON text, empty for none.
pub fn headers_text(message: &Message) -> String {
    if message.headers.is_empty() {
        String::new()
    } else {
        backend::encode_headers(&message.headers)
    }
}

/// The error of a receipt whose message was settled or delivered again.
pub fn stale(backend: &'static str) -> QueueError {
    QueueError::StaleReceipt { backend }
}

/// Splits a receipt into row key and fencing token. Tokens are made by
/// `new_token` (32 hex digits); anything else cannot be ours and never
/// reaches SQL.
pub fn decode_receipt<'r>(backend: &'static str, receipt: &'r Receipt) -> Result<(i64, &'r str)> {
    let (seq, token) = backend::decode_receipt(backend, receipt)?;
    if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(QueueError::invalid_receipt(
            backend,
            "the token is not one this backend issues",
        ));
    }
    Ok((seq, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_and_delays() {
        let token = backend::new_token();
        let r = backend::encode_receipt(4, &token);
        assert_eq!(decode_receipt("t", &r).unwrap(), (4, token.as_str()));
        assert!(decode_receipt("t", &Receipt::new("4:nothex")).is_err());
        assert!(check_delay("t", MAX_DELAY + Duration::from_secs(1)).is_err());
        assert_eq!(check_delay("t", Duration::from_secs(2)).unwrap(), 2000);
        assert_eq!(headers_text(&Message::new("x")), "");
    }
}
