//! Three scheduler instances against Redis over a simulated hour: exactly
//! one task per slot (issue 21). Needs `FLEXTIDE_TEST_REDIS_URL` (shown as
//! ignored without it unless `FLEXTIDE_TEST_REQUIRE` names redis; an
//! unreachable server fails).

#[path = "support/schedule.rs"]
mod support;

use std::sync::Arc;

use flextide_queue_core::{QueueOptions, QueueProvider};
use flextide_queue_redis::{RedisBackend, RedisConfig};

async fn three_instances_one_task_per_slot(url: String) {
    let name = flextide_queue_conformance::unique_queue_name("schedule");
    support::three_instances_over_a_simulated_hour(|| {
        let (url, name) = (url.clone(), name.clone());
        async move {
            // Each instance its own connection, as on its own host.
            let backend = RedisBackend::connect(RedisConfig::new(url))
                .await
                .expect("Redis reachable at FLEXTIDE_TEST_REDIS_URL");
            Arc::new(backend.open(&name, QueueOptions::default()).await.unwrap())
                as Arc<dyn QueueProvider>
        }
    })
    .await;
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "redis",
        "FLEXTIDE_TEST_REDIS_URL",
        vec![flextide_queue_conformance::integration_test!(
            three_instances_one_task_per_slot
        )],
    )
}
