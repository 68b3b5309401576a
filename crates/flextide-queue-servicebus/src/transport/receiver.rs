//! Peek-lock receive links: credit per call, settlement on the link.

use std::{fmt, time::Duration};

use fe2o3_amqp::{
    Receiver as AmqpReceiver,
    link::delivery::DeliveryInfo,
    types::{
        definitions::{self, ErrorCondition},
        messaging::Modified,
        primitives::{OrderedMap, Symbol, Value},
    },
};
use fe2o3_amqp_types::messaging::Body;
use flextide_queue_core::{Message, QueueError, Result};
use uuid::Uuid;

use super::{BATCH_GRACE, DEAD_LETTER, errors::recv_error, quietly, timed};
use crate::{
    BACKEND,
    codec::{self, DLQ_DESCRIPTION, DLQ_REASON, Received},
};

/// One received, unsettled delivery.
pub struct Incoming {
    pub(crate) delivery: DeliveryInfo,
    pub(crate) received: Received,
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl Incoming {
    /// The message, or why its body cannot be read.
    pub fn message(&self) -> std::result::Result<&Message, &str> {
        self.received.message.as_ref().map_err(String::as_str)
    }
    /// Deliveries before this one (the header's `delivery-count`).
    pub fn delivery_count(&self) -> u32 {
        self.received.delivery_count
    }
    /// The attempt this is, counting copies' carried attempts.
    pub fn attempt(&self) -> u32 {
        self.received.attempt()
    }
    /// Service Bus's lock token, if the broker sent one.
    pub fn lock_token(&self) -> Option<Uuid> {
        self.received.lock_token
    }
}

/// A peek-lock receive link.
pub struct Receiver {
    pub(super) link: AmqpReceiver,
    pub(super) name: String,
    pub(super) entity: String,
    pub(super) credit: u32,
    /// Service Bus abandons with the `modified` outcome; RabbitMQ's AMQP
    /// 1.0 plugin (3.x) ends the session on one, so plain brokers get
    /// `released`.
    pub(super) service_bus: bool,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("entity", &self.entity)
            .finish()
    }
}

impl Receiver {
    /// The link's name (for `associated-link-name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Up to `max` deliveries, waiting at most `wait` for the first.
    pub async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<Incoming>> {
        let max = u32::try_from(max.max(1)).unwrap_or(u32::MAX);
        if self.credit < max {
            timed("flow", async {
                self.link
                    .set_credit(max)
                    .await
                    .map_err(|e| QueueError::connection(BACKEND, format!("flow: {e}")))
            })
            .await?;
            self.credit = max;
        }
        let mut out = Vec::new();
        let mut budget = wait;
        while out.len() < max as usize {
            match tokio::time::timeout(budget, self.link.recv::<Body<Value>>()).await {
                Err(_) => break,
                Ok(Err(e)) => {
                    if out.is_empty() {
                        return Err(recv_error(&self.entity, e));
                    }
                    break;
                }
                Ok(Ok(delivery)) => {
                    self.credit = self.credit.saturating_sub(1);
                    let tag = delivery.delivery_tag().to_vec();
                    let (info, message) = delivery.into_parts();
                    out.push(Incoming {
                        delivery: info,
                        received: codec::decode(message, &tag),
                    });
                    budget = BATCH_GRACE;
                }
            }
        }
        Ok(out)
    }

    /// Settles: done (Service Bus: complete).
    pub async fn accept(&self, incoming: &Incoming) -> Result<()> {
        self.accept_info(&incoming.delivery).await
    }
    pub(crate) async fn accept_info(&self, info: &DeliveryInfo) -> Result<()> {
        timed("accept", async {
            self.link
                .accept(info.clone())
                .await
                .map_err(|e| QueueError::connection(BACKEND, format!("accept: {e}")))
        })
        .await
    }

    /// Gives it back for redelivery (AMQP released).
    pub async fn release(&self, incoming: &Incoming) -> Result<()> {
        timed("release", async {
            self.link
                .release(incoming.delivery.clone())
                .await
                .map_err(|e| QueueError::connection(BACKEND, format!("release: {e}")))
        })
        .await
    }

    /// Gives it back counting a failed delivery (Service Bus: abandon,
    /// the delivery count goes up).
    pub(crate) async fn abandon_info(&self, info: &DeliveryInfo) -> Result<()> {
        if !self.service_bus {
            return timed("release", async {
                self.link
                    .release(info.clone())
                    .await
                    .map_err(|e| QueueError::connection(BACKEND, format!("release: {e}")))
            })
            .await;
        }
        let modified = Modified {
            delivery_failed: Some(true),
            undeliverable_here: None,
            message_annotations: None,
        };
        timed("abandon", async {
            self.link
                .modify(info.clone(), modified)
                .await
                .map_err(|e| QueueError::connection(BACKEND, format!("abandon: {e}")))
        })
        .await
    }

    /// Rejects it; with `reason`, as Service Bus's dead-letter (condition
    /// `com.microsoft:dead-letter`, `DeadLetterReason` in the info).
    pub async fn reject(&self, incoming: &Incoming, reason: Option<&str>) -> Result<()> {
        self.reject_info(&incoming.delivery, reason).await
    }
    pub(crate) async fn reject_info(
        &self,
        info: &DeliveryInfo,
        reason: Option<&str>,
    ) -> Result<()> {
        let error = reason.map(dead_letter_error);
        timed("reject", async {
            self.link
                .reject(info.clone(), error)
                .await
                .map_err(|e| QueueError::connection(BACKEND, format!("reject: {e}")))
        })
        .await
    }

    /// Detaches the link; unsettled deliveries go back to the broker.
    pub async fn close(self) {
        quietly(self.link.close()).await;
    }
}

/// The rejected outcome's error that dead-letters with `reason`.
pub(crate) fn dead_letter_error(reason: &str) -> definitions::Error {
    let mut info = OrderedMap::new();
    info.insert(Symbol::from(DLQ_REASON), Value::String(reason.to_owned()));
    info.insert(
        Symbol::from(DLQ_DESCRIPTION),
        Value::String(reason.to_owned()),
    );
    definitions::Error::new(
        ErrorCondition::Custom(Symbol::from(DEAD_LETTER)),
        Some(reason.to_owned()),
        Some(info),
    )
}
