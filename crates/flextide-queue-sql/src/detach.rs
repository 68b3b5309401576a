//! Cancel-safe transactions.

use std::future::Future;

use flextide_queue_core::{QueueError, Result};

/// Runs `work` (one transaction, or one statement sqlx must not drop
/// half-way) in a task of its own and waits for it.
///
/// sqlx is not cancellation-safe: a BEGIN dropped after the server ran it
/// leaves the pooled connection inside a transaction sqlx does not know of
/// (a later push on it returns Ok and never commits), a statement dropped
/// half-written can hang the connection's return to the pool, and SQLite
/// closes the connection, which takes an in-memory database with it. Run to
/// the end here, the work commits or rolls back whatever happens to the
/// caller (contract clause 13); what a cut-short pop leased comes back when
/// its lease ends.
pub async fn detach<T, F>(backend: &'static str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    tokio::spawn(work).await.map_err(|e| {
        QueueError::backend_error(backend, true, format!("a database task failed: {e}"))
    })?
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
}
