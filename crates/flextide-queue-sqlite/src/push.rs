//! Enqueueing: checks a message and inserts it (alone, in multi-row INSERTs, or inside your transaction).

use flextide_queue_core::{
    BatchFailure, MessageId, Result,
    backend::{self},
};
use flextide_queue_core::{Message, QueueError};
use flextide_queue_sql::{check_delay, headers_text, millis};
use sqlx::{QueryBuilder, Sqlite, sqlite::SqliteConnection};

use crate::{
    BACKEND, CAPABILITIES, SqliteQueue, error,
    sql::{INSERT_HEAD, INSERT_SQL},
};

pub(crate) async fn push(q: &SqliteQueue, message: Message) -> Result<MessageId> {
    q.check_message(&message)?;
    let id = message.id.clone();
    let mut conn = q.inner.pool.acquire().await.map_err(error::map)?;
    q.insert_one(&mut conn, &message).await?;
    drop(conn);
    q.inner.wake.notify_waiters();
    Ok(id)
}

pub(crate) async fn push_batch(q: &SqliteQueue, messages: Vec<Message>) -> Result<Vec<MessageId>> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    // Refused items are reported by index; the others are enqueued
    // together in one transaction of multi-row INSERTs.
    let mut failures = Vec::new();
    let mut valid = Vec::with_capacity(messages.len());
    for (index, message) in messages.iter().enumerate() {
        match q.check_message(message) {
            Ok(()) => valid.push(message),
            Err(error) => failures.push(BatchFailure { index, error }),
        }
    }
    if !valid.is_empty() {
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
    flextide_queue_core::backend::batch_result(
        BACKEND,
        messages.into_iter().map(|m| m.id).collect(),
        failures,
    )
}

impl SqliteQueue {
    pub(crate) fn check_message(&self, message: &Message) -> Result<()> {
        if message.dedup_id.is_some() {
            return Err(QueueError::unsupported(BACKEND, "push with dedup_id"));
        }
        check_delay(BACKEND, message.delay.unwrap_or_default())?;
        backend::check_payload(
            BACKEND,
            message.payload.len(),
            CAPABILITIES.max_payload_bytes,
        )
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
                .push_bind(now.saturating_add(millis(m.delay.unwrap_or_default())));
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
            .execute(conn)
            .await
            .map_err(error::map)?;
        Ok(())
    }
}

/// Rows per multi-row INSERT: 8 variables each, well below SQLite's limit of
/// 32 766 bound variables.
pub(crate) const PUSH_CHUNK: usize = 1000;
