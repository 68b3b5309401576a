//! Test helpers: a recording wrapper around the memory backend.

#![allow(dead_code, unreachable_pub)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use flextide_queue_core::{
    Capabilities, DeadLetter, Delivery, Message, MessageId, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay, Result,
};
use flextide_queue_memory::MemoryQueue;
use flextide_worker::{Progress, ProgressSnapshot};
use tokio::time::Instant;

pub const SEC: Duration = Duration::from_secs(1);

/// A memory queue with this lease and no attempt limit.
pub fn queue(name: &str, lease: Duration) -> Arc<MemoryQueue> {
    Arc::new(
        MemoryQueue::new(
            name,
            QueueOptions::default().lease(lease).max_attempts(None),
        )
        .unwrap(),
    )
}

#[derive(Debug, Default, Clone)]
pub struct Log {
    pub nacks: Vec<Duration>,
    pub extends: usize,
    pub deletes: usize,
    pub delete_batches: usize,
    /// When each delete call returned, with how many receipts it settled.
    pub delete_calls: Vec<(Instant, usize)>,
    pub pops: usize,
    /// Each pop's (asked, got).
    pub pop_sizes: Vec<(usize, usize)>,
    pub releases: usize,
    pub outstanding: i64,
    pub max_outstanding: i64,
}

/// The memory backend, with its calls recorded and some capabilities or
/// operations taken away.
#[derive(Debug)]
pub struct Recorder {
    pub inner: MemoryQueue,
    pub caps: Capabilities,
    pub fail_extend: bool,
    /// Deletes fail with a connection error until this moment (a broker
    /// restarting).
    pub deletes_down_until: Option<Instant>,
    pub log: Mutex<Log>,
}

impl Recorder {
    pub fn new(name: &str, options: QueueOptions) -> Arc<Self> {
        Self::with(name, options, |_| {})
    }

    pub fn with(name: &str, options: QueueOptions, tweak: impl FnOnce(&mut Recorder)) -> Arc<Self> {
        let inner = MemoryQueue::new(name, options).unwrap();
        let caps = inner.capabilities();
        let mut r = Recorder {
            inner,
            caps,
            fail_extend: false,
            deletes_down_until: None,
            log: Mutex::new(Log::default()),
        };
        tweak(&mut r);
        Arc::new(r)
    }

    pub fn log(&self) -> Log {
        self.log.lock().unwrap().clone()
    }

    fn outage(&self) -> Result<()> {
        match self.deletes_down_until {
            Some(until) if Instant::now() < until => Err(QueueError::connection(
                "recorder",
                "connection refused (restarting)",
            )),
            _ => Ok(()),
        }
    }

    fn settled(&self, n: usize) {
        self.log.lock().unwrap().outstanding -= n as i64;
    }
}

#[async_trait]
impl QueueProvider for Recorder {
    fn queue_name(&self) -> &str {
        self.inner.queue_name()
    }
    fn capabilities(&self) -> Capabilities {
        self.caps
    }
    fn backend_name(&self) -> &'static str {
        "recorder"
    }
    async fn push(&self, message: Message) -> Result<MessageId> {
        self.inner.push(message).await
    }
    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        self.inner.push_batch(messages).await
    }
    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let got = self.inner.pop_batch(max, wait).await?;
        let mut log = self.log.lock().unwrap();
        log.pops += 1;
        log.pop_sizes.push((max, got.len()));
        log.outstanding += got.len() as i64;
        log.max_outstanding = log.max_outstanding.max(log.outstanding);
        Ok(got)
    }
    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        self.outage()?;
        self.inner.delete(receipt).await?;
        let mut log = self.log.lock().unwrap();
        log.deletes += 1;
        log.delete_calls.push((Instant::now(), 1));
        drop(log);
        self.settled(1);
        Ok(())
    }
    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<()> {
        self.outage()?;
        self.inner.delete_batch(receipts).await?;
        let mut log = self.log.lock().unwrap();
        log.delete_batches += 1;
        log.delete_calls.push((Instant::now(), receipts.len()));
        drop(log);
        self.settled(receipts.len());
        Ok(())
    }
    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        if !self.caps.delay && !delay.is_zero() {
            return Err(QueueError::unsupported("recorder", "nack with delay"));
        }
        self.inner.nack(receipt, delay).await?;
        self.log.lock().unwrap().nacks.push(delay);
        self.settled(1);
        Ok(())
    }
    async fn release(&self, receipt: &Receipt) -> Result<()> {
        if !self.caps.release {
            return Err(QueueError::unsupported("recorder", "release"));
        }
        self.inner.release(receipt).await?;
        self.log.lock().unwrap().releases += 1;
        self.settled(1);
        Ok(())
    }
    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        if self.fail_extend {
            return Err(QueueError::StaleReceipt {
                backend: "recorder",
            });
        }
        if !self.caps.extend_lease {
            return Err(QueueError::unsupported("recorder", "extend"));
        }
        self.log.lock().unwrap().extends += 1;
        self.inner.extend(receipt, by).await
    }
    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        if !self.caps.dead_letters {
            return Err(QueueError::unsupported("recorder", "dead_letter"));
        }
        self.inner.dead_letter(receipt, reason).await?;
        self.settled(1);
        Ok(())
    }
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.inner.dead_letters(limit).await
    }
    async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        self.inner.replay_dead_letters(which).await
    }
    async fn purge_dead_letters(&self) -> Result<u64> {
        self.inner.purge_dead_letters().await
    }
    async fn stats(&self) -> Result<QueueStats> {
        self.inner.stats().await
    }
}

/// Waits (on the paused clock) until `cond` holds, at most `limit`.
pub async fn wait_for(
    progress: &Progress,
    limit: Duration,
    cond: impl Fn(&ProgressSnapshot) -> bool,
) -> ProgressSnapshot {
    let start = Instant::now();
    loop {
        let s = progress.snapshot();
        if cond(&s) {
            return s;
        }
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn push_all(
    queue: &dyn QueueProvider,
    payloads: impl IntoIterator<Item = impl Into<bytes::Bytes>>,
) {
    let messages: Vec<Message> = payloads.into_iter().map(Message::new).collect();
    queue.push_batch(messages).await.unwrap();
}

/// The memory backend as a backend without `release` would be: the
/// capability off and the operation `Unsupported` (the trait's default).
#[derive(Debug)]
pub struct WithoutRelease(pub Arc<MemoryQueue>);

#[async_trait]
impl QueueProvider for WithoutRelease {
    fn queue_name(&self) -> &str {
        self.0.queue_name()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            release: false,
            ..self.0.capabilities()
        }
    }

    async fn push(&self, message: Message) -> Result<MessageId> {
        self.0.push(message).await
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        self.0.pop_batch(max, wait).await
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        self.0.delete(receipt).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        self.0.nack(receipt, delay).await
    }

    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        self.0.extend(receipt, by).await
    }

    async fn stats(&self) -> Result<QueueStats> {
        self.0.stats().await
    }

    fn backend_name(&self) -> &'static str {
        self.0.backend_name()
    }
}
