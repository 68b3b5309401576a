//! The connector's operations by URL: opening a queue without creating
//! anything, migrating, listing queues. Each opens a pool of its own.

use flextide_queue_core::{QueueOptions, Result};
use flextide_queue_sql::applied_steps;

use crate::{
    MIGRATIONS, PostgresBackend, PostgresConfig, PostgresQueue, error::map_err, migrate_with,
};

/// Opening a queue creates nothing on PostgreSQL (queues are rows).
pub(crate) async fn open_existing(
    url: &str,
    queue: &str,
    options: QueueOptions,
) -> Result<PostgresQueue> {
    PostgresQueue::connect(url, queue, options).await
}

pub(crate) async fn migrate(url: &str) -> Result<Vec<String>> {
    let backend = PostgresBackend::connect(url, PostgresConfig::default()).await?;
    let applied = migrate_with(backend.pool(), backend.config()).await;
    backend.pool().close().await;
    Ok(applied_steps(MIGRATIONS, &applied?))
}

pub(crate) async fn list_queues(url: &str) -> Result<Vec<String>> {
    let backend = PostgresBackend::connect(url, PostgresConfig::default()).await?;
    flextide_queue_sql::list_queues(backend.pool().clone(), map_err).await
}
