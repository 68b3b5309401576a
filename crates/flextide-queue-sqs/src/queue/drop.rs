//! `drop_queue`: deleting the queue and the dead-letter queue this library
//! made for it.
//!
//! An SQS dead-letter queue may serve several source queues (their redrive
//! policies may all name it), so only the one `ensure_queue` creates for
//! this queue, `<name>-dlq-<hash>` (named after this queue alone), is
//! deleted. A dead-letter queue the redrive policy names otherwise was set
//! up by someone else and is left alone, with its messages.

use flextide_queue_core::Result;

use super::SqsQueue;
use crate::{client::queue_url, error::Fault};

impl SqsQueue {
    pub(super) async fn drop_queues(&self) -> Result<()> {
        // Deliveries held for dropped pops belong to the deleted queue.
        let _ = self.stash.take_all();
        self.delete_url(&self.url, &self.names.sqs_name()).await?;
        let own_dlq = self.names.dlq_name();
        if let Some(url) = queue_url(&self.sdk, &own_dlq, None).await? {
            self.delete_url(&url, &own_dlq).await?;
        }
        Ok(())
    }

    /// Deletes the queue at `url`; one already gone is fine.
    async fn delete_url(&self, url: &str, sqs_name: &str) -> Result<()> {
        match self.sdk.delete_queue().queue_url(url).send().await {
            Ok(_) => Ok(()),
            Err(e) => match Fault::from_sdk(&e) {
                Fault::NotFound => Ok(()),
                fault => Err(fault.into_error(sqs_name, "delete_queue")),
            },
        }
    }
}
