//! Receipts: a delivery's JetStream ack subject, read back.
//!
//! The server names every delivery by its ack subject
//! (`$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>`,
//! or with domain and account hash in front on newer servers). It is the
//! receipt as is: any connection can settle the delivery by publishing to
//! it, so a receipt works across handles and processes.

use flextide_queue_core::{QueueError, Receipt, Result};

use crate::BACKEND;

const PREFIX: &str = "$JS.ACK.";

/// What a receipt says about its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AckSubject<'r> {
    /// The subject to publish acks to.
    pub(crate) subject: &'r str,
    /// The delivery count (the attempt).
    pub(crate) delivered: u32,
    /// The message's sequence in its stream.
    pub(crate) stream_seq: u64,
    /// The delivery's sequence in the consumer (each delivery has its own).
    pub(crate) consumer_seq: u64,
    /// When the server stored the message, in nanoseconds since the epoch.
    pub(crate) published_ns: i128,
}

/// Reads an ack subject, checking that it belongs to `stream`.
pub(crate) fn parse<'r>(receipt: &'r Receipt, stream: &str) -> Result<AckSubject<'r>> {
    parse_subject(receipt.as_str(), stream)
}

pub(crate) fn parse_subject<'r>(subject: &'r str, stream: &str) -> Result<AckSubject<'r>> {
    let bad = |why: &str| QueueError::invalid_receipt(BACKEND, why.to_owned());
    let rest = subject
        .strip_prefix(PREFIX)
        .ok_or_else(|| bad("not a JetStream ack subject"))?;
    let mut tokens = [""; 12];
    let mut n = 0;
    for t in rest.split('.') {
        if n < tokens.len() {
            tokens[n] = t;
        }
        n += 1;
    }
    // v1: stream consumer delivered sseq cseq ts pending (7 tokens);
    // v2: domain acc_hash + the same (9 or more).
    let fields = match n {
        7 => &tokens[..7],
        n if n >= 9 => &tokens[2..9],
        _ => return Err(bad("wrong number of tokens in the ack subject")),
    };
    if fields[0] != stream {
        return Err(bad("the receipt belongs to another queue"));
    }
    let number = |s: &str| s.parse::<u64>().map_err(|_| bad("a token is not a number"));
    let delivered = u32::try_from(number(fields[2])?).unwrap_or(u32::MAX);
    let stream_seq = number(fields[3])?;
    let consumer_seq = number(fields[4])?;
    let published_ns = fields[5]
        .parse::<i128>()
        .map_err(|_| bad("the timestamp is not a number"))?;
    if delivered == 0 || stream_seq == 0 {
        return Err(bad("delivery count and sequence start at 1"));
    }
    Ok(AckSubject {
        subject,
        delivered,
        stream_seq,
        consumer_seq,
        published_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_formats_and_refuses_the_rest() {
        let v1 = Receipt::new("$JS.ACK.FTQ_a.flextide.3.17.9.1796029742667959845.0");
        let a = parse(&v1, "FTQ_a").unwrap();
        assert_eq!((a.delivered, a.stream_seq, a.consumer_seq), (3, 17, 9));
        assert_eq!(a.published_ns, 1796029742667959845);
        let v2 = Receipt::new("$JS.ACK._.HASH.FTQ_a.flextide.2.5.4.1796029742667959845.0.tok");
        let a = parse(&v2, "FTQ_a").unwrap();
        assert_eq!((a.delivered, a.stream_seq), (2, 5));
        for bad in [
            "",
            "$JS.ACK.FTQ_a.flextide.x.17.9.1.0",
            "$JS.ACK.FTQ_b.flextide.1.17.9.1.0",
            "$JS.ACK.FTQ_a.flextide.1.17",
            "hello",
        ] {
            assert!(
                matches!(
                    parse(&Receipt::new(bad), "FTQ_a"),
                    Err(QueueError::InvalidReceipt { .. })
                ),
                "{bad}"
            );
        }
    }
}
