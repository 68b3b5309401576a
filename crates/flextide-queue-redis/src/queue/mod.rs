//! The queue handle implementing `QueueProvider`, one file per job: the pop
//! path (`pop`), pushes (`push`), settling deliveries (`settle`), the
//! dead-letter store (`dead`), and stats, peek and purge (`inspect`).

mod dead;
mod inspect;
mod pop;
pub(crate) use pop::GROUP;
mod push;
mod settle;

use std::{
    fmt,
    sync::{Arc, Mutex, atomic::AtomicBool},
    time::Duration,
};

use async_trait::async_trait;
use flextide_queue_core::{
    Capabilities, DeadLetter, Delivery, Message, MessageId, Pushed, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay, Result, backend::max_attempts_reason,
};
use redis::{RedisError, Value};

use crate::{BACKEND, RedisBackend, keys::Keys};

/// Most items one `push_batch` / `pop_batch` / `delete_batch` round trip takes;
/// larger push and delete batches are split.
pub const MAX_BATCH: usize = 1000;

/// One queue on Redis: a stream with a consumer group, plus a few keys for
/// leases, delays and dead letters. See the crate documentation.
pub struct RedisQueue {
    backend: RedisBackend,
    name: String,
    keys: Keys,
    options: QueueOptions,
    /// The consumer name the last pop reported (`c<epoch>`), which the fast
    /// pop's XREADGROUP uses; a stale one costs a retry, never a wrong lease.
    consumer: Mutex<Arc<str>>,
    /// The last pop met redeliveries: use the all-Lua pop until one does
    /// not, so that a fast pop does not read fresh entries only to give
    /// them back.
    slow: AtomicBool,
}

impl fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQueue")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish()
    }
}

impl RedisQueue {
    pub(crate) fn new(
        backend: RedisBackend,
        name: &str,
        keys: Keys,
        options: QueueOptions,
    ) -> Self {
        RedisQueue {
            backend,
            name: name.to_owned(),
            keys,
            options,
            consumer: Mutex::new(Arc::from("c")),
            slow: AtomicBool::new(false),
        }
    }

    /// The queue's options.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// The backend this queue was opened from.
    pub fn backend(&self) -> &RedisBackend {
        &self.backend
    }

    /// Deletes every key of this queue; see [`RedisBackend::drop_queue`].
    pub async fn drop_queue(&self) -> Result<()> {
        self.backend.drop_queue(&self.name).await
    }

    /// The key of this queue's stream; see [`RedisBackend::stream_key`].
    pub fn stream_key(&self) -> &str {
        &self.keys.stream
    }

    /// The scripts' max attempts argument and dead-letter reason (0 and
    /// empty: no limit). The reason is the core's one text, so the scripts
    /// never spell it themselves.
    fn max_attempts(&self) -> (u32, String) {
        match self.options.max_attempts {
            Some(n) if n > 0 => (n, max_attempts_reason(n)),
            _ => (0, String::new()),
        }
    }

    fn err(&self, operation: &'static str, e: RedisError) -> QueueError {
        self.backend.err(operation, e)
    }

    /// [`RedisQueue::err`] for a MULTI/EXEC. On a Redis Cluster whose
    /// master of this queue's slot changed (a failover), the transaction
    /// comes back aborted with MOVED inside it, which the cluster client
    /// does not follow: it learns the new master only from a MOVED reply
    /// to a plain command. One such command on the queue's slot (`EXISTS`
    /// of its stream) makes it refresh, so the caller's retry goes to the
    /// new master instead of failing the same way for good.
    async fn transaction_err(&self, operation: &'static str, e: RedisError) -> QueueError {
        use redis::{ErrorKind, ServerErrorKind};
        let moved = matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::ExecAbort | ServerErrorKind::Moved | ServerErrorKind::Ask
            )
        );
        if moved && self.backend.is_cluster() {
            let _: redis::RedisResult<i64> = redis::cmd("EXISTS")
                .arg(&self.keys.stream)
                .query_async(&mut self.backend.conn())
                .await;
        }
        self.err(operation, e)
    }

    /// A call of `script` with the queue's nine keys.
    fn invocation<'a>(&self, script: &'a redis::Script) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for key in self.keys.scripts() {
            inv.key(key);
        }
        inv
    }

    /// A call of `script` with the keys and the max attempts arguments,
    /// which every script that does the due work takes first.
    fn invocation_with_limit<'a>(&self, script: &'a redis::Script) -> redis::ScriptInvocation<'a> {
        let mut inv = self.invocation(script);
        let (max, reason) = self.max_attempts();
        inv.arg(max).arg(reason);
        inv
    }

    async fn run(
        &self,
        operation: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<Value> {
        inv.invoke_async(&mut self.backend.conn())
            .await
            .map_err(|e| self.err(operation, e))
    }
}

/// A copy of an error for the other items of a failed batch chunk.
fn copy_error(e: &QueueError) -> QueueError {
    if e.is_retryable() {
        QueueError::connection(BACKEND, e.to_string())
    } else {
        QueueError::backend_error(BACKEND, false, e.to_string())
    }
}

#[async_trait]
impl QueueProvider for RedisQueue {
    fn queue_name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fifo: true,
            ordering_key: false,
            priority: false,
            delay: true,
            max_delay: None,
            max_payload_bytes: Some(self.backend.config().max_payload()),
            max_batch: Some(MAX_BATCH),
            extend_lease: true,
            fenced_receipts: true,
            dead_letters: true,
            dedup: true,
            dedup_window: Some(self.options.dedup_window),
            delete_dead_letters: true,
            exact_stats: true,
            peek: true,
            purge: true,
            release: true,
            drop_queue: true,
            blind_stats: false,
        }
    }

    async fn push(&self, message: Message) -> Result<MessageId> {
        self.push_one(message).await.map(Pushed::into_id)
    }

    async fn push_unique(&self, message: Message) -> Result<Pushed> {
        self.push_one(message).await
    }

    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        self.push_many(messages).await
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        self.pop_wait(max, wait).await
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        match self.delete_batch(std::slice::from_ref(receipt)).await {
            Err(QueueError::PartialBatch { mut failures, .. }) if failures.len() == 1 => {
                Err(failures.remove(0).error)
            }
            other => other,
        }
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<()> {
        self.delete_many(receipts).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        self.settle(settle::Action::Nack(delay), receipt).await
    }

    async fn release(&self, receipt: &Receipt) -> Result<()> {
        self.settle(settle::Action::Release, receipt).await
    }

    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        self.settle(settle::Action::Extend(by), receipt).await
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        self.settle(settle::Action::Dead(reason), receipt).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.list_dead_letters(limit).await
    }

    async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        self.replay(which).await
    }

    async fn delete_dead_letters(&self, ids: &[MessageId]) -> Result<u64> {
        self.delete_dead(ids).await
    }

    async fn purge_dead_letters(&self) -> Result<u64> {
        self.purge_dead().await
    }

    async fn peek(&self, limit: usize) -> Result<Vec<Message>> {
        self.peek_waiting(limit).await
    }

    async fn purge(&self) -> Result<u64> {
        self.purge_waiting().await
    }

    async fn drop_queue(&self) -> Result<()> {
        self.backend.drop_queue(&self.name).await
    }

    async fn stats(&self) -> Result<QueueStats> {
        self.count().await
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}
