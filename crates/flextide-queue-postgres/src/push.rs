//! Enqueueing: checks a message, encodes it, inserts it (alone, in a batch, or inside your transaction).

use flextide_queue_core::{
    BatchFailure, Message, MessageId, QueueError, Result, backend::check_payload,
};
use flextide_queue_sql::{check_delay, headers_text};
use sqlx::{AssertSqlSafe, PgConnection};

use crate::{BACKEND, PostgresQueue, error::map_err};

pub(crate) async fn push(q: &PostgresQueue, message: Message) -> Result<MessageId> {
    q.push_on(q.pool(), &message).await?;
    Ok(message.id)
}

pub(crate) async fn push_batch(
    q: &PostgresQueue,
    messages: Vec<Message>,
) -> Result<Vec<MessageId>> {
    q.push_batch_on(q.pool(), &messages).await?;
    Ok(messages.into_iter().map(|m| m.id).collect())
}

/// A message's columns, checked and encoded for binding.
struct Encoded<'m> {
    id: &'m str,
    payload: &'m [u8],
    headers: String,
    priority: i16,
    ordering_key: Option<&'m str>,
    delay_ms: i64,
}

impl PostgresQueue {
    fn encode<'m>(&self, m: &'m Message) -> Result<Encoded<'m>> {
        check_payload(
            BACKEND,
            m.payload.len(),
            self.backend.inner.config.max_payload_bytes,
        )?;
        if m.dedup_id.is_some() {
            return Err(QueueError::unsupported(BACKEND, "dedup_id"));
        }
        let delay_ms = check_delay(BACKEND, m.delay.unwrap_or_default())?;
        Ok(Encoded {
            id: m.id.as_str(),
            payload: &m.payload,
            headers: headers_text(m),
            priority: i16::from(m.priority),
            ordering_key: m.ordering_key.as_deref(),
            delay_ms,
        })
    }

    /// Enqueues `message` inside your transaction (or on any connection), so
    /// it becomes visible only if and when that transaction commits; the
    /// wake-up notification is sent at commit too.
    ///
    /// ```no_run
    /// # async fn demo(queue: flextide_queue_postgres::PostgresQueue) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = queue.pool().begin().await?;
    /// // ... your own writes on &mut *tx ...
    /// queue.push_in_tx(&mut tx, flextide_queue_core::Message::new("next step")).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn push_in_tx(&self, conn: &mut PgConnection, message: Message) -> Result<MessageId> {
        self.push_on(conn, &message).await?;
        Ok(message.id)
    }

    /// Enqueues several messages inside your transaction, in one statement.
    pub async fn push_batch_in_tx(
        &self,
        conn: &mut PgConnection,
        messages: Vec<Message>,
    ) -> Result<Vec<MessageId>> {
        self.push_batch_on(conn, &messages).await?;
        Ok(messages.into_iter().map(|m| m.id).collect())
    }

    async fn push_on<'c, E>(&self, conn: E, message: &Message) -> Result<()>
    where
        E: sqlx::Executor<'c, Database = sqlx::Postgres>,
    {
        let e = self.encode(message)?;
        sqlx::query(AssertSqlSafe(self.sql().push.clone()))
            .bind(&*self.name)
            .bind(e.id)
            .bind(e.payload)
            .bind(e.headers)
            .bind(e.priority)
            .bind(e.ordering_key)
            .bind(e.delay_ms)
            .bind(self.channel())
            .execute(conn)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn push_batch_on<'c, E>(&self, conn: E, messages: &[Message]) -> Result<()>
    where
        E: sqlx::Executor<'c, Database = sqlx::Postgres>,
    {
        if messages.is_empty() {
            return Ok(());
        }
        let mut failures = Vec::new();
        let mut ids = Vec::with_capacity(messages.len());
        let mut payloads = Vec::with_capacity(messages.len());
        let mut headers = Vec::with_capacity(messages.len());
        let mut priorities = Vec::with_capacity(messages.len());
        let mut keys = Vec::with_capacity(messages.len());
        let mut delays = Vec::with_capacity(messages.len());
        for (index, m) in messages.iter().enumerate() {
            match self.encode(m) {
                Ok(e) => {
                    ids.push(e.id);
                    payloads.push(e.payload);
                    headers.push(e.headers);
                    priorities.push(e.priority);
                    keys.push(e.ordering_key);
                    delays.push(e.delay_ms);
                }
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        if !ids.is_empty() {
            sqlx::query(AssertSqlSafe(self.sql().push_batch.clone()))
                .bind(&*self.name)
                .bind(ids)
                .bind(payloads)
                .bind(headers)
                .bind(priorities)
                .bind(keys)
                .bind(delays)
                .bind(self.channel())
                .execute(conn)
                .await
                .map_err(map_err)?;
        }
        flextide_queue_core::backend::batch_result(BACKEND, (), failures)
    }
}
