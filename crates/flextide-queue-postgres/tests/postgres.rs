//! PostgreSQL-specific integration tests: concurrency, crashes, transactions,
//! migrations, killed connections and LISTEN/NOTIFY; unique pushes in
//! `dedup/`, the claim's plan in `plan/`.
//!
//! Run with: `FLEXTIDE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p flextide-queue-postgres --test postgres`

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use flextide_queue_conformance::{integration_test, unique_queue_name};
use flextide_queue_core::{Message, QueueError, QueueOptions, QueueProvider};
use flextide_queue_postgres::{PostgresBackend, PostgresConfig, PostgresQueue, migrate, sqlx};
use flextide_queue_sql::test_support::{
    check_crashed_consumer, check_next_is, check_nothing_ready, cut_pops_short_then_push_40,
};

mod dedup;
mod plan;

use dedup::{unique_pushes_follow_transactions_across_pools, unique_pushes_race_over_four_pools};
use plan::{
    claims_and_deletes_ignore_statistics_taken_empty, claims_skip_leased_and_retried_rows,
    claims_walk_the_index_without_statistics,
};

fn app_name() -> String {
    format!(
        "flextide-test-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

async fn backend(url: &str, config: PostgresConfig) -> PostgresBackend {
    let b = PostgresBackend::connect(url, config)
        .await
        .expect("connect");
    b.migrate().await.expect("migrate");
    b
}

/// A pool of `connections` and a backend on a new schema of its own (the
/// caller drops the schema).
async fn schema_backend(url: &str, connections: u32) -> (sqlx::PgPool, String, PostgresBackend) {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        .connect(url)
        .await
        .unwrap();
    let schema = format!("ft_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let b = PostgresBackend::with_pool(
        pool.clone(),
        PostgresConfig::default()
            .schema(&schema)
            .migrate_on_connect(true),
    )
    .await
    .unwrap();
    (pool, schema, b)
}

/// Drops a schema [`schema_backend`] or a test made, with everything in it.
async fn drop_schema(pool: &sqlx::PgPool, schema: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(pool)
    .await
    .unwrap();
}

/// Drops the queue's rows when the test ends, pass or fail.
struct Cleanup(String, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, name) = (self.0.clone(), self.1.clone());
        // A fresh runtime and connection: the test's pool belongs to the
        // test's runtime, which this thread is blocking.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let pool = sqlx::postgres::PgPoolOptions::new()
                        .max_connections(1)
                        .connect(&url)
                        .await
                        .unwrap();
                    flextide_queue_postgres::drop_queue(&pool, &name)
                        .await
                        .unwrap();
                    pool.close().await;
                })
        })
        .join()
        .expect("cleanup failed");
    }
}

fn open(
    b: &PostgresBackend,
    url: &str,
    hint: &str,
    options: QueueOptions,
) -> (PostgresQueue, Cleanup) {
    let name = unique_queue_name(hint);
    (
        b.queue(&name, options).unwrap(),
        Cleanup(url.to_owned(), name),
    )
}

async fn concurrent_claimers_never_share_a_message(url: String) {
    let b = backend(&url, PostgresConfig::default().max_connections(12)).await;
    let (q, _c) = open(&b, &url, "pg_concurrent", QueueOptions::default());
    let total = 3000;
    for chunk in (0..total).collect::<Vec<_>>().chunks(1000) {
        q.push_batch(
            chunk
                .iter()
                .map(|i| Message::new(format!("m{i}")))
                .collect(),
        )
        .await
        .unwrap();
    }
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let batch = q.pop_batch(25, Duration::ZERO).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                let receipts: Vec<_> = batch.iter().map(|d| d.receipt.clone()).collect();
                seen.extend(batch.into_iter().map(|d| d.message.id));
                q.delete_batch(&receipts).await.unwrap();
            }
            seen
        }));
    }
    let mut counts: HashMap<_, usize> = HashMap::new();
    for t in tasks {
        for id in t.await.unwrap() {
            *counts.entry(id).or_default() += 1;
        }
    }
    assert_eq!(counts.len(), total);
    assert!(
        counts.values().all(|&n| n == 1),
        "a message was delivered to two claimers"
    );
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.in_flight), (0, 0));
}

async fn crashed_consumer_lease_expires_and_message_returns(url: String) {
    let b = backend(&url, PostgresConfig::default()).await;
    let lease = QueueOptions::default().lease(Duration::from_millis(500));
    let (q, _c) = open(&b, &url, "pg_crash", lease);
    check_crashed_consumer(&q).await;
}

/// A message waiting after nacks, when the queue is reopened with a lower
/// `max_attempts`, is never delivered past it: the claim that meets it
/// moves it to the dead letters instead of leasing it (contract clause 5),
/// and takes the message behind it.
async fn a_lowered_max_attempts_dead_letters_waiting_messages(url: String) {
    let b = backend(&url, PostgresConfig::default()).await;
    let (q, cleanup) = open(
        &b,
        &url,
        "pg_lowered",
        QueueOptions::default().max_attempts(None),
    );
    let id = q.push(Message::new("nacked twice")).await.unwrap();
    for _ in 0..2 {
        let d = q.pop(Duration::from_secs(5)).await.unwrap().unwrap();
        q.nack(&d.receipt, Duration::ZERO).await.unwrap();
    }
    let next = q.push(Message::new("behind it")).await.unwrap();
    let lowered = b
        .queue(&cleanup.1, QueueOptions::default().max_attempts(Some(2)))
        .unwrap();
    let d = lowered.pop(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(
        d.message.id, next,
        "the exhausted message was delivered a third time"
    );
    let dead = lowered.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].message.id, id);
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].reason, "max attempts exceeded (2)");
    lowered.delete(&d.receipt).await.unwrap();
    let stats = lowered.stats().await.unwrap();
    assert_eq!(
        (stats.depth, stats.in_flight, stats.dead_lettered),
        (0, 0, 1)
    );
}

async fn push_in_tx_follows_the_transaction(url: String) {
    let b = backend(&url, PostgresConfig::default()).await;
    let (q, _c) = open(&b, &url, "pg_tx", QueueOptions::default());

    let mut tx = b.pool().begin().await.unwrap();
    q.push_in_tx(&mut tx, Message::new("rolled back"))
        .await
        .unwrap();
    q.push_batch_in_tx(&mut tx, vec![Message::new("a"), Message::new("b")])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    check_nothing_ready(&q).await;

    let mut tx = b.pool().begin().await.unwrap();
    let id = q
        .push_in_tx(&mut tx, Message::new("committed"))
        .await
        .unwrap();
    // Invisible to others until commit.
    check_nothing_ready(&q).await;
    tx.commit().await.unwrap();
    check_next_is(&q, &id).await;
}

/// A schema a previous release left at version 3, with a message delayed
/// for an hour and one ready: version 4 keeps the delayed one out of the
/// claim's way (token '') and both keep their meaning.
async fn an_upgrade_to_version_4_keeps_delayed_messages(url: String) {
    use sqlx::Connection;
    let schema = format!("ft_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let mut sql = format!("CREATE SCHEMA \"{schema}\"; SET search_path TO \"{schema}\";");
    for m in &flextide_queue_postgres::MIGRATIONS[..3] {
        sql.push_str(m.sql);
    }
    sql.push_str(
        "CREATE TABLE flextide_queue_schema_version (
            version BIGINT PRIMARY KEY, name TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
         INSERT INTO flextide_queue_schema_version (version, name)
            VALUES (1, 'init'), (2, 'plain_inserts'), (3, 'dedup');
         INSERT INTO flextide_queue_messages (queue, id, payload, visible_at)
            VALUES ('up', 'later', 'x', (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 3600000);
         INSERT INTO flextide_queue_messages (queue, id, payload) VALUES ('up', 'now', 'y');",
    );
    // A connection of its own: the search_path stays with it.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap();
    let b = PostgresBackend::from_pool(pool.clone(), PostgresConfig::default().schema(&schema))
        .unwrap();
    let applied = b.migrate().await;
    let q = b.queue("up", QueueOptions::default()).unwrap();
    let stats = q.stats().await;
    let first = q.pop(Duration::ZERO).await;
    let second = q.pop(Duration::ZERO).await;
    let token: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT token FROM \"{schema}\".flextide_queue_messages WHERE id = 'later'"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    drop_schema(&pool, &schema).await;
    applied.unwrap();
    let stats = stats.unwrap();
    assert_eq!((stats.depth, stats.delayed, stats.in_flight), (1, 1, 0));
    assert_eq!(first.unwrap().unwrap().message.id.as_str(), "now");
    assert!(second.unwrap().is_none(), "the delayed message came early");
    assert_eq!(token.as_deref(), Some(""));
}

async fn migrate_twice_and_concurrently_is_harmless(url: String) {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(6)
        .connect(&url)
        .await
        .unwrap();
    migrate(&pool).await.unwrap();
    migrate(&pool).await.unwrap();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn({
                let p = pool.clone();
                async move { migrate(&p).await }
            })
        })
        .collect();
    for r in runs {
        r.await.unwrap().unwrap();
    }
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM flextide_queue_schema_version")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(versions as usize, flextide_queue_postgres::MIGRATIONS.len());

    // A schema of its own works the same; unmigrated, operations say what to do.
    let schema = format!("ft_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let config = PostgresConfig::default().schema(&schema);
    let b = PostgresBackend::from_pool(pool.clone(), config.clone()).unwrap();
    let q = b.queue("q", QueueOptions::default()).unwrap();
    let err = q.push(Message::new("x")).await.unwrap_err();
    assert!(matches!(err, QueueError::Configuration { .. }), "{err}");
    assert!(!err.is_retryable());
    b.migrate().await.unwrap();
    b.migrate().await.unwrap();
    q.push(Message::new("x")).await.unwrap();
    assert!(q.pop(Duration::ZERO).await.unwrap().is_some());
    drop_schema(&pool, &schema).await;
}

/// Calls `f` until it succeeds, allowing retryable errors only.
async fn retrying<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, QueueError>>,
{
    for _ in 0..50 {
        match f().await {
            Ok(v) => return v,
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("non-retryable error after a disconnect: {e}"),
        }
    }
    panic!("still failing after 50 retries");
}

async fn killed_connections_lose_nothing(url: String) {
    let app = app_name();
    let b = backend(
        &url,
        PostgresConfig::default()
            .application_name(&app)
            .max_connections(4),
    )
    .await;
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let (q, _c) = open(
        &b,
        &url,
        "pg_kill",
        QueueOptions::default().lease(Duration::from_secs(2)),
    );
    let total = 400;
    let ids: Vec<_> = (0..total).map(|i| Message::new(format!("{i}"))).collect();
    let pushed: Vec<_> = ids.iter().map(|m| m.id.clone()).collect();
    for chunk in ids.chunks(50) {
        let chunk = chunk.to_vec();
        retrying(|| q.push_batch(chunk.clone())).await;
    }
    let killer = tokio::spawn({
        let admin = admin.clone();
        let app = app.clone();
        async move {
            let mut killed = 0u64;
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(60)).await;
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                )
                .bind(&app)
                .fetch_one(&admin)
                .await
                .unwrap();
                killed += n as u64;
            }
            killed
        }
    });
    let mut done = std::collections::HashSet::new();
    let mut errors = 0;
    let started = Instant::now();
    while done.len() < total && started.elapsed() < Duration::from_secs(180) {
        let batch = match q.pop_batch(10, Duration::from_millis(200)).await {
            Ok(b) => b,
            Err(e) => {
                assert!(
                    e.is_retryable(),
                    "killed connection must give a retryable error: {e}"
                );
                errors += 1;
                continue;
            }
        };
        for d in batch {
            tokio::time::sleep(Duration::from_millis(1)).await;
            match q.delete(&d.receipt).await {
                Ok(()) => {
                    done.insert(d.message.id);
                }
                Err(e) => {
                    // Either retryable (redelivered later) or stale (already redelivered).
                    assert!(
                        e.is_retryable() || matches!(e, QueueError::StaleReceipt { .. }),
                        "{e}"
                    );
                    errors += 1;
                }
            }
        }
    }
    let killed = killer.await.unwrap();
    assert!(killed > 0, "the test killed no connection");
    assert_eq!(
        done.len(),
        total,
        "messages lost after {killed} killed connections ({errors} errors)"
    );
    assert!(pushed.iter().all(|id| done.contains(id)));
    let stats = retrying(|| q.stats()).await;
    assert_eq!((stats.depth, stats.in_flight, stats.delayed), (0, 0, 0));
}

async fn notify_wakes_a_waiting_pop_quickly(url: String) {
    // Polling so slow that only a notification can explain a quick wake-up.
    let slow =
        PostgresConfig::default().poll_interval(Duration::from_secs(20), Duration::from_secs(20));
    let consumer = backend(&url, slow).await;
    let producer = backend(&url, PostgresConfig::default()).await;
    let name = unique_queue_name("pg_notify");
    let _c = Cleanup(url.clone(), name.clone());
    let rx = consumer.queue(&name, QueueOptions::default()).unwrap();
    let tx = producer.queue(&name, QueueOptions::default()).unwrap();
    let waiting = tokio::spawn(async move {
        let d = rx.pop(Duration::from_secs(10)).await.unwrap();
        (Instant::now(), d)
    });
    // Let the pop poll once and the listener connect.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pushed_at = Instant::now();
    tx.push(Message::new("wake up")).await.unwrap();
    let (got_at, d) = waiting.await.unwrap();
    let d = d.expect("the waiting pop got the message");
    let latency = got_at - pushed_at;
    assert!(latency < Duration::from_secs(1), "woken after {latency:?}");
    tx.delete(&d.receipt).await.unwrap();

    // A push committed in a transaction notifies at commit.
    let rx = consumer.queue(&name, QueueOptions::default()).unwrap();
    let waiting = tokio::spawn(async move {
        rx.pop(Duration::from_secs(10))
            .await
            .unwrap()
            .map(|d| (Instant::now(), d))
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut t = producer.pool().begin().await.unwrap();
    tx.push_in_tx(&mut t, Message::new("in tx")).await.unwrap();
    let committed_at = Instant::now();
    t.commit().await.unwrap();
    let (got_at, _) = waiting.await.unwrap().expect("delivered after commit");
    assert!(got_at - committed_at < Duration::from_secs(1));
}

async fn batch_delete_reports_stale_receipts_by_index(url: String) {
    let b = backend(&url, PostgresConfig::default()).await;
    let (q, _c) = open(&b, &url, "pg_batch_delete", QueueOptions::default());
    q.push_batch((0..5).map(|i| Message::new(format!("{i}"))).collect())
        .await
        .unwrap();
    let ds = q.pop_batch(5, Duration::ZERO).await.unwrap();
    assert_eq!(ds.len(), 5);
    q.delete(&ds[1].receipt).await.unwrap();
    let receipts: Vec<_> = ds.iter().map(|d| d.receipt.clone()).collect();
    match q.delete_batch(&receipts).await {
        Err(QueueError::PartialBatch { failures, .. }) => {
            assert_eq!(
                failures.iter().map(|f| f.index).collect::<Vec<_>>(),
                vec![1]
            );
            assert!(matches!(failures[0].error, QueueError::StaleReceipt { .. }));
        }
        other => panic!("expected a partial batch, got {other:?}"),
    }
    assert_eq!(q.stats().await.unwrap().in_flight, 0);
}

async fn ordering_keys_hold_under_concurrent_claims(url: String) {
    let b = backend(&url, PostgresConfig::default()).await;
    let (q, _c) = open(&b, &url, "pg_keys", QueueOptions::default());
    let msgs: Vec<_> = (0..40)
        .map(|i| Message::new(format!("{i}")).with_ordering_key(format!("k{}", i % 4)))
        .collect();
    q.push_batch(msgs).await.unwrap();
    let q = Arc::new(q);
    // Two claimers at once: between them, at most one message per key.
    let (a, b2) = tokio::join!(
        q.pop_batch(40, Duration::ZERO),
        q.pop_batch(40, Duration::ZERO)
    );
    let all: Vec<_> = a.unwrap().into_iter().chain(b2.unwrap()).collect();
    let mut keys: Vec<_> = all
        .iter()
        .map(|d| d.message.ordering_key.clone().unwrap())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys.len(),
        all.len(),
        "two messages of one key were leased at once"
    );
    assert_eq!(all.len(), 4);
    for d in &all {
        let n: usize = std::str::from_utf8(&d.message.payload)
            .unwrap()
            .parse()
            .unwrap();
        assert!(n < 4, "a key's head is its first message, got {n}");
    }
}

/// Pops cut short at random points (a timeout, a `select!`, a worker's
/// shutdown) must leave every pooled connection usable and outside any
/// transaction: later pushes all commit, and the pool does not run dry.
async fn pops_cut_short_leave_the_pool_healthy(url: String) {
    let b = backend(&url, PostgresConfig::default().max_connections(2)).await;
    let (q, _c) = open(&b, &url, "pg_cut", QueueOptions::default());
    cut_pops_short_then_push_40(&q).await;
    let other = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let visible: i64 =
        sqlx::query_scalar("SELECT count(*) FROM flextide_queue_messages WHERE queue = $1")
            .bind(q.queue_name())
            .fetch_one(&other)
            .await
            .unwrap();
    other.close().await;
    assert!(
        visible >= 40,
        "only {visible} of 41 messages are visible to another connection"
    );
}

async fn connector_admin_operations(url: String) {
    flextide_queue_sql::test_support::check_admin_by_url(
        &flextide_queue_postgres::PostgresConnector,
        &url,
    )
    .await;
}

/// The autovacuum check sees the server's setting and a table's own
/// `autovacuum_enabled = false`.
async fn autovacuum_problems_are_found(url: String) {
    let (pool, schema, b) = schema_backend(&url, 2).await;
    let server: String = sqlx::query_scalar("SHOW autovacuum")
        .fetch_one(&pool)
        .await
        .unwrap();
    let server_off =
        |problems: &[String]| problems.iter().any(|p| p.contains("server's autovacuum"));
    let problems = b.autovacuum_problems().await.unwrap();
    assert_eq!(server_off(&problems), server != "on", "{problems:?}");
    assert!(
        !problems.iter().any(|p| p.contains(&schema)),
        "{problems:?}"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE \"{schema}\".flextide_queue_messages SET (autovacuum_enabled = false)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let problems = b.autovacuum_problems().await.unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&schema) && p.contains("flextide_queue_messages")),
        "{problems:?}"
    );
    drop_schema(&pool, &schema).await;
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "postgres",
        "FLEXTIDE_TEST_POSTGRES_URL",
        vec![
            integration_test!(connector_admin_operations),
            integration_test!(concurrent_claimers_never_share_a_message).threads(4),
            integration_test!(crashed_consumer_lease_expires_and_message_returns),
            integration_test!(a_lowered_max_attempts_dead_letters_waiting_messages),
            integration_test!(push_in_tx_follows_the_transaction),
            integration_test!(unique_pushes_follow_transactions_across_pools),
            integration_test!(unique_pushes_race_over_four_pools).threads(4),
            integration_test!(migrate_twice_and_concurrently_is_harmless).threads(2),
            integration_test!(an_upgrade_to_version_4_keeps_delayed_messages),
            integration_test!(killed_connections_lose_nothing).threads(4),
            integration_test!(notify_wakes_a_waiting_pop_quickly).threads(2),
            integration_test!(batch_delete_reports_stale_receipts_by_index),
            integration_test!(ordering_keys_hold_under_concurrent_claims),
            integration_test!(pops_cut_short_leave_the_pool_healthy),
            integration_test!(autovacuum_problems_are_found),
            integration_test!(claims_walk_the_index_without_statistics),
            integration_test!(claims_skip_leased_and_retried_rows),
            integration_test!(claims_and_deletes_ignore_statistics_taken_empty),
        ],
    )
}
