//! Receipts: the delivery's ack id, with the attempt it was.

use flextide_queue_core::{QueueError, Receipt, Result};

use crate::BACKEND;

/// A receipt decoded: `<attempt>:<ack id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) attempt: u32,
    pub(crate) ack_id: String,
}

pub(crate) fn encode(attempt: u32, ack_id: &str) -> Receipt {
    Receipt::new(format!("{attempt}:{ack_id}"))
}

pub(crate) fn decode(receipt: &Receipt) -> Result<Parsed> {
    let bad = || QueueError::invalid_receipt(BACKEND, "not a Pub/Sub receipt (<attempt>:<ack id>)");
    let (attempt, ack_id) = receipt.as_str().split_once(':').ok_or_else(bad)?;
    let attempt = attempt.parse().map_err(|_| bad())?;
    if ack_id.is_empty() {
        return Err(bad());
    }
    Ok(Parsed {
        attempt,
        ack_id: ack_id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = encode(3, "projects/p/subscriptions/s:12");
        assert_eq!(
            decode(&r).unwrap(),
            Parsed {
                attempt: 3,
                ack_id: "projects/p/subscriptions/s:12".into()
            }
        );
        assert!(decode(&Receipt::new("x")).is_err());
        assert!(decode(&Receipt::new("1:")).is_err());
    }
}
