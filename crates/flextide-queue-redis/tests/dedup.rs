//! Unique pushes on Redis beyond the conformance suite: the keys that
//! remember dedup ids (`:u`, `:e`) expire with their windows, forget ended
//! windows as pushes go on, take any id, and go with `drop_queue`.
//!
//! Run with: `FLEXTIDE_TEST_REDIS_URL=redis://127.0.0.1:6379/ cargo test -p flextide-queue-redis --test dedup`

use std::time::Duration;

use flextide_queue_conformance::{integration_test, unique_queue_name};
use flextide_queue_core::{Message, Pushed, QueueOptions, QueueProvider};
use flextide_queue_redis::{RedisBackend, RedisConfig, RedisQueue};

async fn open(url: &str, window: Duration) -> (RedisBackend, RedisQueue) {
    let backend = RedisBackend::connect(RedisConfig::new(url)).await.unwrap();
    let queue = backend
        .open(
            &unique_queue_name("dedup"),
            QueueOptions::default().dedup_window(window),
        )
        .await
        .unwrap();
    (backend, queue)
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn query<T: redis::FromRedisValue>(url: &str, cmd: &str, key: &str) -> T {
    redis::cmd(cmd)
        .arg(key)
        .query_async(&mut raw(url).await)
        .await
        .unwrap()
}

fn key(q: &RedisQueue, part: &str) -> String {
    format!("flextide:{{{}}}:{part}", q.queue_name())
}

/// Both keys expire when the last window they hold ends, and `drop_queue`
/// removes them with the rest of the queue.
async fn keys_expire_with_the_window_and_go_with_drop_queue(url: String) {
    let window = Duration::from_secs(60);
    let (_b, q) = open(&url, window).await;
    q.push(Message::new("a").with_dedup_id("k")).await.unwrap();
    for part in ["u", "e"] {
        let ttl: i64 = query(&url, "PTTL", &key(&q, part)).await;
        assert!(
            ttl > 0 && ttl <= window.as_millis() as i64,
            "{part}: PTTL {ttl}"
        );
    }
    let held: String = redis::cmd("HGET")
        .arg(key(&q, "u"))
        .arg("k")
        .query_async(&mut raw(&url).await)
        .await
        .unwrap();
    assert!(!held.is_empty());
    q.drop_queue().await.unwrap();
    for part in ["u", "e", "s"] {
        let exists: i64 = query(&url, "EXISTS", &key(&q, part)).await;
        assert_eq!(exists, 0, "{part} after drop_queue");
    }
}

/// A push with a dedup id forgets ids whose window ended, so the keys stay
/// the size of one window's pushes; an ended id is a new message again.
async fn ended_windows_are_forgotten(url: String) {
    let (_b, q) = open(&url, Duration::from_millis(300)).await;
    for k in ["a", "b"] {
        q.push(Message::new(k).with_dedup_id(k)).await.unwrap();
    }
    assert_eq!(query::<i64>(&url, "HLEN", &key(&q, "u")).await, 2);
    tokio::time::sleep(Duration::from_millis(600)).await;
    q.push(Message::new("c").with_dedup_id("c")).await.unwrap();
    assert_eq!(query::<i64>(&url, "HLEN", &key(&q, "u")).await, 1);
    assert_eq!(query::<i64>(&url, "ZCARD", &key(&q, "e")).await, 1);
    let again = Message::new("a again").with_dedup_id("a");
    assert_eq!(
        q.push_unique(again.clone()).await.unwrap(),
        Pushed::Enqueued(again.id)
    );
    q.drop_queue().await.unwrap();
}

/// Any text is a dedup id: braces (a hash tag of another slot, were it a
/// key), spaces, line breaks, non-ASCII; and it travels with the message.
async fn any_text_is_a_dedup_id(url: String) {
    let (_b, q) = open(&url, Duration::from_secs(60)).await;
    let odd = "{other}:x y\nü";
    let first = Message::new("first").with_dedup_id(odd);
    assert_eq!(
        q.push_unique(first.clone()).await.unwrap(),
        Pushed::Enqueued(first.id.clone())
    );
    assert_eq!(
        q.push_unique(Message::new("second").with_dedup_id(odd))
            .await
            .unwrap(),
        Pushed::Duplicate(first.id.clone())
    );
    let d = q
        .pop(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the first");
    assert_eq!(d.message.id, first.id);
    assert_eq!(d.message.dedup_id.as_deref(), Some(odd));
    q.delete(&d.receipt).await.unwrap();
    q.drop_queue().await.unwrap();
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "redis",
        "FLEXTIDE_TEST_REDIS_URL",
        vec![
            integration_test!(keys_expire_with_the_window_and_go_with_drop_queue),
            integration_test!(ended_windows_are_forgotten),
            integration_test!(any_text_is_a_dedup_id),
        ],
    )
}
