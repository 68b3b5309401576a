//! The `QueueProvider` over one Service Bus queue: thin, each job in its
//! own file (`live`: the connection and its links; `pop`; `settle`;
//! `dead`: the dead-letter sub-queue).

mod dead;
mod live;
mod pop;
mod settle;

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use flextide_queue_core::{
    Capabilities, DeadLetter, Delivery, Message, MessageId, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay, Result, backend::check_payload,
    validate_queue_name,
};
use uuid::Uuid;

use crate::{BACKEND, DUPLICATE_DETECTION_ENV, config::ServiceBusConfig, lock::Locks};
use live::Links;

/// Standard tier's largest message; Premium takes more, but a queue
/// cannot tell its tier over AMQP.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Service Bus schedules messages without an upper limit we know of; the
/// contract wants a bound, so this is a generous one.
const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);

/// What is kept for a delivery until it is settled.
#[derive(Clone)]
pub(crate) struct Pending {
    pub(crate) delivery: fe2o3_amqp::link::delivery::DeliveryInfo,
    pub(crate) message: Message,
    pub(crate) attempt: u32,
}

/// One Service Bus queue (or, for the transport's tests, a queue of a
/// plain AMQP 1.0 broker).
pub struct ServiceBusQueue {
    name: String,
    config: Arc<ServiceBusConfig>,
    options: QueueOptions,
    links: Arc<tokio::sync::Mutex<Links>>,
    locks: Arc<Mutex<Locks<Pending>>>,
}

impl fmt::Debug for ServiceBusQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBusQueue")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ServiceBusQueue {
    /// Opens `name` with the settings in `config`; connects at once so a
    /// refused connection or a missing queue is reported here.
    pub async fn open(
        config: Arc<ServiceBusConfig>,
        name: &str,
        options: QueueOptions,
    ) -> Result<Self> {
        validate_queue_name(name)?;
        if let Some(entity) = &config.entity_path
            && entity != name
        {
            return Err(QueueError::configuration(
                BACKEND,
                format!(
                    "the connection string is scoped to EntityPath={entity:?}; it cannot open {name:?}"
                ),
            ));
        }
        let queue = Self {
            name: name.to_owned(),
            config,
            options,
            links: Arc::new(tokio::sync::Mutex::new(Links::default())),
            locks: Arc::default(),
        };
        queue.with_links(async |_| Ok(())).await?;
        Ok(queue)
    }

    /// The address of the queue (an entity name on Service Bus; with a
    /// prefix such as `/queue/` on other brokers).
    fn address(&self) -> String {
        format!("{}{}", self.config.address_prefix, self.name)
    }

    /// The address of its dead-letter sub-queue.
    fn dead_letter_address(&self) -> String {
        format!("{}/$DeadLetterQueue", self.address())
    }

    fn service_bus(&self) -> bool {
        self.config.service_bus
    }

    fn receipt(generation: u64, token: Uuid) -> Receipt {
        Receipt::new(format!("{generation}:{token}"))
    }

    fn parse_receipt(receipt: &Receipt) -> Result<(u64, Uuid)> {
        let bad = || QueueError::invalid_receipt(BACKEND, "expected LINK:LOCK-TOKEN");
        let (g, t) = receipt.as_str().split_once(':').ok_or_else(bad)?;
        Ok((
            g.parse().map_err(|_| bad())?,
            Uuid::parse_str(t).map_err(|_| bad())?,
        ))
    }

    fn now() -> SystemTime {
        SystemTime::now()
    }
}

/// The `message-id` of a copy of `message` (`nack(delay)`, replay): on a
/// queue with duplicate detection (`fresh`) a new one, since the copy
/// shares the original's id and would be dropped as its duplicate (and the
/// message lost once the original is completed); else the Flextide id.
pub(crate) fn copy_wire_id(fresh: bool, message: &Message) -> String {
    if fresh {
        Uuid::new_v4().to_string()
    } else {
        message.id.as_str().to_owned()
    }
}

#[async_trait]
impl QueueProvider for ServiceBusQueue {
    fn queue_name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        let sb = self.service_bus();
        Capabilities {
            delay: sb,
            max_delay: sb.then_some(MAX_DELAY),
            max_payload_bytes: Some(MAX_PAYLOAD_BYTES),
            extend_lease: sb,
            fenced_receipts: true,
            dead_letters: sb,
            delete_dead_letters: sb,
            // Duplicate detection drops a duplicate without saying so:
            // `push_unique` reports `Enqueued` either way (as on SQS FIFO).
            dedup: sb && self.config.duplicate_detection.is_some(),
            dedup_window: self.config.duplicate_detection.filter(|_| sb),
            blind_stats: true,
            ..Capabilities::default()
        }
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    async fn push(&self, message: Message) -> Result<MessageId> {
        self.check_push(&message)?;
        let visible_at = message
            .delay
            .filter(|d| !d.is_zero())
            .map(|d| Self::now() + d);
        let entity = self.name.clone();
        // A unique push sends its dedup id as the `message-id` Service
        // Bus's duplicate detection keys on (`check_push` allowed it only
        // on queues that have it).
        let wire_id = message
            .dedup_id
            .clone()
            .unwrap_or_else(|| message.id.as_str().to_owned());
        self.with_links(async move |links| {
            let sender = links.sender(&entity).await?;
            sender.send_as(&message, &wire_id, 0, visible_at).await?;
            Ok(message.id)
        })
        .await
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        pop::pop_batch(self, max, wait).await
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        settle::delete(self, receipt).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        settle::nack(self, receipt, delay).await
    }

    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        if !self.service_bus() {
            return Err(QueueError::unsupported(BACKEND, "extend"));
        }
        settle::extend(self, receipt, by).await
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        if !self.service_bus() {
            return Err(QueueError::unsupported(BACKEND, "dead_letter"));
        }
        settle::dead_letter(self, receipt, reason).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.dead_letters_supported("dead_letters")?;
        dead::list(self, limit).await
    }

    async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        self.dead_letters_supported("replay_dead_letters")?;
        dead::replay(self, which).await
    }

    async fn delete_dead_letters(&self, ids: &[MessageId]) -> Result<u64> {
        self.dead_letters_supported("delete_dead_letters")?;
        dead::delete(self, Some(ids)).await
    }

    async fn purge_dead_letters(&self) -> Result<u64> {
        self.dead_letters_supported("purge_dead_letters")?;
        dead::delete(self, None).await
    }

    /// Service Bus keeps its counts in the management plane (ARM), not on
    /// the AMQP connection: `depth`, `in_flight` and `delayed` are 0
    /// (`blind_stats`); `dead_lettered` is counted by reading the
    /// dead-letter sub-queue.
    async fn stats(&self) -> Result<QueueStats> {
        if !self.service_bus() {
            return Ok(QueueStats::default());
        }
        let dead = dead::count(self).await?;
        Ok(QueueStats::default().with_dead_lettered(dead))
    }

    async fn close(&self) -> Result<()> {
        self.links.lock().await.close().await;
        Ok(())
    }
}

impl ServiceBusQueue {
    fn check_push(&self, message: &Message) -> Result<()> {
        check_payload(BACKEND, message.payload.len(), Some(MAX_PAYLOAD_BYTES))?;
        if message.priority > 0 {
            return Err(QueueError::unsupported(BACKEND, "priority"));
        }
        if message.ordering_key.is_some() {
            return Err(QueueError::unsupported_because(
                BACKEND,
                "ordering_key",
                "Service Bus sessions are not used by this backend yet",
            ));
        }
        if message.dedup_id.is_some() && self.config.duplicate_detection.is_none() {
            return Err(QueueError::unsupported_because(
                BACKEND,
                "dedup_id",
                format!(
                    "turn on duplicate detection on the queue and set {DUPLICATE_DETECTION_ENV} to its window"
                ),
            ));
        }
        if message.delay.is_some_and(|d| !d.is_zero()) && !self.service_bus() {
            return Err(QueueError::unsupported(BACKEND, "delay"));
        }
        if message.delay.is_some_and(|d| d > MAX_DELAY) {
            return Err(QueueError::invalid_message(
                BACKEND,
                format!("delay above {MAX_DELAY:?}"),
            ));
        }
        Ok(())
    }

    fn dead_letters_supported(&self, operation: &'static str) -> Result<()> {
        if self.service_bus() {
            Ok(())
        } else {
            Err(QueueError::unsupported(BACKEND, operation))
        }
    }
}
