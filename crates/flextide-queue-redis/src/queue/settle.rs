//! Settling deliveries: the fenced batch delete (`delete.lua`) and the
//! fenced single actions nack, release, extend and dead-letter (`settle.lua`).

use std::time::Duration;

use flextide_queue_core::{BatchFailure, QueueError, Receipt, Result, backend::batch_result};

use super::{MAX_BATCH, RedisQueue, copy_error};
use crate::{
    BACKEND,
    codec::{array, bad_reply, decode_receipt, entry_key, int, millis},
    scripts,
};

/// A fenced action on one delivery.
#[derive(Debug, Clone, Copy)]
pub(super) enum Action<'a> {
    Nack(Duration),
    Release,
    Extend(Duration),
    Dead(&'a str),
}

impl RedisQueue {
    pub(super) async fn delete_many(&self, receipts: &[Receipt]) -> Result<()> {
        let mut failures = Vec::new();
        let mut valid = Vec::with_capacity(receipts.len());
        for (index, r) in receipts.iter().enumerate() {
            match decode_receipt(r) {
                Ok((id, _, _)) => valid.push((index, (id, &r.as_str()[id.len() + 1..]))),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        for chunk in valid.chunks(MAX_BATCH) {
            // Grouped by token (count and consumer), which a popped batch
            // mostly shares, so the script reads each token once; the
            // span's ends let it check the whole batch with one XPENDING.
            let mut groups: Vec<(&str, Vec<(usize, &str)>)> = Vec::new();
            let (mut lo, mut hi) = ((u64::MAX, u64::MAX), (0, 0));
            let (mut lo_id, mut hi_id) = ("", "");
            for (index, (id, token)) in chunk {
                let key = entry_key(id);
                if key <= lo {
                    (lo, lo_id) = (key, id);
                }
                if key >= hi {
                    (hi, hi_id) = (key, id);
                }
                match groups.iter_mut().find(|(t, _)| t == token) {
                    Some((_, ids)) => ids.push((*index, id)),
                    None => groups.push((token, vec![(*index, id)])),
                }
            }
            let mut inv = self.invocation(&scripts::DELETE);
            inv.arg(lo_id).arg(hi_id);
            let mut order = Vec::with_capacity(chunk.len());
            for (token, ids) in &groups {
                inv.arg(*token).arg(ids.len());
                for (index, id) in ids {
                    inv.arg(*id);
                    order.push(*index);
                }
            }
            match self.run("delete", &inv).await {
                Ok(v) => {
                    for pos in array(v)? {
                        let index = usize::try_from(int(&pos)?)
                            .ok()
                            .and_then(|p| order.get(p.checked_sub(1)?))
                            .ok_or_else(|| bad_reply("delete"))?;
                        failures.push(BatchFailure {
                            index: *index,
                            error: QueueError::StaleReceipt { backend: BACKEND },
                        });
                    }
                }
                Err(e) => {
                    if receipts.len() == chunk.len() {
                        return Err(e);
                    }
                    for (index, _) in chunk {
                        failures.push(BatchFailure {
                            index: *index,
                            error: copy_error(&e),
                        });
                    }
                }
            }
        }
        batch_result(BACKEND, (), failures)
    }

    /// One fenced single-delivery action of `settle.lua`.
    pub(super) async fn settle(&self, action: Action<'_>, receipt: &Receipt) -> Result<()> {
        let (id, count, consumer) = decode_receipt(receipt)?;
        let (operation, name, arg) = match action {
            Action::Nack(delay) => ("nack", "nack", millis(delay).to_string()),
            Action::Release => ("release", "release", String::new()),
            Action::Extend(by) => ("extend", "extend", millis(by).to_string()),
            Action::Dead(reason) => ("dead_letter", "dead", reason.to_owned()),
        };
        let mut inv = self.invocation_with_limit(&scripts::SETTLE);
        inv.arg(name).arg(id).arg(count).arg(consumer).arg(arg);
        // 0: stale; 1: done; 2: a nack that dead-lettered (out of attempts).
        match int(&self.run(operation, &inv).await?)? {
            0 => Err(QueueError::StaleReceipt { backend: BACKEND }),
            _ => Ok(()),
        }
    }
}
