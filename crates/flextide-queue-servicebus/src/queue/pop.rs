//! Receiving: peek-lock deliveries become Flextide deliveries whose
//! receipt is `LINK-GENERATION:LOCK-TOKEN` and whose lease ends when the
//! broker's lock does (`x-opt-locked-until`).

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use flextide_queue_core::{
    Delivery, Result,
    backend::{max_attempts_reason, undecodable_reason},
};
use uuid::Uuid;

use super::{Pending, ServiceBusQueue};
use crate::{lock::Held, transport::Incoming};

/// The longest one receive call holds the links: other callers (settles,
/// pushes) wait at most this long for a waiting pop.
const SLICE: Duration = Duration::from_millis(250);

pub(super) async fn pop_batch(
    q: &ServiceBusQueue,
    max: usize,
    wait: Duration,
) -> Result<Vec<Delivery>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let deadline = Instant::now() + wait;
    loop {
        let slice = deadline
            .saturating_duration_since(Instant::now())
            .min(SLICE);
        let entity = q.name.clone();
        let (generation, incoming) = q
            .with_links(async move |links| {
                let generation = links.generation();
                let receiver = links.receiver(&entity).await?;
                Ok((generation, receiver.receive(max, slice).await?))
            })
            .await?;
        let out = take(q, generation, incoming).await?;
        if !out.is_empty() || Instant::now() >= deadline {
            return Ok(out);
        }
    }
}

/// Records the locks of the deliveries to hand out; dead-letters what is
/// undecodable or past `max_attempts`; skips what is no longer locked.
async fn take(
    q: &ServiceBusQueue,
    generation: u64,
    incoming: Vec<Incoming>,
) -> Result<Vec<Delivery>> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    let mut refuse = Vec::new();
    for d in incoming {
        let token = match d.received.lock_token {
            Some(t) if q.service_bus() => t,
            // Plain brokers have no lock token: the receipt's own.
            _ => Uuid::new_v4(),
        };
        let locked_until = d
            .received
            .locked_until
            .unwrap_or_else(|| now + q.options.lease);
        if locked_until <= now {
            // Locked while it waited in the link's buffer and the lock ran
            // out: Service Bus delivers it again.
            continue;
        }
        let attempt = d.received.attempt();
        let message = match &d.received.message {
            Ok(m) => m.clone(),
            Err(why) => {
                let reason = undecodable_reason(why);
                refuse.push((d, reason));
                continue;
            }
        };
        if let Some(max) = q.options.max_attempts
            && attempt > max
        {
            refuse.push((d, max_attempts_reason(max)));
            continue;
        }
        q.locks.lock().expect("lock table poisoned").insert(
            token,
            Held {
                link: generation,
                delivery: Pending {
                    delivery: d.delivery.clone(),
                    message: message.clone(),
                    attempt,
                },
                locked_until,
            },
        );
        let lease = locked_until.duration_since(now).unwrap_or_default();
        out.push(Delivery::new(
            message,
            ServiceBusQueue::receipt(generation, token),
            attempt,
            Instant::now() + lease,
        ));
    }
    if !refuse.is_empty() {
        let entity = q.name.clone();
        q.with_links(async move |links| {
            if links.generation() != generation {
                return Ok(());
            }
            let receiver = links.receiver(&entity).await?;
            for (d, reason) in refuse {
                tracing::warn!(backend = crate::BACKEND, reason = %reason, "dead-lettering a delivery");
                receiver.reject_info(&d.delivery, Some(&reason)).await?;
            }
            Ok(())
        })
        .await?;
    }
    Ok(out)
}
