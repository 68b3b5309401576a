//! The claim's plan does not depend on the table's statistics.

use std::time::{Duration, Instant};

use flextide_queue_core::{Message, QueueOptions, QueueProvider};
use flextide_queue_postgres::sqlx;

const BACKLOG: usize = 20_000;

/// Pushes `n` messages tagged `tag` in batches of 1,000, each delayed by
/// `delay` when given.
async fn push_many(q: &impl QueueProvider, n: usize, tag: &str, delay: Option<Duration>) {
    for chunk in 0..n.div_ceil(1_000) {
        let batch: Vec<Message> = (chunk * 1_000..n.min((chunk + 1) * 1_000))
            .map(|i| {
                let m = Message::new(format!("{tag}-{i}").into_bytes());
                match delay {
                    Some(d) => m.with_delay(d),
                    None => m,
                }
            })
            .collect();
        q.push_batch(batch).await.unwrap();
    }
}

/// Index entries the claim index returned so far (`idx_tup_read`), as the
/// statistics system last heard from the server processes.
async fn claim_index_reads(pool: &sqlx::PgPool, schema: &str) -> i64 {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT idx_tup_read FROM pg_stat_user_indexes
         WHERE schemaname = $1 AND indexrelname = 'flextide_queue_messages_ready_idx'",
    )
    .bind(schema)
    .fetch_one(&mut *conn)
    .await
    .unwrap()
}

/// A queue table whose statistics do not know its backlog (never analyzed,
/// as on a server with autovacuum off, or before autovacuum gets to it)
/// made the planner sort every ready row of the queue for each claim: a
/// claim of 10 from 20,000 ready messages read all 20,000 entries of the
/// claim index. The claim walks the index and stops at its limit instead.
pub(crate) async fn claims_walk_the_index_without_statistics(url: String) {
    let (pool, schema, b) = super::schema_backend(&url, 4).await;
    let q = b.queue("plan", QueueOptions::default()).unwrap();
    push_many(&q, BACKLOG, "ready", None).await;
    let analyzed: bool = sqlx::query_scalar(
        "SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL
         FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'flextide_queue_messages'",
    )
    .bind(&schema)
    .fetch_one(&pool)
    .await
    .unwrap();
    let before = claim_index_reads(&pool, &schema).await;
    let got = q.pop_batch(10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 10);
    // A server process reports its counts when it goes idle, at most once a
    // second (after up to 10 s when it reported just before): wait for the
    // claim's, which arrive all at once.
    let until = Instant::now() + Duration::from_secs(60);
    let read = loop {
        let read = claim_index_reads(&pool, &schema).await - before;
        if read > 0 || Instant::now() > until {
            break read;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Every part of the claim, not only the walk of ready_idx: heap rows
    // read by the library's statement, counted within its transaction.
    let (claimed, heap_read) = claim_reads(&pool, &schema, "plan", 10).await;
    super::drop_schema(&pool, &schema).await;
    // Dropped before the checks, so a failure leaves no 20,000 rows behind.
    assert_eq!(claimed, 10);
    assert!(
        heap_read < 1_000,
        "a claim of 10 read {heap_read} rows of a never-analyzed backlog of {BACKLOG}"
    );
    assert!(read > 0, "the claim's index reads were never reported");
    assert!(
        read < 1_000,
        "a claim of 10 read {read} entries of the claim index for a backlog of {BACKLOG} \
         (the table was {}analyzed): it sorted the backlog instead of walking the index",
        if analyzed { "" } else { "never " }
    );
}

/// Heap rows of the schema's message table read so far in this
/// transaction (sequential scans and index fetches), from
/// `pg_stat_xact_user_tables`: counted within the transaction, so no
/// statistics delay is involved.
async fn rows_read(tx: &mut sqlx::PgConnection, schema: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
         FROM pg_stat_xact_user_tables WHERE schemaname = $1 AND relname = 'flextide_queue_messages'",
    )
    .bind(schema)
    .fetch_one(tx)
    .await
    .unwrap()
}

/// Runs `statement` with `binds` in a transaction opened by `begin` with
/// `schema` on its search path, then rolls it back. Returns the rows it
/// returned and the heap rows it read ([`rows_read`]).
async fn reads_of(
    pool: &sqlx::PgPool,
    schema: &str,
    begin: &'static str,
    statement: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> (usize, i64) {
    let mut conn = pool.acquire().await.unwrap();
    let mut tx = sqlx::Connection::begin_with(&mut *conn, begin)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL search_path TO \"{schema}\""
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    let before = rows_read(&mut tx, schema).await;
    let returned = statement.fetch_all(&mut *tx).await.unwrap().len();
    let after = rows_read(&mut tx, schema).await;
    tx.rollback().await.unwrap();
    (returned, after - before)
}

/// The library's claim of `max` from `queue`, in the library's claim
/// transaction, rolled back: (rows claimed, heap rows read).
async fn claim_reads(pool: &sqlx::PgPool, schema: &str, queue: &str, max: i64) -> (usize, i64) {
    use flextide_queue_postgres::raw_sql;
    let claim = raw_sql::claim();
    let statement = sqlx::query(sqlx::AssertSqlSafe(claim))
        .bind(queue.to_owned())
        .bind(25_i32)
        .bind("max attempts exceeded (25)")
        .bind(max)
        .bind(60_000_i64)
        .bind("plan-test")
        .bind("postgres-");
    reads_of(pool, schema, raw_sql::claim_begin(), statement).await
}

/// A claim reads the rows it takes and little else, however many rows are
/// delayed, wait for a retry or are in flight. Before schema version 4, one
/// index held every row of a queue: the claim walked past each delayed or
/// leased row at the head (a retry's backoff, a worker's batches in
/// flight), and its sweep of exhausted leases read every row delivered at
/// least once, so a backlog of nacked messages (after an outage, say) made
/// each claim read all of them.
pub(crate) async fn claims_skip_leased_and_retried_rows(url: String) {
    let (pool, schema, b) = super::schema_backend(&url, 4).await;
    let q = b.queue("plan", QueueOptions::default()).unwrap();
    // 5,000 delayed for an hour at the head, pushed first.
    push_many(&q, 5_000, "later", Some(Duration::from_secs(3_600))).await;
    push_many(&q, BACKLOG, "ready", None).await;
    // 2,500 in flight, at the head of the queue.
    let mut leased = Vec::new();
    while leased.len() < 2_500 {
        let got = q
            .pop_batch(2_500 - leased.len(), Duration::ZERO)
            .await
            .unwrap();
        assert!(!got.is_empty(), "the queue ran dry after {}", leased.len());
        leased.extend(got);
    }
    // The rest as nacks leave them: not leased, an attempt counted, ready.
    // Analyzed, so the planner knows how many there are.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "UPDATE \"{schema}\".flextide_queue_messages SET attempts = 1 WHERE token IS NULL;
         ANALYZE \"{schema}\".flextide_queue_messages"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let (claimed, read) = claim_reads(&pool, &schema, "plan", 10).await;
    // Then the 5,000 delayed ones come due at once: a claim takes what came
    // due first and reads no more of them than it takes.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "UPDATE \"{schema}\".flextide_queue_messages SET visible_at = visible_at - 7200000 WHERE token = '';
         ANALYZE \"{schema}\".flextide_queue_messages"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let (due_claimed, due_read) = claim_reads(&pool, &schema, "plan", 10).await;
    super::drop_schema(&pool, &schema).await;
    assert_eq!(due_claimed, 10);
    assert!(
        due_read < 1_000,
        "a claim of 10 read {due_read} rows with 5,000 delayed messages come due at once"
    );
    assert_eq!(claimed, 10);
    assert!(
        read < 1_000,
        "a claim of 10 read {read} rows with 5,000 delayed, 2,500 in flight and {} waiting \
         for a retry",
        BACKLOG - 2_500
    );
}

/// The library's batch delete of `receipts`, rolled back: (rows deleted,
/// heap rows read).
async fn delete_reads(
    pool: &sqlx::PgPool,
    schema: &str,
    queue: &str,
    receipts: &[flextide_queue_core::Receipt],
) -> (usize, i64) {
    use flextide_queue_postgres::raw_sql;
    let (seqs, tokens): (Vec<i64>, Vec<String>) = receipts
        .iter()
        .map(|r| {
            let (seq, token) = r.as_str().split_once(':').unwrap();
            (seq.parse::<i64>().unwrap(), token.to_owned())
        })
        .unzip();
    let statement = sqlx::query(sqlx::AssertSqlSafe(raw_sql::delete_batch()))
        .bind(seqs)
        .bind(tokens)
        .bind(queue.to_owned());
    reads_of(pool, schema, "BEGIN", statement).await
}

/// Statistics taken while the table was empty but kept its pages (a
/// vacuum between two bursts) make every estimate one row. Claims and
/// batch deletes that joined the table to a handful of seqs then read the
/// whole table (a full scan of the primary key per claim, a sequential scan
/// per batch delete: 1.3 s each on a 100,000-message backlog, and the
/// bench's end-to-end rows fell to a few hundred messages a second). They
/// reach rows by primary key lookups whatever the statistics say.
pub(crate) async fn claims_and_deletes_ignore_statistics_taken_empty(url: String) {
    let (pool, schema, b) = super::schema_backend(&url, 4).await;
    let q = b.queue("plan", QueueOptions::default()).unwrap();
    let table = format!("\"{schema}\".flextide_queue_messages");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE {table} SET (vacuum_truncate = false, autovacuum_enabled = false)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    push_many(&q, 1_000, "first", None).await;
    loop {
        let got = q.pop_batch(500, Duration::ZERO).await.unwrap();
        if got.is_empty() {
            break;
        }
        let receipts: Vec<_> = got.iter().map(|d| d.receipt.clone()).collect();
        q.delete_batch(&receipts).await.unwrap();
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
        .execute(&pool)
        .await
        .unwrap();
    push_many(&q, BACKLOG, "backlog", None).await;
    let (claimed, claim_read) = claim_reads(&pool, &schema, "plan", 10).await;
    let held = q.pop_batch(100, Duration::ZERO).await.unwrap();
    let receipts: Vec<_> = held.iter().map(|d| d.receipt.clone()).collect();
    let (deleted, delete_read) = delete_reads(&pool, &schema, "plan", &receipts).await;
    super::drop_schema(&pool, &schema).await;
    assert_eq!((claimed, held.len(), deleted), (10, 100, 100));
    assert!(
        claim_read < 1_000,
        "a claim of 10 read {claim_read} rows of {BACKLOG} with statistics taken empty"
    );
    assert!(
        delete_read < 1_000,
        "a batch delete of 100 read {delete_read} rows of {BACKLOG} with statistics taken empty"
    );
}
