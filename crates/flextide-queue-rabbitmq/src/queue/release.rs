//! `release`: a delivery given back without counting its attempt. The
//! broker's own delivery count cannot be lowered, but this library keeps
//! the count in the message (attempts done before the current copy), so a
//! release is a nack that republishes the copy with one attempt fewer: its
//! next delivery carries this delivery's attempt number.

use std::{sync::Arc, time::Duration};

use flextide_queue_core::{Receipt, Result};

use super::{Inner, receipt::parse_receipt};

impl Inner {
    pub(super) async fn release(self: &Arc<Self>, receipt: &Receipt) -> Result<()> {
        let r = parse_receipt(receipt)?;
        let owner = self.owner(&r)?;
        let (lease, link) = owner.claim(&r)?;
        let result = if lease.purged {
            owner.ack(&link, lease.tag).await
        } else {
            let done = lease.attempt.saturating_sub(1);
            owner.republish(&link, &lease, Duration::ZERO, done).await
        };
        if let Err(e) = result {
            owner.restore(r.token, lease);
            return Err(e);
        }
        Ok(())
    }
}
