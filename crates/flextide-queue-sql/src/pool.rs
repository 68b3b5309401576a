//! Opening a server engine's pool so that a server nobody listens for is
//! reported at once: `connection refused at HOST:PORT`, not `pool timed
//! out` after the pool's acquire timeout (10 s on PostgreSQL, 30 s on
//! MySQL), which sqlx spends retrying the refused connection.

use std::time::Duration;

use flextide_queue_core::{QueueError, Result};
use sqlx::{ConnectOptions, Connection, Database, Pool, pool::PoolOptions};

use crate::Dialect;

/// How long the first connection may take before the open gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a pool on `options` after one connection tried on its own, with
/// [`CONNECT_TIMEOUT`]: its failure (refused, unknown host, bad password) is
/// the open's error, mapped by `dialect` with `target` (`host:port`) named.
/// The pool keeps its own retries for the connections it opens later, so a
/// server that restarts under a running program costs waits, not errors.
pub async fn open_pool<DB: Database>(
    dialect: &Dialect,
    target: &str,
    pool: PoolOptions<DB>,
    options: <DB::Connection as Connection>::Options,
) -> Result<Pool<DB>> {
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Err(_) => {
            return Err(QueueError::connection(
                dialect.backend,
                format!(
                    "timed out connecting to {target} (no answer within {}s)",
                    CONNECT_TIMEOUT.as_secs()
                ),
            ));
        }
        Ok(Err(e)) => return Err(dialect.map_connect(target, e)),
        Ok(Ok(conn)) => {
            // The pool opens its own; this one only proved the way.
            let _ = conn.close().await;
        }
    }
    pool.connect_with(options)
        .await
        .map_err(|e| dialect.map_connect(target, e))
}
