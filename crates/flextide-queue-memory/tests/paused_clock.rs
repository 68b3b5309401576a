//! Leases and delays follow tokio's clock, so paused-clock tests work.

use std::time::Duration;

use flextide_queue_core::{Message, QueueError, QueueOptions, QueueProvider};
use flextide_queue_memory::MemoryQueue;

#[tokio::test(start_paused = true)]
async fn lease_expiry_and_delay_follow_the_paused_clock() {
    let q = MemoryQueue::new(
        "paused",
        QueueOptions::default()
            .lease(Duration::from_secs(60))
            .max_attempts(Some(2)),
    )
    .unwrap();
    q.push(Message::new("a")).await.unwrap();
    let first = q.pop(Duration::ZERO).await.unwrap().unwrap();
    assert!(q.pop(Duration::ZERO).await.unwrap().is_none());

    tokio::time::advance(Duration::from_secs(61)).await;
    let second = q.pop(Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(second.attempt, 2);
    assert!(matches!(
        q.delete(&first.receipt).await,
        Err(QueueError::StaleReceipt { .. })
    ));

    // Second lease expires: attempts exhausted, so it is dead-lettered, not redelivered.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(q.pop(Duration::ZERO).await.unwrap().is_none());
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2);
    assert!(dead[0].reason.contains("max attempts"));

    q.push(Message::new("later").with_delay(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(q.stats().await.unwrap().delayed, 1);
    // A wait longer than the delay returns the message once the delay passes.
    let got = q.pop(Duration::from_secs(40)).await.unwrap().unwrap();
    assert_eq!(&got.message.payload[..], b"later");
}
