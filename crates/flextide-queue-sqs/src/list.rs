//! Listing the queues of an account and region (`ListQueues`), without the
//! dead-letter queues `ensure_queue` made for them.

use std::collections::HashSet;

use flextide_queue_core::Result;

use crate::{SqsClient, client::Names, error::Fault};

impl SqsClient {
    /// The SQS names of the queues this client sees, sorted, leaving out
    /// each one's dead-letter queue as `ensure_queue` names it. FIFO queues
    /// keep their `.fifo`.
    pub async fn queue_names(&self) -> Result<Vec<String>> {
        let mut all = Vec::new();
        let mut pages = self
            .sdk()
            .list_queues()
            .max_results(1000)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Fault::from_sdk(&e).into_error("*", "list_queues"))?;
            for url in page.queue_urls() {
                if let Some(name) = url.trim_end_matches('/').rsplit('/').next() {
                    all.push(name.to_owned());
                }
            }
        }
        let dead: HashSet<String> = all
            .iter()
            .filter_map(|n| Names::from_sqs_name(n).ok())
            .map(|n| n.dlq_name())
            .collect();
        all.retain(|n| !dead.contains(n));
        all.sort();
        Ok(all)
    }
}
