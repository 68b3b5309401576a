//! Pops cut short leave nothing leased: a claim whose pop is gone before it
//! begins does not begin, and one whose pop went away meanwhile gives its
//! messages back at once (the shared `detach_claim`).
//!
//! Needs `FLEXTIDE_TEST_MYSQL_URL`; shown as ignored without it unless
//! `FLEXTIDE_TEST_REQUIRE` names `mysql`.

use std::time::{Duration, Instant};

use flextide_queue_conformance::integration_test;
use flextide_queue_mysql::{
    MySqlPoolOptions, MySqlQueue,
    core::{Message, QueueOptions, QueueProvider},
    drop_queue, migrate,
};

async fn dropped_pops_leave_the_next_message_to_the_next_pop(url: String) {
    // Few connections, so most of the pops below wait for one and are
    // dropped while waiting, or while their claim runs.
    let pool = MySqlPoolOptions::new()
        .max_connections(3)
        .connect(&url)
        .await
        .expect("connect");
    migrate(&pool).await.expect("migrate");
    let name = format!(
        "ft_cut_{}",
        &flextide_queue_mysql::core::backend::new_token()[..12]
    );
    let q = MySqlQueue::from_pool(pool.clone(), &name, QueueOptions::default()).unwrap();
    let mut pops = tokio::task::JoinSet::new();
    for i in 0..60u64 {
        let q = q.clone();
        pops.spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_millis(i % 4), q.pop(Duration::from_secs(30)))
                    .await;
        });
    }
    while pops.join_next().await.is_some() {}
    q.push(Message::new("next")).await.unwrap();
    let started = Instant::now();
    let delivery = q
        .pop(Duration::from_secs(2))
        .await
        .unwrap()
        .expect("the message pushed after the dropped pops, delivered within 2 s");
    assert_eq!(&delivery.message.payload[..], b"next");
    assert_eq!(
        delivery.attempt, 1,
        "a dropped pop's claim counted an attempt"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    q.delete(&delivery.receipt).await.unwrap();
    drop_queue(&pool, &name).await.unwrap();
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "mysql",
        "FLEXTIDE_TEST_MYSQL_URL",
        vec![integration_test!(
            dropped_pops_leave_the_next_message_to_the_next_pop
        )],
    )
}
