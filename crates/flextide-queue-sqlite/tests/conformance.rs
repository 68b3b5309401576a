//! The conformance suite against a temporary SQLite *file*. Every queue
//! handle the suite opens gets a pool of its own on the same file, so the
//! suite's "second consumer" cases also exercise several pools (as several
//! processes would) sharing one database.
//!
//! Run with: cargo test -p flextide-queue-sqlite --test conformance

mod common;

use flextide_queue_sql::test_support::{LEFTOVERS_SQL, leftover_rows};

use std::sync::Arc;

use flextide_queue_conformance::{
    Connect, ForeignEntry, Harness, HarnessSettings, async_trait,
    core::{QueueError, QueueOptions, QueueProvider},
};
use flextide_queue_sqlite::{SqlitePool, SqliteQueue, connect_pool, drop_queue, migrate};

struct FileHarness {
    url: String,
    admin: SqlitePool,
}

#[async_trait]
impl Harness for FileHarness {
    async fn open(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>, QueueError> {
        Ok(Arc::new(
            SqliteQueue::connect(&self.url, name, options).await?,
        ))
    }

    async fn cleanup(&self, name: &str) -> Result<(), QueueError> {
        drop_queue(&self.admin, name).await.map(drop)
    }

    async fn leftovers(&self, name: &str) -> Result<Option<Vec<String>>, QueueError> {
        let counts: (i64, i64, i64) = flextide_queue_sqlite::sqlx::query_as(LEFTOVERS_SQL)
            .bind(name)
            .bind(name)
            .bind(name)
            .fetch_one(&self.admin)
            .await
            .map_err(|e| QueueError::backend_error("sqlite", false, e))?;
        Ok(Some(leftover_rows(counts)))
    }

    async fn write_foreign(
        &self,
        queue: &Arc<dyn QueueProvider>,
        entry: ForeignEntry,
    ) -> Result<bool, QueueError> {
        common::write_foreign(&self.admin, queue.queue_name(), entry).await
    }

    fn settings(&self) -> HarnessSettings {
        common::settings()
    }
}

fn main() -> std::process::ExitCode {
    let db = common::TempDb::new("conformance");
    let url = db.url();
    let code = flextide_queue_conformance::run("sqlite", || async move {
        // SQLite needs no server: always ready, unless the file cannot be made.
        let admin = match connect_pool(&url).await {
            Ok(pool) => pool,
            Err(e) => return Connect::Failed(format!("cannot open a temporary database: {e}")),
        };
        if let Err(e) = migrate(&admin).await {
            return Connect::Failed(format!("cannot create the tables: {e}"));
        }
        Connect::Ready(FileHarness { url, admin })
    });
    drop(db);
    code
}
