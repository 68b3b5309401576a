//! The claim's plan does not depend on the table's statistics.

use std::time::{Duration, Instant};

use flextide_queue_core::{Message, QueueOptions, QueueProvider};
use flextide_queue_postgres::sqlx;

const BACKLOG: usize = 20_000;

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
         WHERE schemaname = $1 AND indexrelname = 'flextide_queue_messages_claim_idx'",
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
    for chunk in 0..BACKLOG / 1_000 {
        let batch: Vec<Message> = (0..1_000)
            .map(|i| Message::new(format!("{chunk}-{i}").into_bytes()))
            .collect();
        q.push_batch(batch).await.unwrap();
    }
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
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&pool)
    .await
    .unwrap();
    // Dropped before the checks, so a failure leaves no 20,000 rows behind.
    assert!(read > 0, "the claim's index reads were never reported");
    assert!(
        read < 1_000,
        "a claim of 10 read {read} entries of the claim index for a backlog of {BACKLOG} \
         (the table was {}analyzed): it sorted the backlog instead of walking the index",
        if analyzed { "" } else { "never " }
    );
}
