//! The connector's operations by URL: opening a queue without creating
//! anything, migrating, listing queues. Each opens a pool of its own.

use flextide_queue_core::{QueueOptions, Result};
use flextide_queue_sql::applied_steps;

use crate::{MIGRATIONS, MySqlQueue, error::map_err, migrate::migrate_steps, queue::connect_pool};

/// Opening a queue creates nothing on MySQL (queues are rows).
pub(crate) async fn open_existing(
    url: &str,
    queue: &str,
    options: QueueOptions,
) -> Result<MySqlQueue> {
    MySqlQueue::connect(url, queue, options).await
}

pub(crate) async fn migrate(url: &str) -> Result<Vec<String>> {
    let pool = connect_pool(url).await?;
    let applied = migrate_steps(&pool).await;
    pool.close().await;
    Ok(applied_steps(MIGRATIONS, &applied?))
}

pub(crate) async fn list_queues(url: &str) -> Result<Vec<String>> {
    flextide_queue_sql::list_queues(connect_pool(url).await?, map_err).await
}
