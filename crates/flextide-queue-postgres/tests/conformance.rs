//! The conformance suite against PostgreSQL.
//!
//! Run with: `FLEXTIDE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p flextide-queue-postgres --test conformance`

use std::{process::ExitCode, sync::Arc};

use flextide_queue_conformance::{
    Connect, ForeignEntry, Harness, HarnessSettings, Server, async_trait,
};
use flextide_queue_core::{QueueError, QueueOptions, QueueProvider};
use flextide_queue_postgres::{PostgresBackend, PostgresConfig, sqlx};
use flextide_queue_sql::test_support::{
    LEFTOVERS_SQL_PG, PerQueue, foreign_row, harness_settings, leftover_rows, locate,
};

const URL_VAR: &str = "FLEXTIDE_TEST_POSTGRES_URL";

struct PgHarness {
    /// The server: from the environment, or a container kept alive here.
    _server: flextide_queue_conformance::Located,
    url: String,
    /// Migrates, cleans up and kills connections; never disrupted itself.
    admin: PostgresBackend,
    /// The application_name of every pool opened per queue name, so that
    /// `disrupt` kills exactly the connections of one case's queue, not
    /// those of cases running beside it.
    pools: PerQueue<String>,
}

#[async_trait]
impl Harness for PgHarness {
    async fn open(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>, QueueError> {
        flextide_queue_core::validate_queue_name(name)?;
        // Each handle gets its own small pool (and listener), tagged so
        // that disrupt can find it.
        let app_name = format!(
            "flextide-conformance-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let config = PostgresConfig::default()
            .application_name(&app_name)
            .max_connections(6);
        let backend = PostgresBackend::connect(&self.url, config).await?;
        self.pools.add(name, app_name);
        Ok(Arc::new(backend.queue(name, options)?))
    }

    async fn cleanup(&self, name: &str) -> Result<(), QueueError> {
        self.pools.forget(name);
        self.admin.drop_queue(name).await.map(drop)
    }

    async fn leftovers(&self, name: &str) -> Result<Option<Vec<String>>, QueueError> {
        let counts: (i64, i64, i64) = sqlx::query_as(LEFTOVERS_SQL_PG)
            .bind(name)
            .fetch_one(self.admin.pool())
            .await
            .map_err(|e| QueueError::backend_error("postgres", false, e))?;
        Ok(Some(leftover_rows(counts)))
    }

    async fn disrupt(&self, queue: &Arc<dyn QueueProvider>) -> Result<bool, QueueError> {
        let names = self.pools.of(queue.queue_name());
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = ANY($1) AND pid <> pg_backend_pid()",
        )
        .bind(names)
        .execute(self.admin.pool())
        .await
        .map_err(|e| QueueError::backend_error("postgres", true, e))?;
        Ok(true)
    }

    async fn write_foreign(
        &self,
        queue: &Arc<dyn QueueProvider>,
        entry: ForeignEntry,
    ) -> Result<bool, QueueError> {
        // What another producer would write with plain SQL: the queue and a
        // body, nothing else (schema version 2 fills in the rest).
        let insert = match foreign_row(entry) {
            Some((payload, None)) => {
                sqlx::query("INSERT INTO flextide_queue_messages (queue, payload) VALUES ($1, $2)")
                    .bind(queue.queue_name().to_owned())
                    .bind(payload)
            }
            Some((payload, Some(headers))) => sqlx::query(
                "INSERT INTO flextide_queue_messages (queue, payload, headers) VALUES ($1, $2, $3)",
            )
            .bind(queue.queue_name().to_owned())
            .bind(payload)
            .bind(headers),
            None => return Ok(false),
        };
        insert
            .execute(self.admin.pool())
            .await
            .map_err(|e| QueueError::backend_error("postgres", false, e))?;
        Ok(true)
    }

    fn settings(&self) -> HarnessSettings {
        harness_settings(true)
    }
}

async fn connect() -> Connect<PgHarness> {
    let located = match locate(URL_VAR, Server::Postgres).await {
        Ok(located) => located,
        Err(not_configured) => return not_configured,
    };
    let url = located.url.clone();
    let config = PostgresConfig::default()
        .max_connections(4)
        .migrate_on_connect(true);
    match PostgresBackend::connect(&url, config).await {
        Ok(admin) => Connect::Ready(PgHarness {
            _server: located,
            url,
            admin,
            pools: PerQueue::default(),
        }),
        Err(e) => Connect::Failed(format!("connecting to {URL_VAR} failed: {e}")),
    }
}

fn main() -> ExitCode {
    flextide_queue_conformance::run("postgres", connect)
}
