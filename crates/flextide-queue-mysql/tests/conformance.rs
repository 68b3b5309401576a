//! The delivery-contract suite against MySQL / MariaDB.
//!
//! `FLEXTIDE_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test cargo test -p flextide-queue-mysql --test conformance`

use std::{sync::Arc, time::Duration};

use flextide_queue_conformance::{
    Connect, ForeignEntry, Harness, HarnessSettings, Server, async_trait,
    core::{QueueError, QueueOptions, QueueProvider},
};
use flextide_queue_mysql::{MySqlPool, MySqlPoolOptions, MySqlQueue, drop_queue, migrate, sqlx};
use flextide_queue_sql::test_support::{
    LEFTOVERS_SQL, PerQueue, foreign_row, harness_settings, leftover_rows, locate,
};

const VAR: &str = "FLEXTIDE_TEST_MYSQL_URL";

struct MySqlHarness {
    /// The server: from the environment, or a container kept alive here.
    _server: flextide_queue_conformance::Located,
    url: String,
    admin: MySqlPool,
    /// Server-side ids of the connections each queue's pool opened, so
    /// `disrupt` can KILL them from another connection.
    connections: Arc<PerQueue<u64>>,
}

#[async_trait]
impl Harness for MySqlHarness {
    async fn open(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>, QueueError> {
        // Validate before connecting, so invalid names fail the same way
        // whatever the pool does.
        flextide_queue_mysql::core::validate_queue_name(name)?;
        let ids = self.connections.clone();
        let key = name.to_owned();
        let pool = MySqlPoolOptions::new()
            .max_connections(6)
            .idle_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                let ids = ids.clone();
                let key = key.clone();
                Box::pin(async move {
                    let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
                        .fetch_one(&mut *conn)
                        .await?;
                    ids.add(&key, id);
                    Ok(())
                })
            })
            .connect(&self.url)
            .await
            .map_err(|e| QueueError::connection("mysql", e))?;
        Ok(Arc::new(MySqlQueue::from_pool(pool, name, options)?))
    }

    async fn cleanup(&self, name: &str) -> Result<(), QueueError> {
        self.connections.forget(name);
        drop_queue(&self.admin, name).await.map(|_| ())
    }

    async fn disrupt(&self, queue: &Arc<dyn QueueProvider>) -> Result<bool, QueueError> {
        for id in self.connections.of(queue.queue_name()) {
            // KILL takes no placeholder; the id is a number we read ourselves.
            // An id already gone (error 1094) is fine.
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("KILL {id}")))
                .execute(&self.admin)
                .await;
        }
        Ok(true)
    }

    async fn leftovers(&self, name: &str) -> Result<Option<Vec<String>>, QueueError> {
        let counts: (i64, i64, i64) = sqlx::query_as(LEFTOVERS_SQL)
            .bind(name)
            .bind(name)
            .bind(name)
            .fetch_one(&self.admin)
            .await
            .map_err(|e| QueueError::backend_error("mysql", false, e))?;
        Ok(Some(leftover_rows(counts)))
    }

    async fn write_foreign(
        &self,
        queue: &Arc<dyn QueueProvider>,
        entry: ForeignEntry,
    ) -> Result<bool, QueueError> {
        // What another producer writes with plain SQL: no id (the empty
        // string), no headers, its times on the database clock.
        let Some((payload, headers)) = foreign_row(entry) else {
            return Ok(false);
        };
        sqlx::query(
            "INSERT INTO flextide_queue_messages (queue, id, payload, headers, enqueued_at, visible_at)
             VALUES (?, '', ?, ?, CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED), CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED))",
        )
        .bind(queue.queue_name())
        .bind(payload)
        .bind(headers.unwrap_or(""))
        .execute(&self.admin)
        .await
        .map_err(|e| QueueError::backend_error("mysql", false, e))?;
        Ok(true)
    }

    fn settings(&self) -> HarnessSettings {
        harness_settings(true)
    }
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run("mysql", || async {
        let located = match locate(VAR, Server::MariaDb).await {
            Ok(located) => located,
            Err(not_configured) => return not_configured,
        };
        let url = located.url.clone();
        let admin = match MySqlPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
        {
            Ok(pool) => pool,
            // sqlx's configuration errors may quote the URL: never show them.
            Err(sqlx::Error::Configuration(_)) => {
                return Connect::Failed(format!("{VAR} is not a valid MySQL URL"));
            }
            Err(e) => {
                return Connect::Failed(format!("cannot connect to the server in {VAR}: {e}"));
            }
        };
        if let Err(e) = migrate(&admin).await {
            return Connect::Failed(format!("migrate failed: {e}"));
        }
        Connect::Ready(MySqlHarness {
            _server: located,
            url,
            admin,
            connections: Arc::default(),
        })
    })
}
