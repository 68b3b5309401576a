//! Enqueueing: checks a message and inserts it (alone, in multi-row INSERTs, or inside your transaction); a message with a dedup id claims it in the same transaction.

use flextide_queue_core::Message;
use flextide_queue_core::{
    BatchFailure, MessageId, Pushed, Result,
    backend::{self},
};
use flextide_queue_sql::{
    check_delay,
    dedup::{
        ExpiredSweep, SWEEP_LIMIT, UniqueBatch, check_dedup_id, claim_outcome, dedup_window_ms,
    },
    detach, headers_text, millis,
};
use sqlx::{QueryBuilder, Sqlite, sqlite::SqliteConnection};

use crate::{
    BACKEND, CAPABILITIES, SqliteQueue, error,
    sql::{DEDUP_CLAIM_SQL, DEDUP_SWEEP_SQL, INSERT_HEAD, INSERT_SQL},
};

pub(crate) async fn push_unique(q: &SqliteQueue, message: Message) -> Result<Pushed> {
    q.check_message(&message)?;
    if message.dedup_id.is_some() {
        let mut pushed = q.push_unique_batch(vec![message]).await?;
        return Ok(pushed.pop().expect("one outcome per message"));
    }
    let id = message.id.clone();
    let mut conn = q.inner.pool.acquire().await.map_err(error::map)?;
    q.insert_one(&mut conn, &message).await?;
    drop(conn);
    q.inner.wake.notify_waiters();
    Ok(Pushed::Enqueued(id))
}

pub(crate) async fn push_batch(q: &SqliteQueue, messages: Vec<Message>) -> Result<Vec<MessageId>> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    // Refused items are reported by index; the others are enqueued
    // together in one transaction of multi-row INSERTs.
    let mut failures = Vec::new();
    let mut ids: Vec<MessageId> = messages.iter().map(|m| m.id.clone()).collect();
    let mut valid = Vec::with_capacity(messages.len());
    for (index, message) in messages.into_iter().enumerate() {
        match q.check_message(&message) {
            Ok(()) => valid.push((index, message)),
            Err(error) => failures.push(BatchFailure { index, error }),
        }
    }
    if valid.iter().any(|(_, m)| m.dedup_id.is_some()) {
        let (indexes, valid): (Vec<usize>, Vec<Message>) = valid.into_iter().unzip();
        let pushed = q.push_unique_batch(valid).await?;
        for (index, pushed) in indexes.into_iter().zip(pushed) {
            ids[index] = pushed.into_id();
        }
    } else if !valid.is_empty() {
        let valid: Vec<&Message> = valid.iter().map(|(_, m)| m).collect();
        let now = backend::now_millis();
        if valid.len() <= PUSH_CHUNK {
            q.insert_chunk(&q.inner.pool, &valid, now).await?;
        } else {
            let mut tx = q
                .inner
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(error::map)?;
            for chunk in valid.chunks(PUSH_CHUNK) {
                q.insert_chunk(&mut *tx, chunk, now).await?;
            }
            tx.commit().await.map_err(error::map)?;
        }
        q.inner.wake.notify_waiters();
    }
    flextide_queue_core::backend::batch_result(BACKEND, ids, failures)
}

impl SqliteQueue {
    pub(crate) fn check_message(&self, message: &Message) -> Result<()> {
        check_dedup_id(BACKEND, message)?;
        check_delay(BACKEND, message.delay.unwrap_or_default())?;
        backend::check_payload(
            BACKEND,
            message.payload.len(),
            CAPABILITIES.max_payload_bytes,
        )
    }

    /// Checked messages, some with dedup ids, in one write transaction of
    /// their own (run to the end even if the caller is cut short: contract
    /// clause 13), which also sweeps expired dedup rows when due.
    async fn push_unique_batch(&self, messages: Vec<Message>) -> Result<Vec<Pushed>> {
        let q = self.clone();
        let sweep = self.inner.dedup_sweep.due();
        let pushed = detach(BACKEND, async move {
            let mut tx = q
                .inner
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(error::map)?;
            let now = backend::now_millis();
            let pushed = q.insert_unique(&mut tx, &messages, now).await?;
            if sweep {
                let swept = sqlx::query(DEDUP_SWEEP_SQL)
                    .bind(now)
                    .bind(SWEEP_LIMIT)
                    .execute(&mut *tx)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(error::map);
                ExpiredSweep::report(BACKEND, swept);
            }
            tx.commit().await.map_err(error::map)?;
            Ok(pushed)
        })
        .await?;
        if pushed.iter().any(|p| !p.is_duplicate()) {
            self.inner.wake.notify_waiters();
        }
        Ok(pushed)
    }

    /// Claims the dedup ids of `messages` and inserts those that won (and
    /// those without one), on `conn`, which must be inside a transaction.
    pub(crate) async fn insert_unique(
        &self,
        conn: &mut SqliteConnection,
        messages: &[Message],
        now: i64,
    ) -> Result<Vec<Pushed>> {
        let mut batch = UniqueBatch::new(BACKEND, messages.iter().map(|m| m.dedup_id.as_deref()));
        let window = dedup_window_ms(&self.inner.options);
        let claims: Vec<(String, usize)> = batch
            .claims()
            .into_iter()
            .map(|(key, i)| (key.to_owned(), i))
            .collect();
        for (key, first) in claims {
            let (message_id, duplicates): (String, i64) = sqlx::query_as(DEDUP_CLAIM_SQL)
                .bind(self.inner.name.as_str())
                .bind(key.as_str())
                .bind(messages[first].id.as_str())
                .bind(now)
                .bind(window)
                .fetch_one(&mut *conn)
                .await
                .map_err(error::map)?;
            batch.claimed(&key, claim_outcome(message_id, duplicates));
        }
        let inserted: Vec<&Message> = messages
            .iter()
            .enumerate()
            .filter(|(i, _)| batch.inserts(*i))
            .map(|(_, m)| m)
            .collect();
        for chunk in inserted.chunks(PUSH_CHUNK) {
            self.insert_chunk(&mut *conn, chunk, now).await?;
        }
        messages
            .iter()
            .enumerate()
            .map(|(i, m)| batch.outcome(i, &m.id))
            .collect()
    }

    /// [`SqliteQueue::push_in_tx`], saying whether the message was enqueued
    /// or dropped as a duplicate (see `QueueProvider::push_unique`). The
    /// dedup id is claimed in your transaction: a rollback forgets it.
    pub async fn push_unique_in_tx(
        &self,
        conn: &mut SqliteConnection,
        message: Message,
    ) -> Result<Pushed> {
        self.check_message(&message)?;
        if message.dedup_id.is_some() {
            let now = backend::now_millis();
            let mut pushed = self
                .insert_unique(conn, std::slice::from_ref(&message), now)
                .await?;
            return Ok(pushed.pop().expect("one outcome per message"));
        }
        let id = message.id.clone();
        self.insert_one(&mut *conn, &message).await?;
        Ok(Pushed::Enqueued(id))
    }

    /// One multi-row INSERT of up to [`PUSH_CHUNK`] messages.
    pub(crate) async fn insert_chunk<'e, E>(
        &self,
        executor: E,
        chunk: &[&Message],
        now: i64,
    ) -> Result<()>
    where
        E: sqlx::Executor<'e, Database = Sqlite>,
    {
        let mut insert = QueryBuilder::<Sqlite>::new(INSERT_HEAD);
        insert.push_values(chunk, |mut row, m| {
            row.push_bind(self.inner.name.as_str())
                .push_bind(m.id.as_str())
                .push_bind(m.payload.as_ref())
                .push_bind(headers_text(m))
                .push_bind(i64::from(m.priority))
                .push_bind(m.ordering_key.as_deref())
                .push_bind(now)
                .push_bind(now.saturating_add(millis(m.delay.unwrap_or_default())))
                .push_bind(m.dedup_id.as_deref());
        });
        insert.build().execute(executor).await.map_err(error::map)?;
        Ok(())
    }

    pub(crate) async fn insert_one(
        &self,
        conn: &mut SqliteConnection,
        message: &Message,
    ) -> Result<()> {
        let now = backend::now_millis();
        sqlx::query(INSERT_SQL)
            .bind(self.inner.name.as_str())
            .bind(message.id.as_str())
            .bind(message.payload.as_ref())
            .bind(headers_text(message))
            .bind(i64::from(message.priority))
            .bind(message.ordering_key.as_deref())
            .bind(now)
            .bind(now.saturating_add(millis(message.delay.unwrap_or_default())))
            .bind(message.dedup_id.as_deref())
            .execute(conn)
            .await
            .map_err(error::map)?;
        Ok(())
    }
}

/// Rows per multi-row INSERT: 9 variables each, well below SQLite's limit of
/// 32 766 bound variables.
pub(crate) const PUSH_CHUNK: usize = 1000;
