//! `PostgresScheduleLock` against a server. Needs
//! `FLEXTIDE_TEST_POSTGRES_URL` (ignored without it unless
//! `FLEXTIDE_TEST_REQUIRE` names postgres; an unreachable server fails).

mod common;

use std::sync::Arc;

use flextide_queue_core::{QueueOptions, QueueProvider};
use flextide_queue_postgres::{PostgresBackend, PostgresConfig};
use flextide_schedule_lock::PostgresScheduleLock;

async fn lease_row_contract(url: String) {
    let lock = PostgresScheduleLock::connect(&url)
        .await
        .expect("PostgreSQL reachable");
    let key = flextide_queue_conformance::unique_queue_name("schedule_lock");
    common::lock_contract(&lock, &key).await;
    forget(&url, &key).await;
}

/// Removes the lock's row.
async fn forget(url: &str, key: &str) {
    let backend = PostgresBackend::connect(url, PostgresConfig::default())
        .await
        .unwrap();
    flextide_queue_postgres::sqlx::query("DELETE FROM flextide_schedule_locks WHERE key = $1")
        .bind(key)
        .execute(backend.pool())
        .await
        .unwrap();
}

/// Three instances behind the lease row, pushing to a PostgreSQL queue.
async fn three_instances_behind_the_lease_row(url: String) {
    let lock = Arc::new(PostgresScheduleLock::connect(&url).await.unwrap());
    let name = flextide_queue_conformance::unique_queue_name("schedule_locked");
    let backend = PostgresBackend::connect(&url, PostgresConfig::default())
        .await
        .unwrap();
    backend.migrate().await.unwrap();
    let open = || {
        backend
            .queue(&name, QueueOptions::default())
            .map(|q| Arc::new(q) as Arc<dyn QueueProvider>)
    };
    common::three_instances_with_a_lock(lock, [open().unwrap(), open().unwrap(), open().unwrap()])
        .await;
    forget(&url, &format!("{name}/every-10s")).await;
}

/// Eight schedulers starting at once on a database without the table (a
/// schema of its own here) all get their lock: the table's creation is
/// serialised (two racing `CREATE TABLE IF NOT EXISTS` fail otherwise).
async fn schedulers_starting_at_once_create_the_table_once(url: String) {
    use flextide_queue_postgres::sqlx::{
        self, postgres::PgConnectOptions, postgres::PgPoolOptions,
    };
    let schema = flextide_queue_conformance::unique_queue_name("ftsl");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&admin)
        .await
        .unwrap();
    let options: PgConnectOptions = url.parse().unwrap();
    let options = options.options([("search_path", schema.as_str())]);
    let starts = (0..8).map(|_| {
        let options = options.clone();
        async move {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .unwrap();
            PostgresScheduleLock::new(pool).await.map(drop)
        }
    });
    let results = futures::future::join_all(starts).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&admin)
    .await
    .unwrap();
    for r in results {
        r.expect("every scheduler gets its lock");
    }
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "postgres",
        "FLEXTIDE_TEST_POSTGRES_URL",
        vec![
            flextide_queue_conformance::integration_test!(lease_row_contract),
            flextide_queue_conformance::integration_test!(three_instances_behind_the_lease_row),
            flextide_queue_conformance::integration_test!(
                schedulers_starting_at_once_create_the_table_once
            ),
        ],
    )
}
