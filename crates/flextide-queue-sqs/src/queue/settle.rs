//! Settling by receipt handle: visibility changes and batched deletes.

use std::collections::HashSet;

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use flextide_queue_core::Result;

use super::SqsQueue;
use crate::{codec, error::Fault};

impl SqsQueue {
    pub(super) async fn change_visibility(
        &self,
        receipt: &str,
        seconds: u64,
        op: &'static str,
    ) -> Result<()> {
        self.sdk
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.err(Fault::from_sdk(&e), op))
    }

    pub(super) async fn delete_receipts(&self, url: &str, receipts: &[&str]) -> Vec<Option<Fault>> {
        let mut results = vec![None; receipts.len()];
        for start in (0..receipts.len()).step_by(codec::MAX_BATCH_ENTRIES) {
            let end = (start + codec::MAX_BATCH_ENTRIES).min(receipts.len());
            let entries: Vec<_> = (start..end)
                .map(|i| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipts[i])
                        .build()
                        .expect("id and handle are set")
                })
                .collect();
            match self
                .sdk
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    let mut seen: HashSet<usize> = out
                        .successful()
                        .iter()
                        .filter_map(|e| e.id().parse().ok())
                        .collect();
                    for bad in out.failed() {
                        if let Ok(i) = bad.id().parse::<usize>() {
                            results[i] = Some(Fault::from_code(
                                bad.code(),
                                bad.message().unwrap_or_default(),
                                !bad.sender_fault(),
                            ));
                            seen.insert(i);
                        }
                    }
                    for i in (start..end).filter(|i| !seen.contains(i)) {
                        results[i] = Some(Fault::Other {
                            retryable: true,
                            text: "SQS did not report this entry".into(),
                        });
                    }
                }
                Err(e) => {
                    let fault = Fault::from_sdk(&e);
                    for slot in &mut results[start..end] {
                        *slot = Some(fault.clone());
                    }
                }
            }
        }
        results
    }
}
