//! Stats and purge find the delay holding queues another client declared,
//! through the index `<queue>.qhold.index`, without probing the ladder of
//! buckets (whose misses close channels and make lapin log errors).
//! Needs `FLEXTIDE_TEST_RABBITMQ_URL` (shown as ignored without it unless
//! `FLEXTIDE_TEST_REQUIRE` names rabbitmq).

use std::time::Duration;

use flextide_queue_conformance::integration_test;
use flextide_queue_core::{Message, QueueOptions, QueueProvider};
use flextide_queue_rabbitmq::RabbitMq;

async fn another_client_sees_and_purges_delayed_messages(url: String) {
    let name = flextide_queue_conformance::unique_queue_name("delay_index");
    let pusher = RabbitMq::new(&url).unwrap();
    let p = pusher.open(&name, QueueOptions::default()).await.unwrap();
    // Two buckets, one of them twice (by two handles): the index lists each once.
    p.push(Message::new("a").with_delay(Duration::from_secs(600)))
        .await
        .unwrap();
    p.push(Message::new("b").with_delay(Duration::from_secs(3600)))
        .await
        .unwrap();
    let p2 = pusher.open(&name, QueueOptions::default()).await.unwrap();
    p2.push(Message::new("c").with_delay(Duration::from_secs(600)))
        .await
        .unwrap();

    // A client that never pushed a delayed message.
    let other = RabbitMq::new(&url).unwrap();
    let q = other.open(&name, QueueOptions::default()).await.unwrap();
    for _ in 0..2 {
        // Read twice: the index is put back after each read.
        let stats = q.stats().await.unwrap();
        assert_eq!(stats.delayed, 3, "{stats:?}");
    }
    assert_eq!(q.purge().await.unwrap(), 3);
    assert_eq!(p.stats().await.unwrap().delayed, 0);

    drop((p, p2, q));
    pusher.drop_queue(&name).await.unwrap();
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "rabbitmq",
        "FLEXTIDE_TEST_RABBITMQ_URL",
        vec![integration_test!(another_client_sees_and_purges_delayed_messages).threads(2)],
    )
}
