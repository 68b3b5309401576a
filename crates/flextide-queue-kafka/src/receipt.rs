//! Receipts: `<partition>:<offset>:<token>`, the token fresh per delivery.

use flextide_queue_core::{QueueError, Receipt, Result};

use crate::BACKEND;

pub(crate) fn encode(partition: i32, offset: i64, token: &str) -> Receipt {
    Receipt::new(format!("{partition}:{offset}:{token}"))
}

pub(crate) fn decode(receipt: &Receipt) -> Result<(i32, i64, &str)> {
    let bad = |why: &str| QueueError::invalid_receipt(BACKEND, why.to_owned());
    let mut parts = receipt.as_str().splitn(3, ':');
    let partition = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| bad("expected <partition>:<offset>:<token>"))?;
    let offset = parts
        .next()
        .and_then(|o| o.parse().ok())
        .ok_or_else(|| bad("the offset is not a number"))?;
    let token = parts
        .next()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("empty token"))?;
    Ok((partition, offset, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = encode(3, 42, "abc");
        assert_eq!(decode(&r).unwrap(), (3, 42, "abc"));
        for bad in ["", "1", "1:2", "1:2:", "x:2:t", "1:y:t"] {
            assert!(decode(&Receipt::new(bad)).is_err(), "{bad}");
        }
    }
}
