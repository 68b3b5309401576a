//! Three scheduler instances against PostgreSQL over a simulated hour:
//! exactly one task per slot (issue 21). Needs `FLEXTIDE_TEST_POSTGRES_URL`
//! (shown as ignored without it unless `FLEXTIDE_TEST_REQUIRE` names
//! postgres; an unreachable server fails).

#[path = "support/schedule.rs"]
mod support;

use std::sync::Arc;

use flextide_queue_core::{QueueOptions, QueueProvider};
use flextide_queue_postgres::{PostgresBackend, PostgresConfig};

async fn three_instances_one_task_per_slot(url: String) {
    let name = flextide_queue_conformance::unique_queue_name("schedule");
    let backend = PostgresBackend::connect(&url, PostgresConfig::default())
        .await
        .expect("PostgreSQL reachable at FLEXTIDE_TEST_POSTGRES_URL");
    backend.migrate().await.unwrap();
    support::three_instances_over_a_simulated_hour(|| {
        let (url, name) = (url.clone(), name.clone());
        async move {
            // Each instance its own pool, as on its own host.
            let backend = PostgresBackend::connect(&url, PostgresConfig::default())
                .await
                .unwrap();
            Arc::new(backend.queue(&name, QueueOptions::default()).unwrap())
                as Arc<dyn QueueProvider>
        }
    })
    .await;
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "postgres",
        "FLEXTIDE_TEST_POSTGRES_URL",
        vec![flextide_queue_conformance::integration_test!(
            three_instances_one_task_per_slot
        )],
    )
}
