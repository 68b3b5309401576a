//! Receipts: `<handle uid hex>.<link generation>.<delivery tag>.<token>`.
//! The handle names where the delivery lives, the generation and tag which
//! channel delivery it is, the token which lease of it (the fence).

use flextide_queue_core::{QueueError, Receipt, Result};

use crate::BACKEND;

pub(super) fn receipt(uid: u64, generation: u64, tag: u64, token: u64) -> Receipt {
    Receipt::new(format!("{uid:x}.{generation}.{tag}.{token}"))
}

pub(super) struct ParsedReceipt {
    pub(super) uid: u64,
    pub(super) generation: u64,
    pub(super) tag: u64,
    pub(super) token: u64,
}

pub(super) fn parse_receipt(receipt: &Receipt) -> Result<ParsedReceipt> {
    let bad = |why: &str| QueueError::invalid_receipt(BACKEND, why.to_owned());
    let mut parts = receipt.as_str().split('.');
    let mut next = |what: &str, hex: bool| -> Result<u64> {
        let part = parts
            .next()
            .ok_or_else(|| bad(&format!("missing {what}")))?;
        let parsed = if hex {
            u64::from_str_radix(part, 16)
        } else {
            part.parse()
        };
        parsed.map_err(|_| bad(&format!("{what} is not a number")))
    };
    let parsed = ParsedReceipt {
        uid: next("handle", true)?,
        generation: next("generation", false)?,
        tag: next("delivery tag", false)?,
        token: next("token", false)?,
    };
    if parts.next().is_some() {
        return Err(bad("too many parts"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_parse_back() {
        let r = receipt(0xdead_beef, 3, 17, 42);
        let p = parse_receipt(&r).unwrap();
        assert_eq!(
            (p.uid, p.generation, p.tag, p.token),
            (0xdead_beef, 3, 17, 42)
        );
        for bad in ["", "x.1.2.3", "ab.1.2", "ab.1.2.3.4", "ab.-1.2.3"] {
            assert!(
                matches!(
                    parse_receipt(&Receipt::new(bad)),
                    Err(QueueError::InvalidReceipt { .. })
                ),
                "{bad}"
            );
        }
    }
}
