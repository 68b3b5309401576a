//! Opening an SQS queue: reading its attributes and finding its dead-letter
//! queue from the redrive policy (or the one `ensure_queue` creates).

use std::sync::Arc;

use aws_sdk_sqs::{Client, types::QueueAttributeName};
use flextide_queue_core::{QueueError, QueueOptions, Result};

use super::{DEFAULT_MAX_MESSAGE_SIZE, DeadLetterQueue, SqsQueue};
use crate::{
    BACKEND,
    client::{Names, queue_url},
    codec,
    error::Fault,
};

impl SqsQueue {
    /// Reads the queue's attributes and finds its dead-letter queue.
    pub(crate) async fn open(
        sdk: Client,
        names: Names,
        url: String,
        options: QueueOptions,
    ) -> Result<SqsQueue> {
        let sqs_name = names.sqs_name();
        let attrs = sdk
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|e| Fault::from_sdk(&e).into_error(&sqs_name, "get_queue_attributes"))?;
        let attrs = attrs.attributes().cloned().unwrap_or_default();
        let max_message_size = attrs
            .get(&QueueAttributeName::MaximumMessageSize)
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_SIZE);
        let fifo_attr = attrs
            .get(&QueueAttributeName::FifoQueue)
            .is_some_and(|v| v == "true");
        if fifo_attr != names.fifo {
            return Err(QueueError::configuration(
                BACKEND,
                format!(
                    "queue {sqs_name:?}: FifoQueue is {fifo_attr}, which does not match its name"
                ),
            ));
        }

        let dlq = match attrs
            .get(&QueueAttributeName::RedrivePolicy)
            .filter(|p| !p.is_empty())
        {
            Some(policy) => {
                let policy: serde_json::Value = serde_json::from_str(policy).map_err(|e| {
                    QueueError::backend_error(
                        BACKEND,
                        false,
                        format!("queue {sqs_name:?}: unreadable RedrivePolicy: {e}"),
                    )
                })?;
                let arn = policy["deadLetterTargetArn"].as_str().unwrap_or_default();
                let max_receive_count = match &policy["maxReceiveCount"] {
                    serde_json::Value::Number(n) => n.as_u64().map(|n| n as u32),
                    serde_json::Value::String(s) => s.parse().ok(),
                    _ => None,
                };
                // arn:aws:sqs:<region>:<account>:<name>
                let parts: Vec<&str> = arn.split(':').collect();
                let (account, dlq_name) = match parts.as_slice() {
                    [.., account, name] if parts.len() >= 6 => (Some(*account), *name),
                    _ => {
                        return Err(QueueError::backend_error(
                            BACKEND,
                            false,
                            format!(
                                "queue {sqs_name:?}: RedrivePolicy has no usable deadLetterTargetArn"
                            ),
                        ));
                    }
                };
                let account = account.filter(|a| !a.is_empty());
                let dlq_url = queue_url(&sdk, dlq_name, account).await?.ok_or_else(|| {
                    QueueError::QueueNotFound {
                        backend: BACKEND,
                        queue: dlq_name.to_owned(),
                    }
                })?;
                Some(DeadLetterQueue {
                    url: dlq_url,
                    max_receive_count,
                })
            }
            None => queue_url(&sdk, &names.dlq_name(), None)
                .await?
                .map(|url| DeadLetterQueue {
                    url,
                    max_receive_count: None,
                }),
        };

        Ok(SqsQueue {
            sdk,
            names,
            url,
            dlq,
            lease: options.lease,
            max_attempts: options.max_attempts,
            max_message_size,
            max_payload: codec::max_payload_for(max_message_size),
            stash: Arc::default(),
        })
    }
}
