//! The connector's operations by URL: opening a queue without creating
//! anything, migrating, listing queues. Each opens a pool of its own.

use flextide_queue_core::{QueueError, QueueOptions, Result};
use flextide_queue_sql::applied_steps;
use sqlx::SqlitePool;

use crate::{
    BACKEND, MIGRATIONS, PoolSettings, SqliteQueue, connect::Target, connect_pool, error,
    migrate::migrate_steps,
};

/// A pool on the database of `url` only if it exists: never creates the
/// file (whatever the URL's `mode`), never migrates.
async fn existing_pool(url: &str) -> Result<SqlitePool> {
    let target = Target::parse(url)?.existing_only();
    if let Some(missing) = target.missing_file() {
        return Err(QueueError::configuration(
            BACKEND,
            format!(
                "no SQLite database at {}: nothing was pushed there yet (a push or `flextide migrate` creates it)",
                missing.display()
            ),
        ));
    }
    crate::connect::open_target(target, &PoolSettings::default()).await
}

pub(crate) async fn open_existing(
    url: &str,
    queue: &str,
    options: QueueOptions,
) -> Result<SqliteQueue> {
    flextide_queue_core::validate_queue_name(queue)?;
    SqliteQueue::from_pool(existing_pool(url).await?, queue, options)
}

pub(crate) async fn migrate(url: &str) -> Result<Vec<String>> {
    let pool = connect_pool(url).await?;
    let applied = migrate_steps(&pool).await;
    pool.close().await;
    Ok(applied_steps(MIGRATIONS, &applied?))
}

pub(crate) async fn list_queues(url: &str) -> Result<Vec<String>> {
    flextide_queue_sql::list_queues(existing_pool(url).await?, error::map).await
}
