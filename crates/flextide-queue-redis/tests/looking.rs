//! Looking at queues through the connector without creating any: listing
//! the queues under a prefix, and opening one for stats, peek and dead
//! letters (the `flextide stats | peek | dlq list | queues` commands).
//!
//! Run with: `FLEXTIDE_TEST_REDIS_URL=redis://127.0.0.1:6379/ cargo test -p flextide-queue-redis --test looking`

use flextide_queue_conformance::{integration_test, unique_queue_name};
use flextide_queue_core::{Message, QueueOptions, QueueProvider};
use flextide_queue_redis::{RedisBackend, RedisConfig};

async fn backend(url: &str, prefix: &str) -> RedisBackend {
    RedisBackend::connect(RedisConfig::new(url).key_prefix(prefix))
        .await
        .unwrap()
}

/// Keys under `prefix`.
async fn keys(url: &str, prefix: &str) -> Vec<String> {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap()
}

async fn open_existing_creates_nothing(url: String) {
    let prefix = unique_queue_name("look");
    let b = backend(&url, &prefix).await;
    let q = b.open_existing("nobody", QueueOptions::default()).unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!(
        (s.depth, s.in_flight, s.delayed, s.dead_lettered),
        (0, 0, 0, 0)
    );
    assert!(q.peek(10).await.unwrap().is_empty());
    assert!(q.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(keys(&url, &prefix).await, Vec::<String>::new());
    assert!(b.queue_names().await.unwrap().is_empty());
}

async fn queue_names_lists_queues_with_messages_or_dead_letters(url: String) {
    let prefix = unique_queue_name("list");
    let b = backend(&url, &prefix).await;
    let a = b.open("alpha", QueueOptions::default()).await.unwrap();
    a.push(Message::new("x")).await.unwrap();
    let z = b.open("zulu", QueueOptions::default()).await.unwrap();
    z.push(Message::new("y")).await.unwrap();
    let d = z
        .pop(std::time::Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    z.dead_letter(&d.receipt, "test").await.unwrap();
    assert_eq!(b.queue_names().await.unwrap(), ["alpha", "zulu"]);
    // Seen through open_existing with its counts.
    let s = b
        .open_existing("zulu", QueueOptions::default())
        .unwrap()
        .stats()
        .await
        .unwrap();
    assert_eq!((s.depth, s.dead_lettered), (0, 1));
    a.drop_queue().await.unwrap();
    z.drop_queue().await.unwrap();
}

/// `flextide queue create` on Redis makes the stream and group at once (an
/// empty, listed queue); doing it again changes nothing.
async fn create_queue_makes_a_listed_empty_queue(url: String) {
    let prefix = unique_queue_name("create");
    let b = backend(&url, &prefix).await;
    b.create_queue("made").await.unwrap();
    b.create_queue("made").await.unwrap();
    assert_eq!(b.queue_names().await.unwrap(), ["made"]);
    let q = b.open("made", QueueOptions::default()).await.unwrap();
    assert_eq!(q.stats().await.unwrap().depth, 0);
    q.push(Message::new("x")).await.unwrap();
    let d = q
        .pop(std::time::Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    q.delete(&d.receipt).await.unwrap();
    q.drop_queue().await.unwrap();
    assert_eq!(keys(&url, &prefix).await, Vec::<String>::new());
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "redis",
        "FLEXTIDE_TEST_REDIS_URL",
        vec![
            integration_test!(open_existing_creates_nothing),
            integration_test!(queue_names_lists_queues_with_messages_or_dead_letters),
            integration_test!(create_queue_makes_a_listed_empty_queue),
        ],
    )
}
