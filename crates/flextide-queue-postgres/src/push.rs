//! Enqueueing: checks a message, encodes it, inserts it (alone, in a batch, or inside your transaction); messages with dedup ids claim them in the same statement.

use flextide_queue_core::{
    BatchFailure, Message, MessageId, Pushed, Result, backend::check_payload,
};
use flextide_queue_sql::{
    check_delay,
    dedup::{
        ExpiredSweep, SWEEP_LIMIT, UniqueBatch, check_dedup_id, claim_outcome, dedup_window_ms,
    },
    headers_text,
};
use sqlx::{AssertSqlSafe, PgConnection, Row};

use crate::{BACKEND, PostgresQueue, error::map_err};

pub(crate) async fn push_unique(q: &PostgresQueue, message: Message) -> Result<Pushed> {
    let unique = message.dedup_id.is_some();
    let (mut pushed, mut failures) = q.push_on(q.pool(), std::slice::from_ref(&message)).await?;
    if let Some(failure) = failures.pop() {
        return Err(failure.error);
    }
    if unique {
        q.sweep_dedup_if_due().await;
    }
    Ok(pushed.pop().expect("one outcome per message"))
}

pub(crate) async fn push_batch(
    q: &PostgresQueue,
    messages: Vec<Message>,
) -> Result<Vec<MessageId>> {
    let unique = messages.iter().any(|m| m.dedup_id.is_some());
    let (pushed, failures) = q.push_on(q.pool(), &messages).await?;
    if unique {
        q.sweep_dedup_if_due().await;
    }
    let ids = pushed.into_iter().map(Pushed::into_id).collect();
    flextide_queue_core::backend::batch_result(BACKEND, ids, failures)
}

/// A message's columns, checked and encoded for binding.
struct Encoded<'m> {
    id: &'m str,
    payload: &'m [u8],
    headers: String,
    priority: i16,
    ordering_key: Option<&'m str>,
    delay_ms: i64,
    dedup_id: Option<&'m str>,
}

/// The columns of a batch, one array each.
#[derive(Default)]
struct Columns<'m> {
    ids: Vec<&'m str>,
    payloads: Vec<&'m [u8]>,
    headers: Vec<String>,
    priorities: Vec<i16>,
    keys: Vec<Option<&'m str>>,
    delays: Vec<i64>,
    dedup_ids: Vec<Option<&'m str>>,
}

impl<'m> Columns<'m> {
    fn add(&mut self, e: Encoded<'m>) {
        self.ids.push(e.id);
        self.payloads.push(e.payload);
        self.headers.push(e.headers);
        self.priorities.push(e.priority);
        self.keys.push(e.ordering_key);
        self.delays.push(e.delay_ms);
        self.dedup_ids.push(e.dedup_id);
    }
}

impl PostgresQueue {
    fn encode<'m>(&self, m: &'m Message) -> Result<Encoded<'m>> {
        check_payload(
            BACKEND,
            m.payload.len(),
            self.backend.inner.config.max_payload_bytes,
        )?;
        check_dedup_id(BACKEND, m)?;
        let delay_ms = check_delay(BACKEND, m.delay.unwrap_or_default())?;
        Ok(Encoded {
            id: m.id.as_str(),
            payload: &m.payload,
            headers: headers_text(m),
            priority: i16::from(m.priority),
            ordering_key: m.ordering_key.as_deref(),
            delay_ms,
            dedup_id: m.dedup_id.as_deref(),
        })
    }

    /// Enqueues `message` inside your transaction (or on any connection), so
    /// it becomes visible only if and when that transaction commits; the
    /// wake-up notification is sent at commit too. A message with a dedup id
    /// claims it in your transaction (see [`PostgresQueue::push_unique_in_tx`]):
    /// a duplicate is not inserted and the first message's id is returned.
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
        self.push_unique_in_tx(conn, message)
            .await
            .map(Pushed::into_id)
    }

    /// [`PostgresQueue::push_in_tx`], saying whether the message was
    /// enqueued or dropped as a duplicate (see `QueueProvider::push_unique`).
    /// The dedup id is claimed in your transaction: a rollback forgets it,
    /// and a concurrent push of the same id waits for your commit. Under
    /// REPEATABLE READ or SERIALIZABLE, a push of an id another transaction
    /// claimed after yours began fails with a retryable serialization error.
    pub async fn push_unique_in_tx(
        &self,
        conn: &mut PgConnection,
        message: Message,
    ) -> Result<Pushed> {
        let (mut pushed, mut failures) = self.push_on(conn, std::slice::from_ref(&message)).await?;
        if let Some(failure) = failures.pop() {
            return Err(failure.error);
        }
        Ok(pushed.pop().expect("one outcome per message"))
    }

    /// Enqueues several messages inside your transaction, in one statement;
    /// a duplicate's place holds the first message's id.
    pub async fn push_batch_in_tx(
        &self,
        conn: &mut PgConnection,
        messages: Vec<Message>,
    ) -> Result<Vec<MessageId>> {
        let (pushed, failures) = self.push_on(conn, &messages).await?;
        let ids = pushed.into_iter().map(Pushed::into_id).collect();
        flextide_queue_core::backend::batch_result(BACKEND, ids, failures)
    }

    /// Inserts `messages` in one statement: the plain insert when none has
    /// a dedup id, else the one that claims dedup ids first. Returns the
    /// outcome of every message (a refused one's own id, enqueued) and the
    /// refused ones.
    async fn push_on<'c, E>(
        &self,
        conn: E,
        messages: &[Message],
    ) -> Result<(Vec<Pushed>, Vec<BatchFailure>)>
    where
        E: sqlx::Executor<'c, Database = sqlx::Postgres>,
    {
        let mut failures = Vec::new();
        let mut valid = Vec::with_capacity(messages.len());
        for (index, m) in messages.iter().enumerate() {
            match self.encode(m) {
                Ok(e) => valid.push((index, e)),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        let mut pushed: Vec<Pushed> = messages
            .iter()
            .map(|m| Pushed::Enqueued(m.id.clone()))
            .collect();
        if valid.is_empty() {
            return Ok((pushed, failures));
        }
        if valid.iter().all(|(_, e)| e.dedup_id.is_none()) {
            let mut c = Columns::default();
            for (_, e) in valid {
                c.add(e);
            }
            if c.ids.len() == 1 {
                self.bind_one(self.sql().push.clone(), &c)
                    .execute(conn)
                    .await
                    .map_err(map_err)?;
            } else {
                self.bind_batch(self.sql().push_batch.clone(), c)
                    .execute(conn)
                    .await
                    .map_err(map_err)?;
            }
            return Ok((pushed, failures));
        }
        let mut batch = UniqueBatch::new(BACKEND, valid.iter().map(|(_, e)| e.dedup_id));
        let indexes: Vec<usize> = valid.iter().map(|(index, _)| *index).collect();
        let mut c = Columns::default();
        for (n, (_, e)) in valid.into_iter().enumerate() {
            if !batch.is_repeat(n) {
                c.add(e);
            }
        }
        let dedup_ids = std::mem::take(&mut c.dedup_ids);
        let rows = self
            .bind_batch(self.sql().push_unique.clone(), c)
            .bind(dedup_ids)
            .bind(dedup_window_ms(&self.options))
            .fetch_all(conn)
            .await
            .map_err(map_err)?;
        for row in rows {
            let key: String = row.try_get("dedup_id").map_err(map_err)?;
            let id: String = row.try_get("message_id").map_err(map_err)?;
            let duplicates: i64 = row.try_get("duplicates").map_err(map_err)?;
            batch.claimed(&key, claim_outcome(id, duplicates));
        }
        for (n, index) in indexes.into_iter().enumerate() {
            pushed[index] = batch.outcome(n, &messages[index].id)?;
        }
        Ok((pushed, failures))
    }

    /// The plain insert of one message: $1 queue, $2..$7 its columns, $8 channel.
    fn bind_one<'q>(
        &'q self,
        sql: std::sync::Arc<str>,
        c: &Columns<'q>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(AssertSqlSafe(sql))
            .bind(&*self.name)
            .bind(c.ids[0])
            .bind(c.payloads[0])
            .bind(c.headers[0].clone())
            .bind(c.priorities[0])
            .bind(c.keys[0])
            .bind(c.delays[0])
            .bind(self.channel())
    }

    /// A batch statement's first parameters: $1 queue, $2..$7 the column
    /// arrays, $8 channel.
    fn bind_batch<'q>(
        &'q self,
        sql: std::sync::Arc<str>,
        c: Columns<'q>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(AssertSqlSafe(sql))
            .bind(&*self.name)
            .bind(c.ids)
            .bind(c.payloads)
            .bind(c.headers)
            .bind(c.priorities)
            .bind(c.keys)
            .bind(c.delays)
            .bind(self.channel())
    }

    /// Deletes expired dedup rows when this backend's sweep is due (see
    /// `flextide_queue_sql::dedup::ExpiredSweep`); a failure only logs.
    async fn sweep_dedup_if_due(&self) {
        if !self.backend.inner.dedup_sweep.due() {
            return;
        }
        let swept = sqlx::query_scalar::<_, i64>(AssertSqlSafe(self.sql().dedup_sweep.clone()))
            .bind(SWEEP_LIMIT)
            .fetch_one(self.pool())
            .await
            .map(|n| n.max(0) as u64)
            .map_err(map_err);
        ExpiredSweep::report(BACKEND, swept);
    }
}
