//! Pushing: each message is published persistent through the default
//! exchange and confirmed by the broker; a delayed one goes to its delay
//! bucket's holding queue (see [`crate::delay`]).

use std::time::Duration;

use flextide_queue_core::{
    BatchFailure, Message, MessageId, QueueError, Result,
    backend::{batch_result, now_millis},
};
use futures::future::join_all;
use lapin::{BasicProperties, types::ShortString};

use super::{Inner, lock};
use crate::{
    BACKEND, codec, delay,
    error::map,
    link::{self, Link, check_confirmation},
};

impl Inner {
    /// After a publish to a holding queue came back unroutable (someone
    /// deleted it), forgets it so the next delayed publish declares it again.
    pub(super) fn forget_missing<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(QueueError::QueueNotFound { queue, .. }) = &result
            && let Some(bucket) = queue
                .strip_prefix(self.name.as_str())
                .and_then(|rest| rest.strip_prefix(delay::holding_infix(self.queue_type())))
                .and_then(|ms| ms.parse::<u64>().ok())
        {
            lock(&self.buckets).remove(&bucket);
        }
        result
    }

    /// Declares a delay bucket's holding queue, and records it in the
    /// index, once per handle and again before its `x-expires` could pass
    /// (see [`delay::expires_ms`]).
    async fn holding_queue(&self, link: &Link, bucket_ms: u64) -> Result<String> {
        let name = delay::holding_queue(&self.name, self.queue_type(), bucket_ms);
        let fresh = lock(&self.buckets)
            .get(&bucket_ms)
            .copied()
            .flatten()
            .is_some_and(|at| at.elapsed() < delay::redeclare_after(bucket_ms));
        if fresh {
            return Ok(name);
        }
        let declared_at = tokio::time::Instant::now();
        let publisher = link.publisher().await?;
        link::declare(
            &publisher,
            self.t(),
            &name,
            link::holding_arguments(&self.name, self.queue_type(), bucket_ms),
        )
        .await?;
        // Recorded after the declaration: an entry in the index always
        // names a queue that was declared, and expires before it could.
        let index = delay::index_queue(&self.name, self.queue_type());
        link::declare(&publisher, self.t(), &index, link::index_arguments()).await?;
        link.publish_confirmed(
            &index,
            bucket_ms.to_string().as_bytes(),
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_expiration(ShortString::from(
                    delay::index_entry_ttl_ms(bucket_ms).to_string(),
                )),
        )
        .await?;
        lock(&self.buckets).insert(bucket_ms, Some(declared_at));
        Ok(name)
    }

    /// Where a message goes and with which properties: the main queue, or a
    /// holding queue when it is delayed.
    pub(super) async fn route(
        &self,
        link: &Link,
        message: &Message,
        delay: Option<Duration>,
        attempts_done: u32,
        enqueued_ms: i64,
    ) -> Result<(String, BasicProperties)> {
        let props = codec::properties(message, attempts_done, enqueued_ms, Vec::new());
        match delay.filter(|d| !d.is_zero()) {
            None => Ok((self.name.clone(), props)),
            Some(d) => {
                let (bucket, ms) = delay::bucket(d).ok_or_else(|| {
                    QueueError::invalid_message(BACKEND, "delay exceeds the maximum of 7 days")
                })?;
                let queue = self.holding_queue(link, bucket).await?;
                Ok((
                    queue,
                    props.with_expiration(ShortString::from(ms.to_string())),
                ))
            }
        }
    }

    pub(super) async fn push(&self, message: Message) -> Result<MessageId> {
        self.check(&message)?;
        let link = self.ready_link().await?;
        let (queue, props) = self
            .route(&link, &message, message.delay, 0, now_millis())
            .await?;
        let published = link
            .publish_confirmed(&queue, &message.payload, props)
            .await;
        self.check_link(&link, self.forget_missing(published))?;
        Ok(message.id)
    }

    pub(super) async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let link = self.ready_link().await?;
        let now = now_millis();
        let mut failures = Vec::new();
        let mut routed = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            let route = async {
                self.check(message)?;
                self.route(&link, message, message.delay, 0, now).await
            }
            .await;
            match route {
                Ok((queue, props)) => routed.push((index, message, queue, props)),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        // Polled together, the publishes are queued in order and written in
        // as few socket writes as the I/O loop manages.
        let link_ref = &link;
        let sent = join_all(
            routed
                .into_iter()
                .map(|(index, message, queue, props)| async move {
                    let confirm = link_ref
                        .publish_start(&queue, &message.payload, props)
                        .await;
                    (index, queue, confirm)
                }),
        )
        .await;
        let mut pending = Vec::new();
        for (index, queue, confirm) in sent {
            match confirm {
                Ok(c) => pending.push((index, (queue, c))),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        let t = self.t();
        let confirmed = join_all(
            pending
                .into_iter()
                .map(|(index, (queue, confirm))| async move {
                    let result = match tokio::time::timeout(t, confirm).await {
                        Err(_) => Err(QueueError::Timeout {
                            backend: BACKEND,
                            operation: "publisher confirm",
                            after: t,
                        }),
                        Ok(Err(e)) => Err(map(e)),
                        Ok(Ok(c)) => check_confirmation(&queue, c),
                    };
                    (index, result)
                }),
        )
        .await;
        for (index, result) in confirmed {
            if let Err(error) = self.forget_missing(result) {
                failures.push(BatchFailure { index, error });
            }
        }
        if failures
            .iter()
            .any(|f| matches!(f.error, QueueError::Timeout { .. }))
        {
            let timeout = QueueError::Timeout {
                backend: BACKEND,
                operation: "publisher confirm",
                after: t,
            };
            let _ = self.check_link(&link, Err::<(), _>(timeout));
        }
        batch_result(
            BACKEND,
            messages.into_iter().map(|m| m.id).collect(),
            failures,
        )
    }
}
