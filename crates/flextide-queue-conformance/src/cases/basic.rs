//! Clause 1 (at-least-once) in its plainest form: push, pop, delete.

use std::time::Duration;

use flextide_queue_core::Message;

use crate::{Case, CaseResult, Ctx, cases::case, ensure, ensure_eq};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("basic::push_pop_delete", push_pop_delete),
        case!("basic::queue_name_is_kept", queue_name_is_kept),
        case!(
            "basic::first_delivery_is_attempt_1",
            first_delivery_is_attempt_1
        ),
    ]
}

/// A pushed message is popped with the same id, payload and headers, and is
/// gone once deleted.
pub async fn push_pop_delete(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let msg = Message::new(&b"hello"[..]).with_header("x-task", "invoice");
    let id = q.push(msg.clone()).await?;
    ensure_eq!(id, msg.id);
    let d = q.pop(Duration::from_secs(5)).await?;
    let Some(d) = d else {
        return Err(crate::CaseError("pushed message was not delivered".into()));
    };
    ensure_eq!(d.message.id, msg.id);
    ensure_eq!(d.message.payload, msg.payload);
    ensure_eq!(
        d.message.headers.get("x-task").map(String::as_str),
        Some("invoice")
    );
    ensure!(
        d.message.enqueued_at.is_some(),
        "enqueued_at must be set on delivery"
    );
    q.delete(&d.receipt).await?;
    ensure!(
        q.pop(Duration::from_millis(200)).await?.is_none(),
        "deleted message was delivered again"
    );
    Ok(())
}

/// `queue_name()` returns the name the queue was opened with.
pub async fn queue_name_is_kept(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    ensure!(
        q.queue_name().starts_with("ft_basic__queue_name_is_kept_"),
        "queue_name() = {:?}",
        q.queue_name()
    );
    Ok(())
}

/// The first delivery carries attempt 1 and a lease deadline in the future.
pub async fn first_delivery_is_attempt_1(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    q.push(Message::new("x")).await?;
    let d = q
        .pop(Duration::from_secs(5))
        .await?
        .ok_or_else(|| crate::CaseError("no delivery".into()))?;
    ensure_eq!(d.attempt, 1);
    ensure!(
        d.lease_deadline > tokio::time::Instant::now(),
        "lease deadline is already past"
    );
    q.delete(&d.receipt).await?;
    Ok(())
}
