//! Transactions and the retries InnoDB lock conflicts call for.

use std::time::Duration;

use flextide_queue_core::Result;
use sqlx::Connection;
use sqlx::Transaction;
use sqlx::mysql::{MySql, MySqlConnection, MySqlPool};

use crate::error::{is_lock_conflict, map_err};

/// Runs `op` again, up to four more times after a short random pause, when
/// InnoDB chose it as a deadlock victim or its lock wait timed out. Each
/// call of `op` is one transaction (or one autocommit statement) that the
/// failure rolled back, so nothing of it took effect and a repeat is safe.
/// Concurrent pushes, claims and batch deletes do deadlock now and then on
/// InnoDB; callers should not see that.
pub(crate) async fn retry_lock_conflicts<T, F, Fut>(mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 1u64;
    loop {
        match op().await {
            Err(e) if attempt < 5 && is_lock_conflict(&e) => {
                // Random pause (std's per-instance hasher keys are random).
                use std::hash::{BuildHasher, Hasher};
                let noise = std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish();
                tokio::time::sleep(Duration::from_millis(1 + noise % (5 * attempt))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A short read-committed transaction: no gap locks, so claims never hold
/// up pushes, and rows a claim skips are not kept locked.
pub(crate) async fn begin(pool: &MySqlPool) -> Result<Transaction<'static, MySql>> {
    pool.begin_with(READ_COMMITTED).await.map_err(map_err)
}

/// [`begin`] on a connection the caller already holds.
pub(crate) async fn begin_on(conn: &mut MySqlConnection) -> Result<Transaction<'_, MySql>> {
    conn.begin_with(READ_COMMITTED).await.map_err(map_err)
}

const READ_COMMITTED: &str = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION";
