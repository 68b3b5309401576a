//! The bookkeeping of a batch delete: which receipts were asked for, which
//! settled, and the per-index failures of a `PartialBatch`.

use std::collections::HashSet;

use flextide_queue_core::{BatchFailure, QueueError, Receipt, Result, backend::batch_result};

use crate::codec::{decode_receipt, stale};

/// One receipt of the batch to delete: its index in the batch, row key and token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Index of the receipt in the caller's batch.
    pub index: usize,
    /// The row key.
    pub seq: i64,
    /// The fencing token.
    pub token: String,
}

/// A batch delete in progress: decode the receipts with [`DeleteBatch::new`],
/// delete [`DeleteBatch::wanted`] (in chunks if need be), report each
/// chunk's outcome with [`DeleteBatch::settled`] or [`DeleteBatch::failed`],
/// and end with [`DeleteBatch::finish`].
#[derive(Debug)]
pub struct DeleteBatch {
    backend: &'static str,
    wanted: Vec<Wanted>,
    failures: Vec<BatchFailure>,
}

impl DeleteBatch {
    /// Decodes `receipts`. A malformed one fails with its own error; the
    /// same receipt twice settles once, the repeat is stale.
    pub fn new(backend: &'static str, receipts: &[Receipt]) -> Self {
        let mut failures = Vec::new();
        let mut wanted = Vec::with_capacity(receipts.len());
        let mut seen = HashSet::new();
        for (index, receipt) in receipts.iter().enumerate() {
            match decode_receipt(backend, receipt) {
                Ok((seq, token)) if !seen.insert((seq, token)) => failures.push(BatchFailure {
                    index,
                    error: stale(backend),
                }),
                Ok((seq, token)) => wanted.push(Wanted {
                    index,
                    seq,
                    token: token.to_owned(),
                }),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        DeleteBatch {
            backend,
            wanted,
            failures,
        }
    }

    /// The receipts to delete, distinct, in batch order.
    pub fn wanted(&self) -> &[Wanted] {
        &self.wanted
    }

    /// Row keys and tokens as two columns (for `UNNEST` and the like).
    pub fn columns(chunk: &[Wanted]) -> (Vec<i64>, Vec<&str>) {
        chunk.iter().map(|w| (w.seq, w.token.as_str())).unzip()
    }

    /// Records the rows a chunk deleted, as (row key, token) pairs: every
    /// receipt of the chunk whose pair is not among them is stale.
    pub fn settled(&mut self, chunk: &[Wanted], deleted: &[(i64, String)]) {
        let deleted: HashSet<(i64, &str)> = deleted.iter().map(|(s, t)| (*s, t.as_str())).collect();
        for w in chunk {
            if !deleted.contains(&(w.seq, w.token.as_str())) {
                self.failures.push(BatchFailure {
                    index: w.index,
                    error: stale(self.backend),
                });
            }
        }
    }

    /// Records that a whole chunk failed: the first receipt carries `error`,
    /// the others a copy of it.
    pub fn failed(&mut self, chunk: &[Wanted], error: QueueError) {
        let mut first = Some(error);
        let copy = first.as_ref().map(|e| copy_error(self.backend, e));
        for w in chunk {
            let error = first
                .take()
                .or_else(|| copy.as_ref().map(|e| copy_error(self.backend, e)))
                .unwrap_or_else(|| stale(self.backend));
            self.failures.push(BatchFailure {
                index: w.index,
                error,
            });
        }
    }

    /// `Ok` when every receipt settled, else `PartialBatch` in index order.
    pub fn finish(self) -> Result<()> {
        batch_result(self.backend, (), self.failures)
    }
}

/// A stand-in for an error that has to be reported for several batch
/// items: the same variant where it matters (retryability), the same text.
pub fn copy_error(backend: &'static str, error: &QueueError) -> QueueError {
    match error {
        QueueError::Connection { .. } => QueueError::connection(backend, error.to_string()),
        QueueError::Configuration { message, .. } => {
            QueueError::configuration(backend, message.clone())
        }
        QueueError::InvalidMessage { reason, .. } => {
            QueueError::invalid_message(backend, reason.clone())
        }
        QueueError::PayloadTooLarge { size, max, .. } => QueueError::PayloadTooLarge {
            backend,
            size: *size,
            max: *max,
        },
        QueueError::StaleReceipt { .. } => stale(backend),
        QueueError::Unsupported { operation, .. } => QueueError::unsupported(backend, operation),
        other => QueueError::backend_error(backend, other.is_retryable(), other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use flextide_queue_core::backend::{encode_receipt, new_token};

    use super::*;

    #[test]
    fn repeats_and_unsettled_are_stale_by_index() {
        let (a, b) = (new_token(), new_token());
        let receipts = [
            encode_receipt(1, &a),
            Receipt::new("garbage"),
            encode_receipt(1, &a),
            encode_receipt(2, &b),
            encode_receipt(3, &b),
        ];
        let mut batch = DeleteBatch::new("t", &receipts);
        assert_eq!(batch.wanted().len(), 3);
        let chunk = batch.wanted().to_vec();
        batch.settled(&chunk, &[(1, a.clone()), (2, b.clone())]);
        let Err(QueueError::PartialBatch { failures, .. }) = batch.finish() else {
            panic!("expected a partial batch");
        };
        let got: Vec<(usize, bool)> = failures
            .iter()
            .map(|f| (f.index, matches!(f.error, QueueError::StaleReceipt { .. })))
            .collect();
        assert_eq!(got, [(1, false), (2, true), (4, true)]);
    }

    #[test]
    fn a_failed_chunk_fails_each_item_alike() {
        let t = new_token();
        let receipts = [encode_receipt(1, &t), encode_receipt(2, &t)];
        let mut batch = DeleteBatch::new("t", &receipts);
        let chunk = batch.wanted().to_vec();
        batch.failed(&chunk, QueueError::connection("t", "gone"));
        let Err(QueueError::PartialBatch { failures, .. }) = batch.finish() else {
            panic!("expected a partial batch");
        };
        assert!(failures.iter().all(|f| f.error.is_retryable()));
        assert_eq!(failures.len(), 2);
    }
}
