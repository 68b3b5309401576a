//! `RedisScheduleLock` against a server. Needs `FLEXTIDE_TEST_REDIS_URL`
//! (ignored without it unless `FLEXTIDE_TEST_REQUIRE` names redis; an
//! unreachable server fails).

mod common;

use std::sync::Arc;

use flextide_queue_core::{QueueOptions, QueueProvider};
use flextide_queue_redis::{RedisBackend, RedisConfig};
use flextide_schedule_lock::RedisScheduleLock;

async fn redis_lock_contract(url: String) {
    let lock = RedisScheduleLock::connect(&url)
        .await
        .expect("Redis reachable");
    let key = flextide_queue_conformance::unique_queue_name("schedule_lock");
    common::lock_contract(&lock, &key).await;
    forget(&url, &key).await;
}

/// Removes the lock's keys.
async fn forget(url: &str, key: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(format!("flextide-schedule:{{{key}}}:lock"))
        .arg(format!("flextide-schedule:{{{key}}}:state"))
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// Three instances behind the Redis lock, pushing to a Redis queue.
async fn three_instances_behind_the_redis_lock(url: String) {
    let lock = Arc::new(RedisScheduleLock::connect(&url).await.unwrap());
    let name = flextide_queue_conformance::unique_queue_name("schedule_locked");
    let mut handles = Vec::new();
    for _ in 0..3 {
        let backend = RedisBackend::connect(RedisConfig::new(url.clone()))
            .await
            .unwrap();
        handles.push(
            Arc::new(backend.open(&name, QueueOptions::default()).await.unwrap())
                as Arc<dyn QueueProvider>,
        );
    }
    common::three_instances_with_a_lock(lock, handles.try_into().unwrap()).await;
    forget(&url, &format!("{name}/every-10s")).await;
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "redis",
        "FLEXTIDE_TEST_REDIS_URL",
        vec![
            flextide_queue_conformance::integration_test!(redis_lock_contract),
            flextide_queue_conformance::integration_test!(three_instances_behind_the_redis_lock),
        ],
    )
}
