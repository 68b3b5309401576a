//! Integration tests of the SQLite backend beyond the shared conformance
//! suite: crashed consumers, fencing, priorities and ordering keys, delays,
//! dead letters, batches, wake-ups, transactions and migrations. Several
//! pools and processes on one file are in `processes.rs`.

mod common;

use std::time::Duration;

use common::TempDb;
use flextide_queue_core::{
    Message, MessageId, Pushed, QueueError, QueueOptions, QueueProvider, Replay,
};
use flextide_queue_sqlite::{
    SqliteQueue, connect_pool, current_version, drop_queue, list_queues, migrate,
};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(5);

async fn file_queue(db: &TempDb, name: &str, options: QueueOptions) -> SqliteQueue {
    SqliteQueue::connect(&db.url(), name, options)
        .await
        .unwrap()
}

async fn pop(q: &SqliteQueue) -> flextide_queue_core::Delivery {
    q.pop(WAIT).await.unwrap().expect("a delivery")
}

#[tokio::test]
async fn crashed_consumer_lease_expires_and_the_message_comes_back() {
    let db = TempDb::new("crash");
    let opts = QueueOptions::default().lease(Duration::from_millis(300));
    let producer = file_queue(&db, "jobs", opts.clone()).await;
    producer.push(Message::new("work")).await.unwrap();
    {
        // A consumer on its own pool takes the message and "crashes".
        let consumer = file_queue(&db, "jobs", opts.clone()).await;
        let d = pop(&consumer).await;
        assert_eq!(d.attempt, 1);
        assert!(
            consumer.pop(Duration::ZERO).await.unwrap().is_none(),
            "leased message must be invisible"
        );
        let stats = producer.stats().await.unwrap();
        assert_eq!((stats.depth, stats.in_flight), (0, 1));
        consumer.pool().close().await;
    }
    let started = Instant::now();
    let again = pop(&producer).await;
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "redelivered before the lease ended"
    );
    assert_eq!(again.attempt, 2);
    assert_eq!(&again.message.payload[..], b"work");
    producer.delete(&again.receipt).await.unwrap();
}

#[tokio::test]
async fn fencing_and_expired_but_unclaimed_receipts() {
    let db = TempDb::new("fencing");
    let q = file_queue(
        &db,
        "f",
        QueueOptions::default().lease(Duration::from_millis(200)),
    )
    .await;
    q.push(Message::new("a")).await.unwrap();
    let first = pop(&q).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Expired but not yet delivered again: the old receipt still works.
    q.extend(&first.receipt, Duration::from_millis(200))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = pop(&q).await;
    assert_eq!(second.attempt, 2);
    assert_ne!(first.receipt, second.receipt);
    for result in [
        q.delete(&first.receipt).await,
        q.nack(&first.receipt, Duration::ZERO).await,
        q.extend(&first.receipt, WAIT).await,
        q.dead_letter(&first.receipt, "x").await,
    ] {
        assert!(
            matches!(result, Err(QueueError::StaleReceipt { .. })),
            "{result:?}"
        );
    }
    q.delete(&second.receipt).await.unwrap();
    assert!(matches!(
        q.delete(&second.receipt).await,
        Err(QueueError::StaleReceipt { .. })
    ));
    let garbled = flextide_queue_core::Receipt::new("nonsense");
    assert!(matches!(
        q.delete(&garbled).await,
        Err(QueueError::InvalidReceipt { .. })
    ));
}

#[tokio::test]
async fn priority_fifo_and_nack_keeps_place() {
    let q = SqliteQueue::connect("sqlite::memory:", "order", QueueOptions::default())
        .await
        .unwrap();
    for (body, prio) in [("low1", 0), ("high1", 5), ("low2", 0), ("high2", 5)] {
        q.push(Message::new(body).with_priority(prio))
            .await
            .unwrap();
    }
    let d = pop(&q).await;
    assert_eq!(&d.message.payload[..], b"high1");
    q.nack(&d.receipt, Duration::ZERO).await.unwrap();
    let order: Vec<_> = q
        .pop_batch(10, WAIT)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.message.payload)
        .collect();
    assert_eq!(order, vec!["high1", "high2", "low1", "low2"]);
}

#[tokio::test]
async fn ordering_key_blocks_behind_its_head() {
    let q = SqliteQueue::connect("sqlite::memory:", "keys", QueueOptions::default())
        .await
        .unwrap();
    q.push(Message::new("a1").with_ordering_key("a"))
        .await
        .unwrap();
    q.push(Message::new("a2").with_ordering_key("a"))
        .await
        .unwrap();
    q.push(Message::new("b1").with_ordering_key("b"))
        .await
        .unwrap();
    q.push(Message::new("free")).await.unwrap();
    let batch = q.pop_batch(10, WAIT).await.unwrap();
    let got: Vec<_> = batch.iter().map(|d| d.message.payload.clone()).collect();
    assert_eq!(got, vec!["a1", "b1", "free"]);
    assert!(
        q.pop(Duration::from_millis(50)).await.unwrap().is_none(),
        "a2 must wait for a1"
    );
    // A nack with a delay keeps the key blocked.
    q.nack(&batch[0].receipt, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(q.pop(Duration::from_millis(50)).await.unwrap().is_none());
    let again = pop(&q).await;
    assert_eq!(&again.message.payload[..], b"a1");
    q.delete(&again.receipt).await.unwrap();
    assert_eq!(&pop(&q).await.message.payload[..], b"a2");
}

#[tokio::test]
async fn delay_and_exact_stats() {
    let q = SqliteQueue::connect("sqlite::memory:", "stats", QueueOptions::default())
        .await
        .unwrap();
    q.push(Message::new("now")).await.unwrap();
    q.push(Message::new("later").with_delay(Duration::from_millis(400)))
        .await
        .unwrap();
    q.push(Message::new("leased")).await.unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (
            stats.depth,
            stats.in_flight,
            stats.delayed,
            stats.dead_lettered
        ),
        (2, 0, 1, 0)
    );
    let a = pop(&q).await;
    let b = pop(&q).await;
    assert!(
        q.pop(Duration::ZERO).await.unwrap().is_none(),
        "delayed message delivered early"
    );
    q.dead_letter(&b.receipt, "bad input").await.unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (
            stats.depth,
            stats.in_flight,
            stats.delayed,
            stats.dead_lettered
        ),
        (0, 1, 1, 1)
    );
    assert!(stats.oldest_age.is_some());
    let started = Instant::now();
    let later = pop(&q).await;
    assert_eq!(&later.message.payload[..], b"later");
    assert!(started.elapsed() < Duration::from_secs(2));
    q.delete(&a.receipt).await.unwrap();
    q.delete(&later.receipt).await.unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (
            stats.depth,
            stats.in_flight,
            stats.delayed,
            stats.dead_lettered
        ),
        (0, 0, 0, 1)
    );
    assert_eq!(stats.oldest_age, None);
}

#[tokio::test]
async fn max_attempts_dead_letters_on_nack_and_on_expiry() {
    let q = SqliteQueue::connect(
        "sqlite::memory:",
        "poison",
        QueueOptions::default()
            .lease(Duration::from_millis(200))
            .max_attempts(Some(2)),
    )
    .await
    .unwrap();
    let nacked = Message::new("nacked")
        .with_header("k", "v")
        .with_priority(3)
        .with_ordering_key("key");
    let nacked_id = q.push(nacked).await.unwrap();
    for attempt in 1..=2 {
        let d = pop(&q).await;
        assert_eq!(d.attempt, attempt);
        q.nack(&d.receipt, Duration::ZERO).await.unwrap();
    }
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "max attempts exceeded (2)");
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].message.id, nacked_id);
    assert_eq!(
        dead[0].message.headers.get("k").map(String::as_str),
        Some("v")
    );

    let expired_id = q.push(Message::new("expired")).await.unwrap();
    for _ in 0..2 {
        let _ = pop(&q).await; // never settled
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.depth, stats.in_flight, stats.dead_lettered),
        (0, 0, 2)
    );

    // Replay one by id, then the oldest, then all.
    assert_eq!(
        q.replay_dead_letters(Replay::Ids(vec![
            expired_id.clone(),
            MessageId::new("missing")
        ]))
        .await
        .unwrap(),
        1
    );
    let d = pop(&q).await;
    assert_eq!((d.message.id.clone(), d.attempt), (expired_id, 1));
    q.delete(&d.receipt).await.unwrap();
    assert_eq!(q.replay_dead_letters(Replay::Oldest(5)).await.unwrap(), 1);
    let d = pop(&q).await;
    assert_eq!(
        (d.message.priority, d.message.ordering_key.as_deref()),
        (3, Some("key"))
    );
    q.dead_letter(&d.receipt, "again").await.unwrap();
    assert_eq!(q.purge_dead_letters().await.unwrap(), 1);
    assert_eq!(q.replay_dead_letters(Replay::All).await.unwrap(), 0);
}

#[tokio::test]
async fn peek_and_purge_keep_leases_working() {
    let q = SqliteQueue::connect("sqlite::memory:", "purge", QueueOptions::default())
        .await
        .unwrap();
    for i in 0..4 {
        q.push(Message::new(format!("{i}"))).await.unwrap();
    }
    let leased = pop(&q).await;
    let peeked: Vec<_> = q
        .peek(10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(peeked, vec!["1", "2", "3"]);
    assert_eq!(q.stats().await.unwrap().depth, 3, "peek must not lease");
    assert_eq!(q.purge().await.unwrap(), 3);
    q.nack(&leased.receipt, Duration::ZERO).await.unwrap();
    assert!(
        q.pop(Duration::from_millis(50)).await.unwrap().is_none(),
        "purged message came back"
    );
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.in_flight, stats.delayed), (0, 0, 0));
}

#[tokio::test]
async fn batches_report_each_failed_item() {
    let q = SqliteQueue::connect("sqlite::memory:", "batch", QueueOptions::default())
        .await
        .unwrap();
    assert!(q.push_batch(Vec::new()).await.unwrap().is_empty());
    let err = q
        .push_batch(vec![
            Message::new("ok"),
            Message::new("long dedup id").with_dedup_id("d".repeat(256)),
            Message::new("ok2"),
        ])
        .await
        .unwrap_err();
    match err {
        QueueError::PartialBatch { failures, .. } => {
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].index, 1);
            assert!(matches!(
                failures[0].error,
                QueueError::InvalidMessage { .. }
            ));
        }
        other => panic!("{other:?}"),
    }
    let big: Vec<Message> = (0..2500).map(|i| Message::new(format!("{i}"))).collect();
    assert_eq!(q.push_batch(big).await.unwrap().len(), 2500);
    let mut deliveries = q.pop_batch(3000, WAIT).await.unwrap();
    assert_eq!(deliveries.len(), 2502);
    let first = deliveries.remove(0);
    q.delete(&first.receipt).await.unwrap();
    let mut receipts: Vec<_> = deliveries.iter().map(|d| d.receipt.clone()).collect();
    receipts.insert(3, first.receipt.clone()); // already deleted
    receipts.push(flextide_queue_core::Receipt::new("garbage"));
    receipts.push(deliveries[0].receipt.clone()); // twice in one batch
    match q.delete_batch(&receipts).await.unwrap_err() {
        QueueError::PartialBatch { failures, .. } => {
            let indexes: Vec<_> = failures.iter().map(|f| f.index).collect();
            assert_eq!(indexes, vec![3, receipts.len() - 2, receipts.len() - 1]);
            assert!(matches!(failures[0].error, QueueError::StaleReceipt { .. }));
            assert!(matches!(
                failures[1].error,
                QueueError::InvalidReceipt { .. }
            ));
        }
        other => panic!("{other:?}"),
    }
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.in_flight), (0, 0));
}

#[tokio::test]
async fn waiting_pop_is_woken_by_a_push_and_times_out_on_time() {
    let db = TempDb::new("wait");
    let q = file_queue(&db, "w", QueueOptions::default()).await;
    // Another pool on the same file, as another part of the program would use.
    let other = file_queue(&db, "w", QueueOptions::default()).await;
    let started = Instant::now();
    assert!(q.pop(Duration::from_millis(300)).await.unwrap().is_none());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(1200),
        "{waited:?}"
    );

    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let d = q.pop(Duration::from_secs(20)).await.unwrap();
        (d.is_some(), started.elapsed())
    });
    // Let the waiter back off to its longest poll interval first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    other.push(Message::new("wake")).await.unwrap();
    let (got, waited) = waiter.await.unwrap();
    assert!(got);
    assert!(
        waited < Duration::from_millis(1500 + 200),
        "not woken promptly: {waited:?}"
    );
}

#[tokio::test]
async fn push_in_tx_commits_or_rolls_back_with_the_transaction() {
    let db = TempDb::new("tx");
    let q = file_queue(&db, "tx", QueueOptions::default()).await;
    sqlx::query("CREATE TABLE steps (name TEXT)")
        .execute(q.pool())
        .await
        .unwrap();

    let mut tx = q.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("INSERT INTO steps VALUES ('one')")
        .execute(&mut *tx)
        .await
        .unwrap();
    q.push_in_tx(&mut tx, Message::new("rolled back"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(q.pop(Duration::from_millis(50)).await.unwrap().is_none());
    assert_eq!(q.stats().await.unwrap().depth, 0);

    let mut tx = q.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("INSERT INTO steps VALUES ('two')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let id = q
        .push_in_tx(&mut tx, Message::new("committed"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    q.notify_pushed();
    let d = pop(&q).await;
    assert_eq!(d.message.id, id);
    q.delete(&d.receipt).await.unwrap();
    let steps: Vec<String> = sqlx::query_scalar("SELECT name FROM steps")
        .fetch_all(q.pool())
        .await
        .unwrap();
    assert_eq!(steps, vec!["two"]);

    // A dedup id claimed in a transaction that rolls back is forgotten;
    // once committed, it holds.
    let mut tx = q.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    let rolled = Message::new("x").with_dedup_id("d");
    assert_eq!(
        q.push_unique_in_tx(&mut tx, rolled.clone()).await.unwrap(),
        Pushed::Enqueued(rolled.id.clone())
    );
    tx.rollback().await.unwrap();
    let mut tx = q.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    let kept = Message::new("y").with_dedup_id("d");
    assert_eq!(q.push_in_tx(&mut tx, kept.clone()).await.unwrap(), kept.id);
    assert_eq!(
        q.push_unique_in_tx(&mut tx, Message::new("z").with_dedup_id("d"))
            .await
            .unwrap(),
        Pushed::Duplicate(kept.id.clone())
    );
    tx.commit().await.unwrap();
    assert_eq!(
        q.push(Message::new("w").with_dedup_id("d")).await.unwrap(),
        kept.id
    );
    let d = pop(&q).await;
    assert_eq!(d.message.id, kept.id);
    assert_eq!(d.message.dedup_id.as_deref(), Some("d"));
    q.delete(&d.receipt).await.unwrap();
    assert!(q.pop(Duration::from_millis(50)).await.unwrap().is_none());

    // A fresh handle's first unique push sweeps expired rows; purge keeps
    // the dedup ids, drop_queue removes them.
    sqlx::query(
        "INSERT INTO flextide_queue_dedup (queue, dedup_id, message_id, expires_at) VALUES (?, 'old', 'x', 0)",
    )
    .bind(q.queue_name())
    .execute(q.pool())
    .await
    .unwrap();
    let fresh =
        SqliteQueue::from_pool(q.pool().clone(), q.queue_name(), QueueOptions::default()).unwrap();
    fresh
        .push(Message::new("s").with_dedup_id("s"))
        .await
        .unwrap();
    let count = |key: &'static str| {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM flextide_queue_dedup WHERE queue = ? AND dedup_id LIKE ?",
        )
        .bind(q.queue_name().to_owned())
        .bind(key)
        .fetch_one(q.pool())
    };
    assert_eq!(count("old").await.unwrap(), 0, "the expired row was swept");
    q.purge().await.unwrap();
    assert_eq!(count("%").await.unwrap(), 2, "purge keeps the dedup ids");
    q.drop_queue().await.unwrap();
    assert_eq!(count("%").await.unwrap(), 0, "drop_queue removes them");
}

#[tokio::test]
async fn migrate_is_idempotent_and_keeps_its_own_version_table() {
    let db = TempDb::new("migrate");
    let pool = connect_pool(&db.url()).await.unwrap();
    assert_eq!(current_version(&pool).await.unwrap(), 0);
    // Before migrating, using a queue says what to do.
    let q = SqliteQueue::from_pool(pool.clone(), "m", QueueOptions::default()).unwrap();
    let err = q.push(Message::new("x")).await.unwrap_err();
    assert!(
        matches!(err, QueueError::Configuration { .. }) && err.to_string().contains("migrate"),
        "{err}"
    );
    migrate(&pool).await.unwrap();
    q.push(Message::new("kept")).await.unwrap();
    migrate(&pool).await.unwrap();
    // Applying the .sql file again by hand is harmless too.
    sqlx::raw_sql(flextide_queue_sqlite::MIGRATIONS[0].sql)
        .execute(&pool)
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM flextide_queue_schema")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, flextide_queue_sqlite::SCHEMA_VERSION);
    assert_eq!(
        current_version(&pool).await.unwrap(),
        flextide_queue_sqlite::SCHEMA_VERSION
    );
    let sqlx_table: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_sqlx_migrations')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!sqlx_table);
    assert_eq!(q.stats().await.unwrap().depth, 1);
    // Concurrent migrations of a fresh file from several pools agree.
    let fresh = TempDb::new("migrate-fresh");
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = fresh.url();
        tasks.push(tokio::spawn(async move {
            migrate(&connect_pool(&url).await.unwrap()).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        current_version(&connect_pool(&fresh.url()).await.unwrap())
            .await
            .unwrap(),
        flextide_queue_sqlite::SCHEMA_VERSION
    );
}

#[tokio::test]
async fn queues_share_a_database_but_not_messages() {
    let pool = connect_pool("sqlite::memory:").await.unwrap();
    migrate(&pool).await.unwrap();
    let a = SqliteQueue::from_pool(pool.clone(), "a", QueueOptions::default()).unwrap();
    let a2 = SqliteQueue::from_pool(pool.clone(), "a", QueueOptions::default()).unwrap();
    let b = SqliteQueue::from_pool(pool.clone(), "b", QueueOptions::default()).unwrap();
    a.push(Message::new("for a")).await.unwrap();
    assert!(b.pop(Duration::from_millis(50)).await.unwrap().is_none());
    assert_eq!(&pop(&a2).await.message.payload[..], b"for a");
    b.push(Message::new("for b")).await.unwrap();
    assert_eq!(list_queues(&pool).await.unwrap(), vec!["a", "b"]);
    assert_eq!(drop_queue(&pool, "a").await.unwrap(), 1);
    assert_eq!(list_queues(&pool).await.unwrap(), vec!["b"]);
    assert!(matches!(
        SqliteQueue::from_pool(pool.clone(), "a'; DROP TABLE x", QueueOptions::default()),
        Err(QueueError::InvalidQueueName { .. })
    ));
    assert!(matches!(
        drop_queue(&pool, "no such").await,
        Err(QueueError::InvalidQueueName { .. })
    ));
    // Two separate in-memory URLs are two databases.
    let c = SqliteQueue::connect("sqlite::memory:", "b", QueueOptions::default())
        .await
        .unwrap();
    assert_eq!(c.stats().await.unwrap().depth, 0);
}
