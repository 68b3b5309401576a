//! Settling a receipt: on the receive link that took the message (its
//! generation is in the receipt), after checking the lock here first, so
//! an expired lock is refused as stale without a round trip; Service Bus
//! itself answers `MessageLockLost` for one, mapped to the same error.

use std::{
    sync::{Arc, Weak},
    time::{Duration, SystemTime},
};

use flextide_queue_core::{QueueError, Receipt, Result};
use uuid::Uuid;

use super::{Pending, ServiceBusQueue, live::Links};
use crate::{
    BACKEND,
    lock::{Held, Locks, next_renewal},
    transport::Receiver,
};

fn stale() -> QueueError {
    QueueError::StaleReceipt { backend: BACKEND }
}

/// The held lock of `receipt`, or `StaleReceipt`.
fn held(q: &ServiceBusQueue, receipt: &Receipt) -> Result<(u64, Uuid, Held<Pending>)> {
    let (generation, token) = ServiceBusQueue::parse_receipt(receipt)?;
    let held = q
        .locks
        .lock()
        .expect("lock table poisoned")
        .check(token, generation, SystemTime::now())
        .map_err(|_| stale())?;
    Ok((generation, token, held))
}

/// Runs `f` on the receive link of `generation`, if it is still the one.
async fn on_link<T>(
    q: &ServiceBusQueue,
    generation: u64,
    f: impl AsyncFnOnce(&mut Receiver) -> Result<T>,
) -> Result<T> {
    let entity = q.name.clone();
    q.with_links(async move |links| {
        if links.generation() != generation {
            return Err(stale());
        }
        f(links.receiver(&entity).await?).await
    })
    .await
}

fn forget(q: &ServiceBusQueue, token: Uuid) {
    q.locks.lock().expect("lock table poisoned").remove(token);
}

/// Complete.
pub(super) async fn delete(q: &ServiceBusQueue, receipt: &Receipt) -> Result<()> {
    let (generation, token, held) = held(q, receipt)?;
    let info = held.delivery.delivery;
    on_link(q, generation, async move |r| r.accept_info(&info).await).await?;
    forget(q, token);
    Ok(())
}

/// `nack(0)`: abandon (Service Bus counts the delivery). `nack(delay)`:
/// a copy scheduled for later carrying the attempts so far, then the
/// original completed; Service Bus has no "abandon until". The two steps
/// are not atomic: a failure between them leaves both (a duplicate, never
/// a loss).
pub(super) async fn nack(q: &ServiceBusQueue, receipt: &Receipt, delay: Duration) -> Result<()> {
    let (generation, token, held) = held(q, receipt)?;
    let Pending {
        delivery,
        message,
        attempt,
    } = held.delivery;
    if delay.is_zero() || !q.service_bus() {
        on_link(q, generation, async move |r| {
            r.abandon_info(&delivery).await
        })
        .await?;
    } else {
        let entity = q.name.clone();
        let at = SystemTime::now() + delay;
        let wire_id = super::copy_wire_id(q.config.duplicate_detection.is_some(), &message);
        q.with_links(async move |links| {
            if links.generation() != generation {
                return Err(stale());
            }
            links
                .sender(&entity)
                .await?
                .send_as(&message, &wire_id, attempt, Some(at))
                .await?;
            links.receiver(&entity).await?.accept_info(&delivery).await
        })
        .await?;
    }
    forget(q, token);
    Ok(())
}

/// Dead-letter with `reason` (Service Bus's own dead-letter sub-queue,
/// `DeadLetterReason` set).
pub(super) async fn dead_letter(
    q: &ServiceBusQueue,
    receipt: &Receipt,
    reason: &str,
) -> Result<()> {
    let (generation, token, held) = held(q, receipt)?;
    let info = held.delivery.delivery;
    let reason = reason.to_owned();
    on_link(q, generation, async move |r| {
        r.reject_info(&info, Some(&reason)).await
    })
    .await?;
    forget(q, token);
    Ok(())
}

/// Renews the lock now. Service Bus renews by the queue's lock duration,
/// not by `by`: when `by` reaches past the renewed lock, a task renews it
/// again at two thirds of each lock's life until `by` is covered or the
/// message is settled.
pub(super) async fn extend(q: &ServiceBusQueue, receipt: &Receipt, by: Duration) -> Result<()> {
    let (generation, token, _) = held(q, receipt)?;
    let renewed_at = SystemTime::now();
    let until = renew(&q.links, &q.locks, &q.name, generation, token).await?;
    let want = renewed_at + by;
    if next_renewal(renewed_at, until, want).is_some() {
        tokio::spawn(keep_renewing(
            Arc::downgrade(&q.links),
            Arc::downgrade(&q.locks),
            q.name.clone(),
            generation,
            token,
            renewed_at,
            until,
            want,
        ));
    }
    Ok(())
}

/// One `renew-lock` of `token` over the current connection, if it is
/// still generation `generation`; records the new expiry.
async fn renew(
    links: &tokio::sync::Mutex<Links>,
    locks: &std::sync::Mutex<Locks<Pending>>,
    entity: &str,
    generation: u64,
    token: Uuid,
) -> Result<SystemTime> {
    let mut links = links.lock().await;
    if links.generation() != generation {
        return Err(stale());
    }
    let link = links.receiver_name().ok_or_else(stale)?;
    let expiries = links
        .management(entity)
        .await?
        .renew_locks(vec![token], &link)
        .await;
    let until = match expiries {
        Ok(e) => e.first().copied().ok_or_else(|| {
            QueueError::backend_error(BACKEND, true, "renew-lock answered no expiration")
        })?,
        Err(e) => {
            if matches!(e, QueueError::StaleReceipt { .. }) {
                locks.lock().expect("lock table poisoned").remove(token);
            }
            return Err(e);
        }
    };
    locks
        .lock()
        .expect("lock table poisoned")
        .renewed(token, until);
    Ok(until)
}

#[allow(clippy::too_many_arguments)]
async fn keep_renewing(
    links: Weak<tokio::sync::Mutex<Links>>,
    locks: Weak<std::sync::Mutex<Locks<Pending>>>,
    entity: String,
    generation: u64,
    token: Uuid,
    mut renewed_at: SystemTime,
    mut until: SystemTime,
    want: SystemTime,
) {
    while let Some(at) = next_renewal(renewed_at, until, want) {
        tokio::time::sleep(at.duration_since(SystemTime::now()).unwrap_or_default()).await;
        let (Some(links), Some(locks)) = (links.upgrade(), locks.upgrade()) else {
            return;
        };
        if locks
            .lock()
            .expect("lock table poisoned")
            .check(token, generation, SystemTime::now())
            .is_err()
        {
            return; // settled, or already lost
        }
        renewed_at = SystemTime::now();
        match renew(&links, &locks, &entity, generation, token).await {
            Ok(u) => until = u,
            Err(e) => {
                tracing::warn!(backend = BACKEND, error = %e, "renewing a lock failed; it runs out at its current expiry");
                return;
            }
        }
    }
}
