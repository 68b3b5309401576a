//! The conformance suite against `sqlite::memory:`: one in-memory database
//! on one shared connection, every queue handle opened on that pool.
//!
//! Run with: cargo test -p flextide-queue-sqlite --test conformance_memory

mod common;

use flextide_queue_sql::test_support::{LEFTOVERS_SQL, leftover_rows};

use std::sync::Arc;

use flextide_queue_conformance::{
    Connect, ForeignEntry, Harness, HarnessSettings, async_trait,
    core::{QueueError, QueueOptions, QueueProvider},
};
use flextide_queue_sqlite::{SqlitePool, SqliteQueue, connect_pool, drop_queue, migrate};

struct MemoryHarness {
    pool: SqlitePool,
}

#[async_trait]
impl Harness for MemoryHarness {
    async fn open(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>, QueueError> {
        Ok(Arc::new(SqliteQueue::from_pool(
            self.pool.clone(),
            name,
            options,
        )?))
    }

    async fn cleanup(&self, name: &str) -> Result<(), QueueError> {
        drop_queue(&self.pool, name).await.map(drop)
    }

    async fn leftovers(&self, name: &str) -> Result<Option<Vec<String>>, QueueError> {
        let counts: (i64, i64, i64) = flextide_queue_sqlite::sqlx::query_as(LEFTOVERS_SQL)
            .bind(name)
            .bind(name)
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| QueueError::backend_error("sqlite", false, e))?;
        Ok(Some(leftover_rows(counts)))
    }

    async fn write_foreign(
        &self,
        queue: &Arc<dyn QueueProvider>,
        entry: ForeignEntry,
    ) -> Result<bool, QueueError> {
        common::write_foreign(&self.pool, queue.queue_name(), entry).await
    }

    fn settings(&self) -> HarnessSettings {
        common::settings()
    }
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run("sqlite-memory", || async {
        let pool = match connect_pool("sqlite::memory:").await {
            Ok(pool) => pool,
            Err(e) => return Connect::Failed(format!("cannot open an in-memory database: {e}")),
        };
        if let Err(e) = migrate(&pool).await {
            return Connect::Failed(format!("cannot create the tables: {e}"));
        }
        Connect::Ready(MemoryHarness { pool })
    })
}
