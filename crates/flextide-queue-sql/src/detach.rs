//! Cancel-safe transactions, and claims that leave nothing leased behind a
//! caller that is gone.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use flextide_queue_core::{Delivery, QueueError, Result};
use tokio::sync::{Notify, oneshot};

/// Runs `work` (one transaction, or one statement sqlx must not drop
/// half-way) in a task of its own and waits for it.
///
/// sqlx is not cancellation-safe: a BEGIN dropped after the server ran it
/// leaves the pooled connection inside a transaction sqlx does not know of
/// (a later push on it returns Ok and never commits), a statement dropped
/// half-written can hang the connection's return to the pool, and SQLite
/// closes the connection, which takes an in-memory database with it. Run to
/// the end here, the work commits or rolls back whatever happens to the
/// caller (contract clause 13). A claim wants [`detach_claim`] instead, so
/// that what it leases for a caller that is gone comes back at once.
pub async fn detach<T, F>(backend: &'static str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    tokio::spawn(work).await.map_err(|e| {
        QueueError::backend_error(backend, true, format!("a database task failed: {e}"))
    })?
}

/// Whether the caller of a [`detach_claim`] is still waiting for its result.
#[derive(Debug, Clone, Default)]
pub struct Presence(Arc<AtomicBool>);

impl Presence {
    /// True once the caller's future was dropped: a claim that has not
    /// begun yet should not begin (check after acquiring the connection,
    /// the long wait, and before BEGIN).
    pub fn is_gone(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The caller's end: marks the caller gone when dropped, and releases a
/// result that arrived but was never taken.
struct Waiting<T, R: Fn(T) -> RF, RF: Future<Output = ()> + Send + 'static> {
    presence: Presence,
    rx: Option<(oneshot::Receiver<Result<T>>, Arc<R>)>,
}

impl<T, R: Fn(T) -> RF, RF: Future<Output = ()> + Send + 'static> Drop for Waiting<T, R, RF> {
    fn drop(&mut self) {
        self.presence.0.store(true, Ordering::Release);
        if let Some((mut rx, release)) = self.rx.take()
            && let Ok(Ok(value)) = rx.try_recv()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(release(value));
        }
    }
}

/// [`detach`] for a claim: `work` runs in a task of its own and gets a
/// [`Presence`] to skip the claim when the caller is already gone when the
/// claim would begin; what it claimed for a caller that went away meanwhile
/// is handed to `release`, which gives it back at once (visible again,
/// without counting the attempt where the engine can) instead of leaving it
/// leased until its lease ends. Without this a pop cut short while it waited
/// for a connection claimed later and hid the next message from every other
/// pop for a whole lease.
pub async fn detach_claim<T, W, WF, R, RF>(backend: &'static str, work: W, release: R) -> Result<T>
where
    T: Send + 'static,
    W: FnOnce(Presence) -> WF,
    WF: Future<Output = Result<T>> + Send + 'static,
    R: Fn(T) -> RF + Send + Sync + 'static,
    RF: Future<Output = ()> + Send + 'static,
{
    let presence = Presence::default();
    let release = Arc::new(release);
    let (tx, rx) = oneshot::channel();
    let claim = work(presence.clone());
    let give_back = Arc::clone(&release);
    tokio::spawn(async move {
        if let Err(Ok(value)) = tx.send(claim.await) {
            give_back(value).await;
        }
    });
    let mut waiting = Waiting {
        presence,
        rx: Some((rx, release)),
    };
    let (rx, _) = waiting.rx.as_mut().expect("set above");
    let out = rx.await;
    // Taken: nothing to give back when `waiting` drops now.
    waiting.rx = None;
    out.map_err(|_| QueueError::backend_error(backend, true, "a database task failed"))?
}

/// Gives back deliveries a claim leased for a pop that is gone (the
/// `release` of [`detach_claim`]): they share one token, so `run(token)` is
/// one statement making them visible again. Success wakes the queue's pops;
/// a failure only logs, since the rows come back when their lease ends.
pub async fn release_claimed<F, Fut>(
    backend: &'static str,
    queue: &str,
    claimed: &[Delivery],
    wake: &Notify,
    run: F,
) where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let Some(Ok((_, token))) = claimed
        .first()
        .map(|d| crate::decode_receipt(backend, &d.receipt))
    else {
        return;
    };
    match run(token.to_owned()).await {
        Ok(()) => wake.notify_waiters(),
        Err(error) => {
            tracing::warn!(backend, queue, %error, "could not release the messages of a pop cut short; they come back after their lease")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_to_the_end_when_the_caller_is_gone() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let call = detach("t", async move {
            tokio::task::yield_now().await;
            let _ = tx.send(7);
            Ok(())
        });
        // Dropped before its first poll finishes: the task still runs.
        let _ = tokio::time::timeout(std::time::Duration::ZERO, call).await;
        assert_eq!(rx.await.unwrap(), 7);
        assert!(
            detach("t", async { Err::<(), _>(stale_for_test()) })
                .await
                .is_err()
        );
    }

    fn stale_for_test() -> QueueError {
        QueueError::StaleReceipt { backend: "t" }
    }

    #[tokio::test]
    async fn a_claim_for_a_caller_gone_is_skipped_or_given_back() {
        use std::sync::atomic::AtomicUsize;
        use std::time::Duration;

        // Gone before the claim begins: the work sees it and claims nothing.
        let skipped = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = oneshot::channel::<()>();
        let seen = Arc::clone(&skipped);
        let call = detach_claim(
            "t",
            move |presence| async move {
                let _ = started_rx.await;
                seen.store(presence.is_gone(), Ordering::SeqCst);
                Ok(0)
            },
            |_: u32| async {},
        );
        let _ = tokio::time::timeout(Duration::ZERO, call).await;
        let _ = started_tx.send(());
        // Gone while the claim ran: what it claimed is released.
        let released = Arc::new(AtomicUsize::new(0));
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let count = Arc::clone(&released);
        let call = detach_claim(
            "t",
            move |_| async move {
                let _ = go_rx.await;
                Ok(3usize)
            },
            move |n| {
                let count = Arc::clone(&count);
                async move {
                    count.fetch_add(n, Ordering::SeqCst);
                }
            },
        );
        let _ = tokio::time::timeout(Duration::ZERO, call).await;
        let _ = go_tx.send(());
        for _ in 0..200 {
            if skipped.load(Ordering::SeqCst) && released.load(Ordering::SeqCst) == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(skipped.load(Ordering::SeqCst));
        assert_eq!(released.load(Ordering::SeqCst), 3);
        // A caller that waits gets the result, and nothing is released.
        let kept = detach_claim(
            "t",
            |_| async { Ok(5) },
            |_: i32| async { panic!("released a result the caller took") },
        );
        assert_eq!(kept.await.unwrap(), 5);
    }
}
