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

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "postgres",
        "FLEXTIDE_TEST_POSTGRES_URL",
        vec![
            flextide_queue_conformance::integration_test!(lease_row_contract),
            flextide_queue_conformance::integration_test!(three_instances_behind_the_lease_row),
        ],
    )
}
