//! MySQL-specific behaviour beyond the shared suite: concurrent claimers on a
//! deep queue, lease expiry after a crash, `push_in_tx`, killed connections,
//! ordering keys under SKIP LOCKED, settles, wake-ups and pops cut short.
//! The schema and `migrate` are in `schema.rs`.
//!
//! Needs `FLEXTIDE_TEST_MYSQL_URL` (e.g. `mysql://root@127.0.0.1:3306/test`);
//! shown as ignored without it unless `FLEXTIDE_TEST_REQUIRE` names `mysql`.

mod common;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{setup, unique};
use flextide_queue_conformance::integration_test;
use flextide_queue_mysql::{
    MySqlPool, MySqlPoolOptions, MySqlQueue,
    core::{Message, MessageId, Pushed, QueueError, QueueOptions, QueueProvider, Replay},
    drop_queue, migrate, sqlx,
};
use flextide_queue_sql::test_support::{
    check_crashed_consumer, check_next_is, check_nothing_ready, check_unique_pushes_race,
    cut_pops_short_then_push_40,
};

/// A pool that records the server-side ids of its connections.
async fn tracked_pool(url: &str, max: u32) -> (MySqlPool, Arc<Mutex<Vec<u64>>>) {
    let ids: Arc<Mutex<Vec<u64>>> = Arc::default();
    let record = ids.clone();
    let pool = MySqlPoolOptions::new()
        .max_connections(max)
        .after_connect(move |conn, _| {
            let record = record.clone();
            Box::pin(async move {
                let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
                    .fetch_one(&mut *conn)
                    .await?;
                record.lock().unwrap().push(id);
                Ok(())
            })
        })
        .connect(url)
        .await
        .expect("connect");
    (pool, ids)
}

async fn kill_all(admin: &MySqlPool, ids: &Arc<Mutex<Vec<u64>>>) {
    let ids = ids.lock().unwrap().clone();
    for id in ids {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("KILL {id}")))
            .execute(admin)
            .await;
    }
}

async fn concurrent_claimers_on_a_deep_queue_never_share_a_message(url: String) {
    let pool = setup(&url).await;
    let name = unique("deep");
    let q = MySqlQueue::from_pool(pool.clone(), &name, QueueOptions::default()).unwrap();
    const N: usize = 3000;
    let mut pushed = HashSet::new();
    for chunk in 0..3 {
        let batch: Vec<Message> = (0..N / 3)
            .map(|i| Message::new(format!("m{chunk}-{i}")).with_priority((i % 3) as u8))
            .collect();
        pushed.extend(q.push_batch(batch).await.unwrap());
    }
    assert_eq!(pushed.len(), N);
    assert_eq!(q.stats().await.unwrap().depth, N as u64);

    let seen = Arc::new(Mutex::new(Vec::<MessageId>::new()));
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let q = q.clone();
        let seen = seen.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let batch = q
                    .pop_batch(
                        if worker % 2 == 0 { 1 } else { 25 },
                        Duration::from_millis(300),
                    )
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return;
                }
                seen.lock()
                    .unwrap()
                    .extend(batch.iter().map(|d| d.message.id.clone()));
                let receipts: Vec<_> = batch.iter().map(|d| d.receipt.clone()).collect();
                q.delete_batch(&receipts).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let distinct: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        seen.len(),
        "a message was delivered to two claimers"
    );
    assert_eq!(distinct, pushed);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.in_flight), (0, 0));
    drop_queue(&pool, &name).await.unwrap();
}

async fn a_crashed_consumers_lease_expiring_brings_the_message_back(url: String) {
    let pool = setup(&url).await;
    let name = unique("crash");
    let opts = QueueOptions::default()
        .lease(Duration::from_millis(600))
        .max_attempts(Some(5));
    let q = MySqlQueue::from_pool(pool.clone(), &name, opts).unwrap();
    check_crashed_consumer(&q).await;
    drop_queue(&pool, &name).await.unwrap();
}

async fn push_in_tx_follows_the_transaction(url: String) {
    let pool = setup(&url).await;
    let name = unique("tx");
    let q = MySqlQueue::from_pool(pool.clone(), &name, QueueOptions::default()).unwrap();

    let mut tx = pool.begin().await.unwrap();
    q.push_in_tx(&mut tx, Message::new("rolled back"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    check_nothing_ready(&q).await;

    let mut tx = pool.begin().await.unwrap();
    let id = q
        .push_in_tx(&mut tx, Message::new("committed"))
        .await
        .unwrap();
    check_nothing_ready(&q).await;
    tx.commit().await.unwrap();
    q.notify_pushed();
    check_next_is(&q, &id).await;
    drop_queue(&pool, &name).await.unwrap();
}

/// A dedup id claimed in a transaction holds off a push of it from another
/// pool until the transaction ends: a rollback lets that push win, a commit
/// makes it a duplicate. A retried push of the very same message is a
/// duplicate too, and ids differing only in trailing spaces are two ids.
async fn unique_pushes_follow_transactions_across_pools(url: String) {
    let pool = setup(&url).await;
    let other = setup(&url).await;
    let name = unique("dedup");
    let q = MySqlQueue::from_pool(pool.clone(), &name, QueueOptions::default()).unwrap();
    let q2 = MySqlQueue::from_pool(other, &name, QueueOptions::default()).unwrap();
    for commit in [false, true] {
        let key = format!("k-{commit}");
        let mut tx = pool.begin().await.unwrap();
        let mine = Message::new("in tx").with_dedup_id(key.as_str());
        assert_eq!(
            q.push_unique_in_tx(&mut tx, mine.clone()).await.unwrap(),
            Pushed::Enqueued(mine.id.clone())
        );
        let theirs = Message::new("other pool").with_dedup_id(key.as_str());
        let racer = tokio::spawn({
            let (q2, theirs) = (q2.clone(), theirs.clone());
            async move { q2.push_unique(theirs).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !racer.is_finished(),
            "the other push must wait for the transaction"
        );
        let (outcome, winner) = if commit {
            tx.commit().await.unwrap();
            (Pushed::Duplicate(mine.id.clone()), mine.id)
        } else {
            tx.rollback().await.unwrap();
            (Pushed::Enqueued(theirs.id.clone()), theirs.id)
        };
        assert_eq!(racer.await.unwrap().unwrap(), outcome);
        check_next_is(&q, &winner).await;
    }
    let retried = Message::new("retried").with_dedup_id("r");
    assert!(!q.push_unique(retried.clone()).await.unwrap().is_duplicate());
    assert_eq!(
        q.push_unique(retried.clone()).await.unwrap(),
        Pushed::Duplicate(retried.id.clone())
    );
    check_next_is(&q, &retried.id).await;
    let spaced = Message::new("spaced").with_dedup_id("r ");
    assert!(!q.push_unique(spaced.clone()).await.unwrap().is_duplicate());
    check_next_is(&q, &spaced.id).await;
    check_nothing_ready(&q).await;
    // A fresh handle's first unique push sweeps expired rows. Other tests'
    // sweeps run at the same time and skip the rows one holds (SKIP LOCKED),
    // so one push may find the row held by a sweep not yet committed (or
    // rolled back after a deadlock): the row must be gone after a few fresh
    // handles, each sweeping on its first push.
    sqlx::query(
        "INSERT INTO flextide_queue_dedup (queue, dedup_id, message_id, expires_at) VALUES (?, 'old', 'x', 0)",
    )
    .bind(&name)
    .execute(&pool)
    .await
    .unwrap();
    let mut old: i64 = 1;
    for round in 0..20 {
        let fresh = MySqlQueue::from_pool(pool.clone(), &name, QueueOptions::default()).unwrap();
        let id = fresh
            .push(Message::new("s").with_dedup_id(format!("s{round}")))
            .await
            .unwrap();
        check_next_is(&q, &id).await;
        old = sqlx::query_scalar(
            "SELECT COUNT(*) FROM flextide_queue_dedup WHERE queue = ? AND dedup_id = 'old'",
        )
        .bind(&name)
        .fetch_one(&pool)
        .await
        .unwrap();
        if old == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        old, 0,
        "the expired row was swept by fresh handles' first pushes"
    );
    drop_queue(&pool, &name).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM flextide_queue_dedup WHERE queue = ?")
        .bind(&name)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "drop_queue removes the queue's dedup ids");
}

/// Unique pushes of ten ids from four pools, singles racing batches (with
/// InnoDB's deadlocks retried), enqueue one message per id.
async fn unique_pushes_race_over_four_pools(url: String) {
    let name = unique("dedup_race");
    let mut handles: Vec<Arc<dyn QueueProvider>> = Vec::new();
    for _ in 0..4 {
        let pool = setup(&url).await;
        handles.push(Arc::new(
            MySqlQueue::from_pool(pool, &name, QueueOptions::default()).unwrap(),
        ));
    }
    check_unique_pushes_race(&handles).await;
    drop_queue(&setup(&url).await, &name).await.unwrap();
}

async fn killed_connections_mid_run_lose_nothing(url: String) {
    let admin = setup(&url).await;
    let (pool, ids) = tracked_pool(&url, 4).await;
    let name = unique("kill");
    let q = MySqlQueue::from_pool(
        pool.clone(),
        &name,
        QueueOptions::default()
            .lease(Duration::from_secs(2))
            .max_attempts(None),
    )
    .unwrap();
    const N: usize = 300;
    let pushed: HashSet<MessageId> = q
        .push_batch((0..N).map(|i| Message::new(format!("k{i}"))).collect())
        .await
        .unwrap()
        .into_iter()
        .collect();

    let consumer = {
        let q = q.clone();
        tokio::spawn(async move {
            let mut done = HashSet::new();
            // Deletes whose answer was lost with the connection: they may
            // have taken effect (the server committed, the reply never came).
            let mut unsure = HashSet::new();
            let mut retryable_errors = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
            while done.union(&unsure).count() < N && tokio::time::Instant::now() < deadline {
                match q.pop_batch(5, Duration::from_millis(200)).await {
                    Ok(batch) => {
                        for d in batch {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            match q.delete(&d.receipt).await {
                                Ok(()) => {
                                    done.insert(d.message.id.clone());
                                }
                                // Lease lost while the connection was down: it comes back.
                                Err(QueueError::StaleReceipt { .. }) => {}
                                Err(e) if e.is_retryable() => {
                                    retryable_errors += 1;
                                    unsure.insert(d.message.id.clone());
                                }
                                Err(e) => panic!("delete failed: {e}"),
                            }
                        }
                    }
                    Err(e) if e.is_retryable() => retryable_errors += 1,
                    Err(e) => panic!("pop failed with a non-retryable error: {e}"),
                }
            }
            // Anything not deleted for sure is redelivered after its lease:
            // drain the rest.
            while let Ok(batch) = q.pop_batch(50, Duration::from_secs(3)).await {
                if batch.is_empty() {
                    break;
                }
                for d in batch {
                    if q.delete(&d.receipt).await.is_ok() {
                        done.insert(d.message.id.clone());
                    }
                }
            }
            (
                done.union(&unsure).cloned().collect::<HashSet<_>>(),
                retryable_errors,
            )
        })
    };
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        kill_all(&admin, &ids).await;
    }
    let (done, retryable_errors) = consumer.await.unwrap();
    eprintln!("retryable errors seen: {retryable_errors}");
    // Deleted messages may have been handled twice (at least once), but every
    // message was handled and none is left.
    let lost = pushed.difference(&done).count();
    assert_eq!(lost, 0, "{lost} messages lost");
    assert!(q.pop(Duration::from_secs(3)).await.unwrap().is_none());
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.in_flight, stats.delayed), (0, 0, 0));
    drop_queue(&admin, &name).await.unwrap();
}

async fn the_call_after_a_kill_works(url: String) {
    let admin = setup(&url).await;
    let (pool, ids) = tracked_pool(&url, 2).await;
    let name = unique("kill1");
    let q = MySqlQueue::from_pool(pool, &name, QueueOptions::default()).unwrap();
    q.push(Message::new("before")).await.unwrap();
    kill_all(&admin, &ids).await;
    // The pool pings idle connections before handing them out, so the next call works.
    let id = match q.push(Message::new("after")).await {
        Ok(id) => id,
        Err(e) => {
            assert!(e.is_retryable(), "{e}");
            q.push(Message::new("after")).await.unwrap()
        }
    };
    let got = q.pop_batch(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.iter().any(|d| d.message.id == id));
    drop_queue(&admin, &name).await.unwrap();
}

async fn ordering_key_head_locked_by_another_claimer_blocks_the_key(url: String) {
    let pool = setup(&url).await;
    let name = unique("okey");
    let q = MySqlQueue::from_pool(pool.clone(), &name, QueueOptions::default()).unwrap();
    let a1 = q
        .push(Message::new("a1").with_ordering_key("A"))
        .await
        .unwrap();
    let a2 = q
        .push(Message::new("a2").with_ordering_key("A").with_priority(9))
        .await
        .unwrap();
    let free = q.push(Message::new("free")).await.unwrap();

    // Another transaction holds the head of key A locked, as a claimer in
    // the middle of its claim would. SKIP LOCKED skips it, yet a2 must stay blocked.
    let seq: i64 =
        sqlx::query_scalar("SELECT seq FROM flextide_queue_messages WHERE queue = ? AND id = ?")
            .bind(&name)
            .bind(a1.as_str())
            .fetch_one(&pool)
            .await
            .unwrap();
    let mut tx = pool.begin().await.unwrap();
    // By primary key, so that exactly this row is locked.
    let _: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM flextide_queue_messages WHERE seq = ? FOR UPDATE")
            .bind(seq)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    let got = q.pop_batch(10, Duration::ZERO).await.unwrap();
    assert_eq!(
        got.iter().map(|d| d.message.id.clone()).collect::<Vec<_>>(),
        vec![free.clone()]
    );
    tx.rollback().await.unwrap();

    let head = q.pop_batch(10, Duration::ZERO).await.unwrap();
    assert_eq!(
        head.iter()
            .map(|d| d.message.id.clone())
            .collect::<Vec<_>>(),
        vec![a1]
    );
    // Nacked with a delay, the head still blocks its key.
    q.nack(&head[0].receipt, Duration::from_millis(400))
        .await
        .unwrap();
    assert!(q.pop_batch(10, Duration::ZERO).await.unwrap().is_empty());
    let head = q
        .pop(Duration::from_secs(3))
        .await
        .unwrap()
        .expect("head after its delay");
    assert_eq!(head.attempt, 2);
    q.delete(&head.receipt).await.unwrap();
    let next = q
        .pop(Duration::ZERO)
        .await
        .unwrap()
        .expect("a2 once a1 is done");
    assert_eq!(next.message.id, a2);
    drop_queue(&pool, &name).await.unwrap();
}

async fn delete_batch_reports_stale_receipts_by_index(url: String) {
    let pool = setup(&url).await;
    let name = unique("delb");
    let q = MySqlQueue::from_pool(pool.clone(), &name, QueueOptions::default()).unwrap();
    q.push_batch((0..3).map(|i| Message::new(format!("d{i}"))).collect())
        .await
        .unwrap();
    let got = q.pop_batch(3, Duration::from_secs(2)).await.unwrap();
    assert_eq!(got.len(), 3);
    q.delete(&got[1].receipt).await.unwrap();
    let receipts = vec![
        got[0].receipt.clone(),
        got[1].receipt.clone(),
        got[2].receipt.clone(),
        got[2].receipt.clone(),
    ];
    match q.delete_batch(&receipts).await {
        Err(QueueError::PartialBatch { failures, .. }) => {
            let indexes: Vec<usize> = failures.iter().map(|f| f.index).collect();
            assert_eq!(indexes, vec![1, 3]);
            assert!(
                failures
                    .iter()
                    .all(|f| matches!(f.error, QueueError::StaleReceipt { .. }))
            );
        }
        other => panic!("expected a partial batch, got {other:?}"),
    }
    assert_eq!(q.stats().await.unwrap().in_flight, 0);
    drop_queue(&pool, &name).await.unwrap();
}

async fn exhausted_attempts_dead_letter_and_replay(url: String) {
    let pool = setup(&url).await;
    let name = unique("dlq");
    let opts = QueueOptions::default()
        .lease(Duration::from_millis(300))
        .max_attempts(Some(2));
    let q = MySqlQueue::from_pool(pool.clone(), &name, opts).unwrap();
    let id = q
        .push(
            Message::new("poison")
                .with_priority(4)
                .with_ordering_key("k"),
        )
        .await
        .unwrap();
    let d = q.pop(Duration::from_secs(2)).await.unwrap().unwrap();
    q.nack(&d.receipt, Duration::ZERO).await.unwrap();
    let _second = q.pop(Duration::from_secs(2)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The lease ran out after the last attempt: stats already count it as dead.
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.depth, stats.in_flight, stats.dead_lettered),
        (0, 0, 1)
    );
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "max attempts exceeded (2)");
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].message.priority, 4);
    assert_eq!(
        q.replay_dead_letters(Replay::Ids(vec![id.clone()]))
            .await
            .unwrap(),
        1
    );
    let back = q.pop(Duration::from_secs(2)).await.unwrap().unwrap();
    assert_eq!((back.message.id.clone(), back.attempt), (id, 1));
    assert_eq!(back.message.ordering_key.as_deref(), Some("k"));
    q.dead_letter(&back.receipt, "by hand").await.unwrap();
    assert_eq!(q.purge_dead_letters().await.unwrap(), 1);
    drop_queue(&pool, &name).await.unwrap();
}

async fn wait_is_woken_by_a_push_in_this_process(url: String) {
    let pool = setup(&url).await;
    let name = unique("wake");
    let q = MySqlQueue::from_pool(pool.clone(), &name, QueueOptions::default()).unwrap();
    let other = MySqlQueue::from_pool(pool.clone(), &name, QueueOptions::default()).unwrap();
    let waiter = tokio::spawn(async move { q.pop(Duration::from_secs(20)).await });
    // Let the waiter back off to long polls first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = tokio::time::Instant::now();
    other.push(Message::new("wake up")).await.unwrap();
    let d = waiter.await.unwrap().unwrap().expect("woken");
    // Semantics, not speed: well before the wait's end (20 s).
    assert!(started.elapsed() < Duration::from_secs(5));
    other.delete(&d.receipt).await.unwrap();
    drop_queue(&pool, &name).await.unwrap();
}

/// Pops cut short at random points (a timeout, a `select!`, a worker's
/// shutdown) must never leave a pooled connection inside a transaction: a
/// later push on it would return Ok without ever committing.
async fn pops_cut_short_leave_no_transaction_open(url: String) {
    let pool = MySqlPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("connect");
    migrate(&pool).await.expect("migrate");
    let name = unique("cut");
    let q = MySqlQueue::from_pool(pool.clone(), &name, QueueOptions::default()).unwrap();
    // Every push after the cuts must be committed, on whichever connection.
    cut_pops_short_then_push_40(&q).await;
    let other = MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connect");
    let visible: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM flextide_queue_messages WHERE queue = ?")
            .bind(&name)
            .fetch_one(&other)
            .await
            .unwrap();
    drop(q);
    pool.close().await;
    drop_queue(&other, &name).await.unwrap();
    // The bait may have been leased; the 40 must all be there.
    assert!(
        visible >= 40,
        "only {visible} of 41 messages are visible to another connection: a push ran inside a transaction left open by a cancelled pop"
    );
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "mysql",
        "FLEXTIDE_TEST_MYSQL_URL",
        vec![
            integration_test!(concurrent_claimers_on_a_deep_queue_never_share_a_message).threads(2),
            integration_test!(a_crashed_consumers_lease_expiring_brings_the_message_back),
            integration_test!(push_in_tx_follows_the_transaction),
            integration_test!(unique_pushes_follow_transactions_across_pools),
            integration_test!(unique_pushes_race_over_four_pools).threads(4),
            integration_test!(killed_connections_mid_run_lose_nothing).threads(2),
            integration_test!(the_call_after_a_kill_works),
            integration_test!(ordering_key_head_locked_by_another_claimer_blocks_the_key),
            integration_test!(delete_batch_reports_stale_receipts_by_index),
            integration_test!(exhausted_attempts_dead_letter_and_replay),
            integration_test!(wait_is_woken_by_a_push_in_this_process),
            integration_test!(pops_cut_short_leave_no_transaction_open),
        ],
    )
}
