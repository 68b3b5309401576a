//! Statement texts used on the hot path, whose query plans a test checks.

use sqlx::{QueryBuilder, Sqlite};

/// The start of a push: `VALUES` and the rows follow. Each row binds queue,
/// id, payload, headers, priority, ordering key, enqueued at, visible at,
/// dedup id.
macro_rules! insert_head {
    () => {
        "INSERT INTO flextide_queue_messages \
         (queue, id, payload, headers, priority, ordering_key, enqueued_at, visible_at, dedup_id) "
    };
}

/// [`INSERT_SQL`] without its row, for a multi-row `push_values`.
pub const INSERT_HEAD: &str = insert_head!();

/// One push. Binds: queue, id, payload, headers, priority, ordering key,
/// enqueued at, visible at, dedup id.
pub const INSERT_SQL: &str = concat!(insert_head!(), "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");

/// Claims a dedup id for a push (see `flextide_queue_sql::dedup`): inserts
/// its row, takes over an expired one, or counts a duplicate. SQLite's
/// UPDATE reads every column's old value. Binds: queue, dedup id, message
/// id, now, window ms. Returns the message id holding the dedup id and
/// `duplicates` (0: this push won).
pub(crate) const DEDUP_CLAIM_SQL: &str = "INSERT INTO flextide_queue_dedup \
     (queue, dedup_id, message_id, expires_at, duplicates) VALUES (?1, ?2, ?3, ?4 + ?5, 0) \
     ON CONFLICT (queue, dedup_id) DO UPDATE SET \
       message_id = CASE WHEN expires_at <= ?4 THEN excluded.message_id ELSE message_id END, \
       duplicates = CASE WHEN expires_at <= ?4 THEN 0 ELSE duplicates + 1 END, \
       expires_at = CASE WHEN expires_at <= ?4 THEN excluded.expires_at ELSE expires_at END \
     RETURNING message_id, duplicates";

/// Deletes up to ?2 expired dedup rows of any queue. Binds: now, limit.
pub(crate) const DEDUP_SWEEP_SQL: &str = "DELETE FROM flextide_queue_dedup WHERE rowid IN ( \
     SELECT rowid FROM flextide_queue_dedup WHERE expires_at <= ?1 LIMIT ?2)";

/// Deletes the rows of `queue` whose (seq, token) pair is in `rows`,
/// returning the seq and token of each deleted.
///
/// The rows are found by primary key (`seq IN (…)`), one lookup each: the
/// unary `+` keeps the planner off the claim index, whose `queue = ?`
/// prefix would walk the whole queue (59 ms per batch on a 200,000-row
/// queue instead of well under one). The (seq, token) pairs then fence.
/// Binds: every seq, the queue, then each (seq, token) pair.
pub fn delete_batch<'a>(
    queue: &'a str,
    rows: impl IntoIterator<Item = (i64, &'a str)>,
) -> QueryBuilder<Sqlite> {
    let rows: Vec<(i64, &str)> = rows.into_iter().collect();
    let mut delete =
        QueryBuilder::<Sqlite>::new("DELETE FROM flextide_queue_messages WHERE seq IN (");
    let mut seqs = delete.separated(", ");
    for (seq, _) in &rows {
        seqs.push_bind(*seq);
    }
    delete
        .push(") AND +queue = ")
        .push_bind(queue)
        .push(" AND (seq, token) IN (VALUES ");
    let mut list = delete.separated(", ");
    for (seq, token) in rows {
        list.push("(")
            .push_bind_unseparated(seq)
            .push_unseparated(", ")
            .push_bind_unseparated(token)
            .push_unseparated(")");
    }
    delete.push(") RETURNING seq, token");
    delete
}

/// Leases up to ?6 available messages in one atomic statement. Only the head
/// (lowest seq) of an ordering key is claimable, so a key is blocked while
/// its head is leased or not yet due. Binds: token, lease end, queue, now,
/// max attempts, limit, foreign id prefix. A row another producer inserted
/// with an empty id gets its stable foreign id (`sqlite-<seq>`) here.
pub const CLAIM_SQL: &str = "UPDATE flextide_queue_messages SET token = ?1, attempts = attempts + 1, visible_at = ?2, \
     id = CASE WHEN id = '' THEN ?7 || seq ELSE id END \
     WHERE seq IN ( \
       SELECT m.seq FROM flextide_queue_messages AS m \
       WHERE m.queue = ?3 AND m.visible_at <= ?4 AND m.purged = 0 \
         AND (m.token IS NULL OR m.attempts < ?5) \
         AND (m.ordering_key IS NULL OR m.seq = ( \
           SELECT MIN(k.seq) FROM flextide_queue_messages AS k \
           WHERE k.queue = ?3 AND k.ordering_key = m.ordering_key)) \
       ORDER BY m.priority DESC, m.seq \
       LIMIT ?6) \
     RETURNING seq, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts";

/// Gives back what a claim leased for a pop that is gone: visible now, the
/// attempt not counted. Binds: queue, token, now. A message purged
/// meanwhile keeps its lease, and the sweep drops it.
pub(crate) const RELEASE_SQL: &str = "UPDATE flextide_queue_messages \
     SET token = NULL, visible_at = ?3, attempts = MAX(attempts - 1, 0) \
     WHERE queue = ?1 AND token = ?2 AND purged = 0";

/// Gives back one delivery at once, the attempt not counted (`release`).
/// A row purged while leased keeps its token and count: its lease ends
/// now, and the next sweep drops it. Binds: seq, queue, token, now.
pub(crate) const RELEASE_ONE_SQL: &str = "UPDATE flextide_queue_messages \
     SET visible_at = ?4, \
         token = CASE WHEN purged = 1 THEN token ELSE NULL END, \
         attempts = CASE WHEN purged = 1 THEN attempts ELSE MAX(attempts - 1, 0) END \
     WHERE seq = ?1 AND queue = ?2 AND token = ?3";

/// Whether any expired lease must be dead-lettered or dropped (purged).
/// Binds: queue, now, max attempts.
pub const SWEEP_CHECK_SQL: &str = "SELECT EXISTS (SELECT 1 FROM flextide_queue_messages \
     WHERE queue = ?1 AND token IS NOT NULL AND visible_at <= ?2 AND (purged = 1 OR attempts >= ?3))";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, QueueOptions, QueueProvider, SqliteQueue, connect_pool, migrate};

    /// The hot queries walk indexes: no full scan, no sort of the queue.
    #[tokio::test]
    async fn hot_queries_use_indexes() {
        let pool = connect_pool("sqlite::memory:").await.unwrap();
        migrate(&pool).await.unwrap();
        let q = SqliteQueue::from_pool(pool.clone(), "plan", QueueOptions::default()).unwrap();
        let batch = (0..300)
            .map(|i| Message::new(format!("{i}")).with_priority((i % 3) as u8))
            .collect();
        q.push_batch(batch).await.unwrap();
        let explain = |sql: &str| sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}"));
        let claim: Vec<(i64, i64, i64, String)> = sqlx::query_as(explain(CLAIM_SQL))
            .bind("t")
            .bind(0_i64)
            .bind("plan")
            .bind(1_i64)
            .bind(5_i64)
            .bind(10_i64)
            .fetch_all(&pool)
            .await
            .unwrap();
        let sweep: Vec<(i64, i64, i64, String)> = sqlx::query_as(explain(SWEEP_CHECK_SQL))
            .bind("plan")
            .bind(1_i64)
            .bind(5_i64)
            .fetch_all(&pool)
            .await
            .unwrap();
        for rows in [claim, sweep] {
            let plan: Vec<String> = rows.into_iter().map(|r| r.3).collect();
            for step in &plan {
                assert!(
                    !step.contains("TEMP B-TREE"),
                    "sorts instead of walking an index: {plan:?}"
                );
                assert!(
                    !step.starts_with("SCAN")
                        || step.contains("INDEX")
                        || step == "SCAN CONSTANT ROW",
                    "full table scan: {plan:?}"
                );
            }
            assert!(
                plan.iter().any(|s| s.contains("flextide_queue_messages_")),
                "{plan:?}"
            );
        }
    }

    /// A batch ack looks its rows up by primary key: it never walks the
    /// queue through the claim index, however deep the queue.
    #[tokio::test]
    async fn batch_delete_uses_the_primary_key() {
        let pool = connect_pool("sqlite::memory:").await.unwrap();
        migrate(&pool).await.unwrap();
        let q = SqliteQueue::from_pool(pool.clone(), "plan", QueueOptions::default()).unwrap();
        let batch = (0..300).map(|i| Message::new(format!("{i}"))).collect();
        q.push_batch(batch).await.unwrap();
        let rows = [(1_i64, "a"), (2, "b"), (3, "c")];
        let sql = delete_batch("plan", rows).sql().as_str().to_owned();
        let mut explain = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(
            format!("EXPLAIN QUERY PLAN {sql}"),
        ));
        for (seq, _) in rows {
            explain = explain.bind(seq);
        }
        explain = explain.bind("plan");
        for (seq, token) in rows {
            explain = explain.bind(seq).bind(token);
        }
        let plan: Vec<String> = explain
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.3)
            .collect();
        let on_table: Vec<&String> = plan
            .iter()
            .filter(|s| s.contains("flextide_queue_messages"))
            .collect();
        assert!(!on_table.is_empty(), "{plan:?}");
        for step in on_table {
            assert!(
                step.starts_with("SEARCH") && step.contains("INTEGER PRIMARY KEY"),
                "the batch delete must look rows up by primary key: {plan:?}"
            );
        }
        // And it deletes what the pairs name, fenced by token.
        let d = q.pop(std::time::Duration::ZERO).await.unwrap().unwrap();
        let (seq, token) = q.decode(&d.receipt).unwrap();
        let deleted: Vec<(i64, String)> = delete_batch("plan", [(seq, token), (seq + 1, "wrong")])
            .build_query_as()
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(deleted, vec![(seq, token.to_owned())]);
    }
}
