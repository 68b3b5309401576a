//! Several pools and several processes on one SQLite file: claimers never
//! share a message, and both processes make progress.

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use common::TempDb;
use flextide_queue_core::{Message, MessageId, QueueOptions, QueueProvider};
use flextide_queue_sql::test_support::check_unique_pushes_race;
use flextide_queue_sqlite::{
    PoolSettings, SqliteQueue, connect_pool, connect_pool_with, migrate, sqlx,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_over_two_pools_never_share_a_message() {
    let db = TempDb::new("claimers");
    let pool_a = connect_pool(&db.url()).await.unwrap();
    let pool_b = connect_pool(&db.url()).await.unwrap();
    migrate(&pool_a).await.unwrap();
    let opts = QueueOptions::default().lease(Duration::from_secs(120));
    let qa = SqliteQueue::from_pool(pool_a, "deep", opts.clone()).unwrap();
    let qb = SqliteQueue::from_pool(pool_b, "deep", opts).unwrap();

    const N: usize = 2000;
    let messages: Vec<Message> = (0..N).map(|i| Message::new(format!("m{i}"))).collect();
    let expected: HashSet<MessageId> = messages.iter().map(|m| m.id.clone()).collect();
    qa.push_batch(messages).await.unwrap();
    assert_eq!(qa.stats().await.unwrap().depth, N as u64);

    let mut tasks = Vec::new();
    for t in 0..8 {
        let q = if t % 2 == 0 { qa.clone() } else { qb.clone() };
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = q
                    .pop_batch(1 + t % 4, Duration::from_millis(200))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    break;
                }
                for d in &batch {
                    got.push(d.message.id.clone());
                }
                let receipts: Vec<_> = batch.iter().map(|d| d.receipt.clone()).collect();
                if t % 3 == 0 {
                    q.delete_batch(&receipts).await.unwrap();
                } else {
                    for r in &receipts {
                        q.delete(r).await.unwrap();
                    }
                }
            }
            got
        }));
    }
    let mut seen = HashMap::new();
    for task in tasks {
        for id in task.await.unwrap() {
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), expected);
    let stats = qa.stats().await.unwrap();
    assert_eq!((stats.depth, stats.in_flight, stats.delayed), (0, 0, 0));
}

/// Pushes of the same dedup ids from four pools on one file (separate
/// connections, as separate processes would have), singles racing batches,
/// enqueue exactly one message per dedup id, and every push names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unique_pushes_over_four_pools_enqueue_one_per_id() {
    let db = TempDb::new("dedup");
    let mut handles = Vec::new();
    for i in 0..4 {
        let pool = connect_pool(&db.url()).await.unwrap();
        if i == 0 {
            migrate(&pool).await.unwrap();
        }
        let q = SqliteQueue::from_pool(pool, "unique", QueueOptions::default()).unwrap();
        handles.push(Arc::new(q) as Arc<dyn QueueProvider>);
    }
    check_unique_pushes_race(&handles).await;
}

/// Two processes on one file. The child is this same test binary, run with
/// `FLEXTIDE_SQLITE_CHILD_DB` set so `child_process_worker` does the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_file_both_make_progress() {
    let db = TempDb::new("procs");
    let pool = connect_pool_with(
        &db.url(),
        &PoolSettings::default().busy_timeout(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    migrate(&pool).await.unwrap();
    sqlx::query("CREATE TABLE seen (id TEXT PRIMARY KEY, who TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let q = SqliteQueue::from_pool(pool.clone(), "shared", QueueOptions::default()).unwrap();
    let control = SqliteQueue::from_pool(pool.clone(), "control", QueueOptions::default()).unwrap();
    q.push_batch(
        (0..1500)
            .map(|i| Message::new(format!("parent-{i}")))
            .collect(),
    )
    .await
    .unwrap();

    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_worker",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FLEXTIDE_SQLITE_CHILD_DB", db.url())
        .spawn()
        .unwrap();
    // Start only once the child is running, so both work at the same time.
    let ready = control
        .pop(Duration::from_secs(60))
        .await
        .unwrap()
        .expect("child did not start");
    control.delete(&ready.receipt).await.unwrap();

    consume(&q, &pool, "parent", Some(500)).await;
    let child = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.wait()
    });
    let status = child.await.unwrap().unwrap();
    assert!(status.success(), "child process failed: {status:?}");
    // Whatever is left (the child may stop first) is consumed here.
    consume(&q, &pool, "parent", None).await;

    let by_who: Vec<(String, i64)> =
        sqlx::query_as("SELECT who, COUNT(*) FROM seen GROUP BY who ORDER BY who")
            .fetch_all(&pool)
            .await
            .unwrap();
    let total: i64 = by_who.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 2000, "{by_who:?}");
    assert_eq!(
        by_who.len(),
        2,
        "both processes must make progress: {by_who:?}"
    );
    assert!(by_who.iter().all(|(_, n)| *n > 0), "{by_who:?}");
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.in_flight), (0, 0));
}

/// Pops, records each id (a duplicate delivery fails the UNIQUE key) and
/// deletes, until the queue is empty or `stop_after` messages were done.
async fn consume(
    q: &SqliteQueue,
    pool: &sqlx::SqlitePool,
    who: &str,
    stop_after: Option<usize>,
) -> usize {
    let mut done = 0;
    loop {
        let batch = q.pop_batch(10, Duration::from_millis(500)).await.unwrap();
        if batch.is_empty() {
            return done;
        }
        for d in &batch {
            sqlx::query("INSERT INTO seen (id, who) VALUES (?, ?)")
                .bind(d.message.id.as_str())
                .bind(who)
                .execute(pool)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{who}: message {} delivered twice or write failed: {e}",
                        d.message.id
                    )
                });
        }
        let receipts: Vec<_> = batch.iter().map(|d| d.receipt.clone()).collect();
        q.delete_batch(&receipts).await.unwrap();
        done += batch.len();
        if stop_after.is_some_and(|n| done >= n) {
            return done;
        }
    }
}

/// The child half of `two_processes_on_one_file_both_make_progress`; does
/// nothing when run on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_worker() {
    let Ok(url) = std::env::var("FLEXTIDE_SQLITE_CHILD_DB") else {
        return;
    };
    let pool = connect_pool_with(
        &url,
        &PoolSettings::default().busy_timeout(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    let q = SqliteQueue::from_pool(pool.clone(), "shared", QueueOptions::default()).unwrap();
    let control = SqliteQueue::from_pool(pool.clone(), "control", QueueOptions::default()).unwrap();
    control.push(Message::new("ready")).await.unwrap();
    // Push while the parent consumes, then consume too.
    let pusher = {
        let q = q.clone();
        tokio::spawn(async move {
            for chunk in 0..10 {
                q.push_batch(
                    (0..50)
                        .map(|i| Message::new(format!("child-{chunk}-{i}")))
                        .collect(),
                )
                .await
                .unwrap();
            }
        })
    };
    let done = consume(&q, &pool, "child", Some(400)).await;
    pusher.await.unwrap();
    assert!(done > 0, "child made no progress");
}
