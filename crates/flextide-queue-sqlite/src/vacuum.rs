//! Giving a drained database's free pages back to the file system.
//!
//! SQLite never shrinks a file by itself: pages freed by acknowledged
//! messages go to a free list and are reused by later pushes. A database in
//! `auto_vacuum = INCREMENTAL` mode (new files opened with
//! [`PoolSettings::incremental_vacuum`](crate::PoolSettings::incremental_vacuum))
//! can return them with `PRAGMA incremental_vacuum`. A handle does so when a
//! pop finds its queue drained, at most once per [`EVERY`], in the
//! background: a bounded number of pages per pass, so no pass holds the
//! write lock long.

use std::{sync::Mutex, time::Duration};

use sqlx::SqlitePool;
use tokio::time::Instant;

/// Least time between two passes of one handle.
pub(crate) const EVERY: Duration = Duration::from_secs(30);
/// Most pages one pass frees (4 MiB with 4 KiB pages).
const PAGES_PER_PASS: i64 = 1024;
/// `PRAGMA auto_vacuum` of a file in incremental mode.
const INCREMENTAL: i64 = 2;

/// When a handle last looked.
#[derive(Debug, Default)]
pub(crate) struct Vacuum {
    last: Mutex<Option<Instant>>,
}

impl Vacuum {
    /// Called when a pop found nothing: starts a pass when one is due.
    pub(crate) fn drained(&self, pool: &SqlitePool) {
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            if let Err(e) = pass(&pool).await {
                tracing::debug!(error = %e, "sqlite: incremental vacuum skipped");
            }
        });
    }
}

/// One pass: nothing unless the file is in incremental mode and has free
/// pages.
pub(crate) async fn pass(pool: &SqlitePool) -> Result<u64, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&mut *conn)
        .await?;
    if mode != INCREMENTAL {
        return Ok(0);
    }
    let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
        .fetch_one(&mut *conn)
        .await?;
    if free == 0 {
        return Ok(0);
    }
    // The pragma frees pages as its rows are stepped: fetch them all.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA incremental_vacuum({PAGES_PER_PASS})"
    )))
    .fetch_all(&mut *conn)
    .await?;
    Ok(free.min(PAGES_PER_PASS) as u64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flextide_queue_core::{Message, QueueOptions, QueueProvider};

    use crate::{PoolSettings, SqliteQueue, connect_pool_with, migrate};

    async fn pages(pool: &SqlitePool) -> (i64, i64) {
        let count = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(pool)
            .await
            .unwrap();
        let free = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(pool)
            .await
            .unwrap();
        (count, free)
    }

    use super::*;

    /// A drained queue gives its pages back, in the background of a pop
    /// that found nothing, on a file opened with `incremental_vacuum`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_drained_queue_shrinks_the_file() {
        let dir = std::env::temp_dir().join(format!(
            "flextide-vacuum-{}-{}",
            std::process::id(),
            flextide_queue_core::backend::new_token()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("q.db").display());
        let settings = PoolSettings::default().incremental_vacuum(true);
        let pool = connect_pool_with(&url, &settings).await.unwrap();
        migrate(&pool).await.unwrap();
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(mode, INCREMENTAL, "a new file takes incremental mode");
        let q = SqliteQueue::from_pool(pool.clone(), "vacuum", QueueOptions::default()).unwrap();
        let body = vec![7u8; 8 * 1024];
        q.push_batch((0..400).map(|_| Message::new(body.clone())).collect())
            .await
            .unwrap();
        loop {
            let got = q.pop_batch(100, Duration::ZERO).await.unwrap();
            if got.is_empty() {
                break;
            }
            let receipts: Vec<_> = got.into_iter().map(|d| d.receipt).collect();
            q.delete_batch(&receipts).await.unwrap();
        }
        // The empty pop above started a pass; wait for it generously.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (before, _) = pages(&pool).await;
        loop {
            let (count, free) = pages(&pool).await;
            if free == 0 && count < 400 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no pages given back: {count} pages, {free} free (had {before})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        pool.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Without incremental mode a pass does nothing (and fails nothing).
    #[tokio::test]
    async fn no_pass_without_incremental_mode() {
        let pool = crate::connect_pool("sqlite::memory:").await.unwrap();
        assert_eq!(pass(&pool).await.unwrap(), 0);
    }
}
