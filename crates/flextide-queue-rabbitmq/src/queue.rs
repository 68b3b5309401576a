//! A queue handle: publishing with confirms, a demand-driven consumer that
//! buffers deliveries in process, and leases kept on this process's clock.
//!
//! RabbitMQ has no visibility timeout: a delivery belongs to its channel
//! until it is acknowledged or the channel closes. So the lease lives here:
//! each delivery handed to a caller gets a deadline and a fencing token
//! (the receipt names the handle, the link generation, the delivery tag and
//! the token). A background task of the handle watches the deadlines; when
//! one passes unsettled, it republishes the message with its attempt count
//! raised (or dead-letters it when the attempts are used up) and only then
//! acknowledges the old delivery, so the message is never lost and the old
//! receipt is stale from that moment.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque},
    fmt,
    hash::{BuildHasher, Hasher},
    sync::{
        Arc, LazyLock, Mutex, MutexGuard, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use flextide_queue_core::{
    BatchFailure, Capabilities, DeadLetter, Delivery, Message, MessageId, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay, Result,
    backend::{
        check_payload, max_attempts_reason, now_millis, system_time_from_millis, undecodable_reason,
    },
};
use futures::{FutureExt, StreamExt, future::join_all};
use lapin::{
    BasicProperties, Channel, Consumer,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions,
        BasicNackOptions, BasicQosOptions, QueueDeclareOptions, QueuePurgeOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};

use crate::{
    BACKEND, Settings,
    codec::{self, Decoded, H_DEAD_AT, H_REASON},
    delay,
    error::{is_not_found, map, timed, timed_raw},
    link::{self, Link, check_confirmation},
};

/// Name of a queue's dead-letter queue.
pub(crate) fn dlq_name(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// Every live handle of this process, so a receipt can be settled through
/// any handle of its queue (the delivery lives on its own handle's channel).
static HANDLES: LazyLock<Mutex<HashMap<u64, Weak<Inner>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Pops shorter than this with nothing buffered use `basic.get`: they ask
/// for what is available now, not for a subscription.
const GET_BELOW: Duration = Duration::from_millis(20);
/// How long a pop that started a subscription gathers its first deliveries.
const FIRST_GATHER: Duration = Duration::from_millis(5);
/// How often the handle's background task looks at deadlines.
const TICK: Duration = Duration::from_millis(25);
/// How often the full ladder of holding queues is probed for stats and purge.
const PROBE_EVERY: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn fresh_uid() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() | 1
}

fn stale() -> QueueError {
    QueueError::StaleReceipt { backend: BACKEND }
}

fn lost() -> QueueError {
    QueueError::connection(
        BACKEND,
        "the connection to the broker was lost; the next call reconnects",
    )
}

/// A delivery received from the broker that no caller has claimed yet.
struct Buffered {
    generation: u64,
    tag: u64,
    incarnation: u64,
    decoded: Decoded,
}

/// A delivery handed to a caller: its lease.
struct Lease {
    generation: u64,
    tag: u64,
    incarnation: u64,
    deadline: Instant,
    attempt: u32,
    decoded: Decoded,
    /// `purge` ran while it was leased: its future redeliveries are dropped.
    purged: bool,
    /// The deadline passed; the delivery waits (still on our channel) for
    /// this handle's next pop or the end of the grace period.
    expired: bool,
}

/// What leasing a received delivery gives: a delivery for the caller, or a
/// lease for the dead letters (its attempts are used up, or it cannot be
/// decoded), with the reason.
enum Handed {
    Out(Delivery),
    Refused(Lease, String),
}

/// Work the background pass does after releasing the state lock.
enum Job {
    GiveBack(Buffered),
    Ack(Lease),
    Dlq(Lease),
    Requeue(Lease),
}

/// Deliveries a pop took that go to the dead letters instead (attempts used
/// up, or undecodable). Moved by a task of their own, awaited by the pop;
/// when the pop is cut short the guard's drop starts that task, so none is
/// left unacknowledged on the channel.
struct Refused {
    inner: Arc<Inner>,
    link: Arc<Link>,
    leases: Vec<(Lease, String)>,
}

impl Refused {
    fn new(inner: &Arc<Inner>, link: &Arc<Link>) -> Self {
        Refused {
            inner: inner.clone(),
            link: link.clone(),
            leases: Vec::new(),
        }
    }

    fn start(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        if self.leases.is_empty() {
            return None;
        }
        let (inner, link) = (self.inner.clone(), self.link.clone());
        let leases = std::mem::take(&mut self.leases);
        Some(tokio::spawn(async move {
            inner.dead_letter_refused(&link, leases).await
        }))
    }

    async fn finish(mut self) {
        if let Some(task) = self.start() {
            let _ = task.await;
        }
    }
}

impl Drop for Refused {
    fn drop(&mut self) {
        self.start();
    }
}

/// Runs `work` in a task of its own and waits for it: dropping the wait
/// does not cut the work short.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    match tokio::spawn(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(QueueError::backend_error(BACKEND, true, e.to_string())),
    }
}

/// The current subscription of the consuming channel.
struct ConsumerSlot {
    incarnation: u64,
    tag: String,
    prefetch: usize,
    /// Deliveries of this subscription not yet settled or given back.
    outstanding: usize,
    /// Resolves once the subscription's task has buffered its last delivery.
    done: tokio::sync::oneshot::Receiver<()>,
}

struct State {
    generation: u64,
    broken: bool,
    buffer: VecDeque<Buffered>,
    leased: HashMap<u64, Lease>,
    /// Tokens of leases that expired, oldest first, for local redelivery.
    expired: VecDeque<u64>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    waiting: usize,
    demand: usize,
    /// The most deliveries callers held and waited for at once on this link:
    /// the subscription's prefetch is sized from it, so it grows a few times
    /// at most instead of following every change of demand.
    peak_demand: usize,
    /// The consuming channel's current `basic.qos` prefetch (0: not set).
    qos: usize,
    /// Delivery tags received on the current link's consuming channel whose
    /// ack or nack has not been sent yet: a `basic.ack multiple` may only
    /// cover tags that are all ours to settle.
    unsettled: BTreeSet<u64>,
    /// How many tags the current consuming channel gave us, and the largest:
    /// equal when no tag below the largest is still on its way to us.
    tags_seen: u64,
    max_tag: u64,
    idle_since: Instant,
    consumer: Option<ConsumerSlot>,
    next_incarnation: u64,
    next_token: u64,
}

impl State {
    /// Records a tag the consuming channel of the current link gave us.
    fn received(&mut self, tag: u64) {
        self.unsettled.insert(tag);
        self.tags_seen += 1;
        self.max_tag = self.max_tag.max(tag);
    }

    fn settled(&mut self, incarnation: u64) {
        if let Some(c) = self.consumer.as_mut()
            && c.incarnation == incarnation
        {
            c.outstanding = c.outstanding.saturating_sub(1);
        }
    }
}

pub(crate) struct Inner {
    uid: u64,
    name: String,
    dlq: String,
    options: QueueOptions,
    settings: Arc<Settings>,
    link: Mutex<Option<Arc<Link>>>,
    reconnecting: tokio::sync::Mutex<()>,
    consumer_ctl: tokio::sync::Mutex<()>,
    generations: AtomicU64,
    state: Mutex<State>,
    notify: Notify,
    shutdown: watch::Sender<()>,
    /// Holding queues known to exist (declared here or found by a probe).
    buckets: Mutex<HashSet<u64>>,
    probed_at: Mutex<Option<Instant>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        lock(&HANDLES).remove(&self.uid);
        if let Some(link) = lock(&self.link).take() {
            link.close_in_background();
        }
    }
}

/// One handle on a RabbitMQ queue; implements [`QueueProvider`].
///
/// Open it with [`RabbitMq::open`](crate::RabbitMq::open). A handle owns one
/// connection, reconnects on the call after a failure, and keeps the leases
/// of the deliveries it handed out (see the crate documentation for what a
/// lease means on RabbitMQ). Cloning is cheap and shares the handle.
#[derive(Clone)]
pub struct RabbitMqQueue {
    inner: Arc<Inner>,
}

impl fmt::Debug for RabbitMqQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqQueue")
            .field("name", &self.inner.name)
            .field("broker", &self.inner.settings.shown)
            .field("options", &self.inner.options)
            .finish()
    }
}

/// A `pop` waiting for messages: counted so the consumer's prefetch follows demand.
struct Demand<'a> {
    inner: &'a Inner,
    need: usize,
}

impl<'a> Demand<'a> {
    fn register(inner: &'a Inner, need: usize) -> Self {
        let mut st = lock(&inner.state);
        st.waiting += 1;
        st.demand += need;
        Demand { inner, need }
    }

    fn got(&mut self, st: &mut State, n: usize) {
        let n = n.min(self.need);
        self.need -= n;
        st.demand = st.demand.saturating_sub(n);
    }
}

impl Drop for Demand<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.inner.state);
        st.waiting = st.waiting.saturating_sub(1);
        st.demand = st.demand.saturating_sub(self.need);
        if st.waiting == 0 {
            st.idle_since = Instant::now();
        }
    }
}

struct ParsedReceipt {
    uid: u64,
    generation: u64,
    tag: u64,
    token: u64,
}

fn parse_receipt(receipt: &Receipt) -> Result<ParsedReceipt> {
    let bad = |why: &str| QueueError::invalid_receipt(BACKEND, why.to_owned());
    let mut parts = receipt.as_str().split('.');
    let mut next = |what: &str, hex: bool| -> Result<u64> {
        let part = parts
            .next()
            .ok_or_else(|| bad(&format!("missing {what}")))?;
        let parsed = if hex {
            u64::from_str_radix(part, 16)
        } else {
            part.parse()
        };
        parsed.map_err(|_| bad(&format!("{what} is not a number")))
    };
    let parsed = ParsedReceipt {
        uid: next("handle", true)?,
        generation: next("generation", false)?,
        tag: next("delivery tag", false)?,
        token: next("token", false)?,
    };
    if parts.next().is_some() {
        return Err(bad("too many parts"));
    }
    Ok(parsed)
}

impl RabbitMqQueue {
    pub(crate) async fn open(
        settings: Arc<Settings>,
        name: &str,
        options: QueueOptions,
    ) -> Result<Self> {
        let (shutdown, _) = watch::channel(());
        let inner = Arc::new(Inner {
            uid: fresh_uid(),
            name: name.to_owned(),
            dlq: dlq_name(name),
            options,
            settings,
            link: Mutex::new(None),
            reconnecting: tokio::sync::Mutex::new(()),
            consumer_ctl: tokio::sync::Mutex::new(()),
            generations: AtomicU64::new(0),
            state: Mutex::new(State {
                generation: 0,
                broken: false,
                buffer: VecDeque::new(),
                leased: HashMap::new(),
                expired: VecDeque::new(),
                deadlines: BinaryHeap::new(),
                waiting: 0,
                demand: 0,
                peak_demand: 0,
                qos: 0,
                unsettled: BTreeSet::new(),
                tags_seen: 0,
                max_tag: 0,
                idle_since: Instant::now(),
                consumer: None,
                next_incarnation: 1,
                next_token: 1,
            }),
            notify: Notify::new(),
            shutdown,
            buckets: Mutex::new(HashSet::new()),
            probed_at: Mutex::new(None),
        });
        // Connect now, so a wrong URL or refused declaration shows at open.
        inner.link().await?;
        lock(&HANDLES).insert(inner.uid, Arc::downgrade(&inner));
        spawn_housekeeper(&inner);
        Ok(RabbitMqQueue { inner })
    }

    /// Closes this handle's connection as if it had dropped: deliveries it
    /// holds (leased or buffered) go back to the broker, their receipts
    /// become stale, and the next call reconnects. Meant for tests of
    /// connection loss.
    pub async fn disconnect(&self) {
        let link = lock(&self.inner.link).clone();
        if let Some(link) = link {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                link.connection
                    .close(320, ShortString::from("closed by disconnect()")),
            )
            .await;
        }
    }

    /// The connection name this handle shows the broker (the
    /// `connection_name` client property), if it is connected.
    pub fn connection_name(&self) -> Option<String> {
        lock(&self.inner.link).as_ref().map(|l| l.name.clone())
    }
}

fn spawn_housekeeper(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    let mut shutdown = inner.shutdown.subscribe();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Some(inner) = weak.upgrade() else { return };
            inner.housekeep().await;
        }
    });
}

async fn consume_task(
    weak: Weak<Inner>,
    mut consumer: Consumer,
    generation: u64,
    incarnation: u64,
    mut shutdown: watch::Receiver<()>,
    _done: tokio::sync::oneshot::Sender<()>,
) {
    loop {
        let first = tokio::select! {
            item = consumer.next() => item,
            _ = shutdown.changed() => return,
        };
        // Take whatever else already arrived, so waiting pops are woken once
        // per burst rather than once per message.
        let mut more = matches!(first, Some(Ok(_)));
        let mut items = vec![first];
        while more && items.len() < 256 {
            match consumer.next().now_or_never() {
                Some(item) => {
                    more = matches!(item, Some(Ok(_)));
                    items.push(item);
                }
                None => break,
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        let mut end = None;
        let mut received = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Some(Ok(delivery)) => {
                    let returns = codec::broker_returns(&delivery.properties, delivery.redelivered);
                    let decoded = codec::decode(delivery.data, &delivery.properties, returns);
                    received.push(Buffered {
                        generation,
                        tag: delivery.delivery_tag,
                        incarnation,
                        decoded,
                    });
                }
                Some(Err(e)) => {
                    tracing::debug!(queue = %inner.name, error = %e, "rabbitmq consumer failed; the next call reconnects");
                    end = Some(true);
                    break;
                }
                None => {
                    end = Some(false);
                    break;
                }
            }
        }
        {
            let mut st = lock(&inner.state);
            if st.generation == generation {
                let n = received.len();
                for b in &received {
                    st.received(b.tag);
                }
                st.buffer.extend(received);
                let current = st
                    .consumer
                    .as_ref()
                    .is_some_and(|c| c.incarnation == incarnation);
                if let Some(c) = st.consumer.as_mut().filter(|_| current) {
                    c.outstanding += n;
                }
                match end {
                    // The channel or connection failed: the next call reconnects.
                    Some(true) => {
                        st.broken = true;
                        st.consumer = None;
                    }
                    // Cancelled (by us, or by the broker when the queue went away).
                    Some(false) if current => st.consumer = None,
                    _ => {}
                }
            }
        }
        inner.notify.notify_waiters();
        if end.is_some() {
            return;
        }
    }
}

impl Inner {
    fn t(&self) -> Duration {
        self.settings.config.operation_timeout
    }

    /// The current link when it is usable.
    fn current_link(&self) -> Option<Arc<Link>> {
        let link = lock(&self.link).clone()?;
        let st = lock(&self.state);
        (link.healthy() && st.generation == link.generation && !st.broken).then_some(link)
    }

    /// After a publish to a holding queue came back unroutable (someone
    /// deleted it), forgets it so the next delayed publish declares it again.
    fn forget_missing<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(QueueError::QueueNotFound { queue, .. }) = &result
            && let Some(bucket) = queue
                .strip_prefix(self.name.as_str())
                .and_then(|rest| rest.strip_prefix(".delay."))
                .and_then(|ms| ms.parse::<u64>().ok())
        {
            lock(&self.buckets).remove(&bucket);
        }
        result
    }

    /// Passes a result through; a timeout on a connection the broker has not
    /// blocked means the connection is dead without our knowing (a silent
    /// network failure): the next call replaces it.
    fn check_link<T>(&self, link: &Link, result: Result<T>) -> Result<T> {
        if let Err(QueueError::Timeout { .. }) = &result
            && !link.connection.status().blocked()
        {
            let mut st = lock(&self.state);
            if st.generation == link.generation {
                st.broken = true;
            }
        }
        result
    }

    /// The current link, reconnecting first when it is gone.
    async fn link(&self) -> Result<Arc<Link>> {
        if let Some(link) = self.current_link() {
            return Ok(link);
        }
        let _guard = self.reconnecting.lock().await;
        if let Some(link) = self.current_link() {
            return Ok(link);
        }
        if let Some(old) = lock(&self.link).take() {
            old.close_in_background();
        }
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let name = format!(
            "flextide-queue-rabbitmq/{}/{:x}/{}",
            self.name, self.uid, generation
        );
        let link =
            Arc::new(Link::open(&self.settings, &self.name, &self.dlq, generation, name).await?);
        {
            let mut st = lock(&self.state);
            // Whatever the old connection held goes back to the broker with
            // it: those receipts are stale now.
            st.generation = generation;
            st.broken = false;
            st.buffer.clear();
            st.leased.clear();
            st.expired.clear();
            st.deadlines.clear();
            st.consumer = None;
            st.peak_demand = 0;
            st.qos = 0;
            st.unsettled.clear();
            st.tags_seen = 0;
            st.max_tag = 0;
        }
        *lock(&self.link) = Some(link.clone());
        if generation > 1 {
            tracing::info!(queue = %self.name, broker = %self.settings.shown, generation, "rabbitmq: reconnected");
        }
        self.notify.notify_waiters();
        Ok(link)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fifo: false,
            ordering_key: false,
            priority: false,
            delay: true,
            max_delay: Some(delay::MAX_DELAY),
            max_payload_bytes: Some(self.settings.config.max_payload_bytes),
            max_batch: Some(self.settings.config.max_batch),
            extend_lease: true,
            fenced_receipts: true,
            dead_letters: true,
            dedup: false,
            exact_stats: false,
            peek: false,
            purge: true,
        }
    }

    /// Refuses what this backend cannot carry, before anything is sent.
    fn check(&self, message: &Message) -> Result<()> {
        check_payload(
            BACKEND,
            message.payload.len(),
            Some(self.settings.config.max_payload_bytes),
        )?;
        if message.priority > 0 {
            return Err(QueueError::unsupported(BACKEND, "priority"));
        }
        if message.ordering_key.is_some() {
            return Err(QueueError::unsupported(BACKEND, "ordering_key"));
        }
        if message.dedup_id.is_some() {
            return Err(QueueError::unsupported(BACKEND, "dedup"));
        }
        if let Some(d) = message.delay
            && d > delay::MAX_DELAY
        {
            return Err(QueueError::invalid_message(
                BACKEND,
                format!("delay {d:?} exceeds the maximum of 7 days"),
            ));
        }
        codec::check_message(message)
    }

    /// Declares a delay bucket's holding queue once per handle.
    async fn holding_queue(&self, link: &Link, bucket_ms: u64) -> Result<String> {
        let name = delay::holding_queue(&self.name, bucket_ms);
        if lock(&self.buckets).contains(&bucket_ms) {
            return Ok(name);
        }
        link::declare(
            &link.publisher().await?,
            self.t(),
            &name,
            link::holding_arguments(&self.name, bucket_ms),
        )
        .await?;
        lock(&self.buckets).insert(bucket_ms);
        Ok(name)
    }

    /// Where a message goes and with which properties: the main queue, or a
    /// holding queue when it is delayed.
    async fn route(
        &self,
        link: &Link,
        message: &Message,
        delay: Option<Duration>,
        attempts_done: u32,
        enqueued_ms: i64,
    ) -> Result<(String, BasicProperties)> {
        let props = codec::properties(message, attempts_done, enqueued_ms, Vec::new());
        match delay.filter(|d| !d.is_zero()) {
            None => Ok((self.name.clone(), props)),
            Some(d) => {
                let (bucket, ms) = delay::bucket(d).ok_or_else(|| {
                    QueueError::invalid_message(BACKEND, "delay exceeds the maximum of 7 days")
                })?;
                let queue = self.holding_queue(link, bucket).await?;
                Ok((
                    queue,
                    props.with_expiration(ShortString::from(ms.to_string())),
                ))
            }
        }
    }

    fn receipt(&self, generation: u64, tag: u64, token: u64) -> Receipt {
        Receipt::new(format!("{:x}.{generation}.{tag}.{token}", self.uid))
    }

    /// Leases up to `n` buffered deliveries of the current link. Deliveries
    /// whose attempts are used up go to `exhausted`, for the dead letters.
    fn take(
        &self,
        generation: u64,
        n: usize,
        demand: Option<&mut Demand<'_>>,
        exhausted: &mut Vec<(Lease, String)>,
    ) -> Vec<Delivery> {
        let mut out = Vec::new();
        if n == 0 {
            return out;
        }
        let now = Instant::now();
        let mut st = lock(&self.state);
        // A pop served from the buffer is activity too: the subscription
        // lingers from the last pop, whether it had to wait or not.
        if st.waiting == 0 {
            st.idle_since = now;
        }
        // Expired leases first: delivered again from our channel, attempt + 1.
        while out.len() < n {
            let Some(token) = st.expired.pop_front() else {
                break;
            };
            if !st
                .leased
                .get(&token)
                .is_some_and(|l| l.expired && l.generation == generation)
            {
                continue;
            }
            let Some(old) = st.leased.remove(&token) else {
                continue;
            };
            let b = Buffered {
                generation,
                tag: old.tag,
                incarnation: old.incarnation,
                decoded: old.decoded,
            };
            let mut b = b;
            b.decoded.attempts_done = old.attempt;
            match self.lease(&mut st, b, now) {
                Handed::Out(d) => out.push(d),
                Handed::Refused(l, why) => exhausted.push((l, why)),
            }
        }
        while out.len() < n {
            let Some(b) = st.buffer.pop_front() else {
                break;
            };
            if b.generation != generation || st.generation != generation {
                continue;
            }
            match self.lease(&mut st, b, now) {
                Handed::Out(d) => out.push(d),
                Handed::Refused(l, why) => exhausted.push((l, why)),
            }
        }
        if let Some(d) = demand {
            d.got(&mut st, out.len());
        }
        out
    }

    /// Turns a received delivery into a leased one, or returns it as
    /// exhausted when it would exceed `max_attempts`.
    fn lease(&self, st: &mut State, b: Buffered, now: Instant) -> Handed {
        let attempt = b.decoded.attempts_done.saturating_add(1);
        let deadline = now + self.options.lease;
        let lease = Lease {
            generation: b.generation,
            tag: b.tag,
            incarnation: b.incarnation,
            deadline,
            attempt,
            decoded: b.decoded,
            purged: false,
            expired: false,
        };
        if let Some(what) = &lease.decoded.undecodable {
            let why = undecodable_reason(what);
            st.settled(lease.incarnation);
            return Handed::Refused(lease, why);
        }
        if let Some(max) = self.options.max_attempts.filter(|&max| attempt > max) {
            st.settled(lease.incarnation);
            return Handed::Refused(lease, max_attempts_reason(max));
        }
        let token = st.next_token;
        st.next_token += 1;
        let delivery = Delivery::new(
            lease.decoded.message.clone(),
            self.receipt(lease.generation, lease.tag, token),
            attempt,
            deadline,
        );
        st.deadlines.push(Reverse((deadline, token)));
        st.leased.insert(token, lease);
        Handed::Out(delivery)
    }

    /// `basic.get` until `max` or the queue is empty: for pops that want
    /// only what is there now.
    ///
    /// The round trips run in a task of their own: a `basic.get` answered
    /// after its pop was dropped would leave the delivery on the channel
    /// with no one to settle it (contract clause 13).
    async fn get_now(self: &Arc<Self>, link: &Arc<Link>, max: usize) -> Result<Vec<Delivery>> {
        let (inner, link) = (self.clone(), link.clone());
        detached(async move {
            let mut refused = Refused::new(&inner, &link);
            let got = inner.get_on(&link, max, &mut refused.leases).await;
            refused.finish().await;
            got
        })
        .await
    }

    async fn get_on(
        &self,
        link: &Link,
        max: usize,
        exhausted: &mut Vec<(Lease, String)>,
    ) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        while out.len() < max {
            let got = timed(
                "basic.get",
                self.t(),
                link.consume.basic_get(
                    ShortString::from(self.name.as_str()),
                    BasicGetOptions { no_ack: false },
                ),
            )
            .await?;
            let Some(got) = got else { break };
            let d = got.delivery;
            let returns = codec::broker_returns(&d.properties, d.redelivered);
            let decoded = codec::decode(d.data, &d.properties, returns);
            let b = Buffered {
                generation: link.generation,
                tag: d.delivery_tag,
                incarnation: 0,
                decoded,
            };
            let mut st = lock(&self.state);
            if st.generation != link.generation {
                return Err(lost());
            }
            st.received(b.tag);
            match self.lease(&mut st, b, Instant::now()) {
                Handed::Out(d) => out.push(d),
                Handed::Refused(l, why) => exhausted.push((l, why)),
            }
        }
        Ok(out)
    }

    /// Makes sure a subscription can deliver what waiting pops ask for.
    ///
    /// The prefetch is twice the most deliveries callers held and asked for
    /// at once (rounded up to a power of two, at most `max_prefetch`), so the
    /// broker keeps sending while earlier batches are handled and
    /// acknowledged, and a steady consumer is subscribed once rather than
    /// again whenever its leases fill the window. It re-subscribes only when
    /// that need outgrew the prefetch, or when every slot is taken by
    /// deliveries callers hold (a new consumer gets a fresh window; the old
    /// deliveries stay on the channel and are settled there).
    ///
    /// Runs in a task of its own: cut short between `basic.consume` and the
    /// start of its reading task, a subscription would take messages from
    /// the broker that no one reads (contract clause 13).
    async fn ensure_consumer(self: &Arc<Self>, link: &Arc<Link>) -> Result<bool> {
        let (inner, link) = (self.clone(), link.clone());
        detached(async move { inner.subscribe(&link).await }).await
    }

    async fn subscribe(self: &Arc<Self>, link: &Arc<Link>) -> Result<bool> {
        let _ctl = self.consumer_ctl.lock().await;
        let (old_tag, prefetch, incarnation, qos) = {
            let mut st = lock(&self.state);
            if st.generation != link.generation || st.broken {
                return Err(lost());
            }
            let want = st.demand.saturating_sub(st.buffer.len());
            if want == 0 {
                return Ok(false);
            }
            let need = st.leased.len() + st.demand;
            st.peak_demand = st.peak_demand.max(need);
            let cap = usize::from(self.settings.config.max_prefetch);
            let sized = st
                .peak_demand
                .saturating_mul(2)
                .checked_next_power_of_two()
                .unwrap_or(usize::MAX)
                .clamp(1, cap);
            if let Some(c) = &st.consumer {
                let free = c.prefetch.saturating_sub(c.outstanding);
                if free >= want || (free > 0 && c.prefetch >= sized) {
                    return Ok(false);
                }
            }
            let old = st.consumer.take().map(|c| c.tag);
            let incarnation = st.next_incarnation;
            st.next_incarnation += 1;
            let prefetch = sized.max(want.min(cap));
            // basic.qos applies to consumers started after it: sent only
            // when the window changes.
            let qos = (st.qos != prefetch).then(|| {
                st.qos = prefetch;
                prefetch
            });
            (old, prefetch, incarnation, qos)
        };
        // Cancel, qos and consume are sent back to back and answered in
        // order: one round trip instead of three. Each frame is queued when
        // its future is first polled, and `join!` polls them in this order.
        let t = self.t();
        let tag = format!("ft-{:x}-{}-{incarnation}", self.uid, link.generation);
        let cancel = async {
            match old_tag {
                Some(old) => timed(
                    "basic.cancel",
                    t,
                    link.consume
                        .basic_cancel(ShortString::from(old), BasicCancelOptions::default()),
                )
                .await
                .map(|_| ()),
                None => Ok(()),
            }
        };
        let set_qos = async {
            match qos {
                Some(qos) => {
                    let qos = u16::try_from(qos).unwrap_or(u16::MAX);
                    timed(
                        "basic.qos",
                        t,
                        link.consume
                            .basic_qos(qos, BasicQosOptions { global: false }),
                    )
                    .await
                }
                None => Ok(()),
            }
        };
        let subscribe = timed_raw(
            "basic.consume",
            t,
            link.consume.basic_consume(
                ShortString::from(self.name.as_str()),
                ShortString::from(tag.as_str()),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        );
        let (cancelled, set, subscribed) = futures::join!(cancel, set_qos, subscribe);
        let consumer = match (cancelled, set, subscribed) {
            (Ok(()), Ok(()), Ok(Ok(c))) => c,
            (cancelled, set, subscribed) => {
                // Which subscriptions the broker holds for this channel is
                // unknown now: the link is replaced on the next call, and
                // closing the old connection gives its deliveries back.
                {
                    let mut st = lock(&self.state);
                    if st.generation == link.generation {
                        st.broken = true;
                    }
                }
                self.notify.notify_waiters();
                return Err(match subscribed {
                    Ok(Err(e)) if is_not_found(&e) => QueueError::QueueNotFound {
                        backend: BACKEND,
                        queue: self.name.clone(),
                    },
                    Ok(Err(e)) => map(e),
                    Err(e) => e,
                    Ok(Ok(_)) => match (cancelled, set) {
                        (Err(e), _) | (_, Err(e)) => e,
                        (Ok(()), Ok(())) => lost(),
                    },
                });
            }
        };
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        {
            let mut st = lock(&self.state);
            if st.generation != link.generation {
                return Err(lost());
            }
            st.consumer = Some(ConsumerSlot {
                incarnation,
                tag,
                prefetch,
                outstanding: 0,
                done: done_rx,
            });
        }
        tokio::spawn(consume_task(
            Arc::downgrade(self),
            consumer,
            link.generation,
            incarnation,
            self.shutdown.subscribe(),
            done_tx,
        ));
        Ok(true)
    }

    async fn pop_batch(self: &Arc<Self>, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(self.settings.config.max_batch);
        let link = self.link().await?;
        let mut refused = Refused::new(self, &link);
        let result = self.pop_on(&link, max, wait, &mut refused.leases).await;
        let result = self.check_link(&link, result);
        refused.finish().await;
        result
    }

    async fn pop_on(
        self: &Arc<Self>,
        link: &Arc<Link>,
        max: usize,
        wait: Duration,
        exhausted: &mut Vec<(Lease, String)>,
    ) -> Result<Vec<Delivery>> {
        let generation = link.generation;
        let deadline = Instant::now() + wait;
        // What is buffered already is returned at once: the consumer task
        // buffers each burst the broker sends before waking pops, so waiting
        // for more would only add latency.
        let out = self.take(generation, max, None, exhausted);
        if !out.is_empty() {
            return Ok(out);
        }
        let consuming = lock(&self.state).consumer.is_some();
        if wait < GET_BELOW && !consuming {
            return self.get_now(link, max).await;
        }
        let mut demand = Demand::register(self, max);
        let mut gather_until = None;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut out = self.take(generation, max, Some(&mut demand), exhausted);
            if !out.is_empty() {
                // Let the consumer task buffer what the I/O loop already
                // read before returning a partial batch.
                tokio::task::yield_now().await;
                let more = self.take(generation, max - out.len(), Some(&mut demand), exhausted);
                out.extend(more);
                if out.len() < max
                    && let Some(until) = gather_until
                {
                    // The first deliveries of a new subscription come over
                    // several frames: gather them briefly.
                    while out.len() < max {
                        let notified = self.notify.notified();
                        tokio::pin!(notified);
                        notified.as_mut().enable();
                        let more =
                            self.take(generation, max - out.len(), Some(&mut demand), exhausted);
                        if more.is_empty()
                            && tokio::time::timeout_at(until, notified).await.is_err()
                        {
                            break;
                        }
                        out.extend(more);
                    }
                }
                return Ok(out);
            }
            let gone = {
                let st = lock(&self.state);
                st.generation != generation || st.broken
            };
            if gone {
                return Err(lost());
            }
            if self.ensure_consumer(link).await? {
                gather_until = Some(Instant::now() + FIRST_GATHER);
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn dead_letter_refused(&self, link: &Link, refused: Vec<(Lease, String)>) {
        for (lease, reason) in refused {
            // Deliveries over the limit come from a handle opened with a
            // higher limit, or from broker redeliveries; an undecodable one
            // was never handed out, so this delivery is no attempt.
            let attempts = lease.attempt.saturating_sub(1);
            if let Err(e) = self.move_to_dlq(link, &lease, &reason, attempts).await {
                tracing::warn!(queue = %self.name, error = %e, "rabbitmq: could not dead-letter a message; it will be redelivered");
                self.nack_back(link, lease.tag).await;
            }
        }
    }

    /// Publishes a copy to the dead-letter queue, waits for its confirm, then
    /// acknowledges the delivery: never lost, at worst duplicated.
    async fn move_to_dlq(
        &self,
        link: &Link,
        lease: &Lease,
        reason: &str,
        attempts: u32,
    ) -> Result<()> {
        let extra = vec![
            (H_REASON, AMQPValue::LongString(LongString::from(reason))),
            (H_DEAD_AT, AMQPValue::LongLongInt(now_millis())),
        ];
        let props = codec::properties(
            &lease.decoded.message,
            attempts,
            lease.decoded.enqueued_ms,
            extra,
        );
        link.publish_confirmed(&self.dlq, &lease.decoded.message.payload, props)
            .await?;
        self.ack(link, lease.tag).await
    }

    async fn ack(&self, link: &Link, tag: u64) -> Result<()> {
        let acked = timed(
            "basic.ack",
            self.t(),
            link.consume
                .basic_ack(tag, BasicAckOptions { multiple: false }),
        )
        .await;
        if acked.is_ok() {
            self.sent_settle(link, &[tag]);
        }
        acked
    }

    /// Hands a delivery back to the broker (`basic.nack`, requeue), for when
    /// moving it failed; best effort: if the channel is gone, so is the delivery.
    async fn nack_back(&self, link: &Link, tag: u64) {
        let nacked = link
            .consume
            .basic_nack(
                tag,
                BasicNackOptions {
                    multiple: false,
                    requeue: true,
                },
            )
            .await;
        if nacked.is_ok() {
            self.sent_settle(link, &[tag]);
        }
    }

    /// Forgets tags whose ack or nack was sent. A tag whose settle failed
    /// stays, which only keeps later acks from covering it.
    fn sent_settle(&self, link: &Link, tags: &[u64]) {
        let mut st = lock(&self.state);
        if st.generation == link.generation {
            for tag in tags {
                st.unsettled.remove(tag);
            }
        }
    }

    /// Acknowledges deliveries of one link, returning each tag's result.
    ///
    /// When the smallest tags still unsettled on the channel are all in
    /// `tags`, one `basic.ack` with `multiple` covers them (acks the broker
    /// need not process one by one); the rest are acknowledged one by one.
    /// A multiple ack never covers a delivery someone else holds: every tag
    /// below the highest covered one was either received and is in `tags`,
    /// or its settle was already sent.
    async fn ack_all(&self, link: &Link, mut tags: Vec<u64>) -> Vec<(u64, Result<()>)> {
        tags.sort_unstable();
        let covered = {
            let st = lock(&self.state);
            if st.generation != link.generation || st.tags_seen != st.max_tag {
                0
            } else {
                st.unsettled
                    .iter()
                    .zip(&tags)
                    .take_while(|(a, b)| a == b)
                    .count()
            }
        };
        let (run, rest) = if covered >= 2 {
            tags.split_at(covered)
        } else {
            tags.split_at(0)
        };
        let multiple = async {
            let &hi = run.last()?;
            let acked = timed(
                "basic.ack",
                self.t(),
                link.consume
                    .basic_ack(hi, BasicAckOptions { multiple: true }),
            )
            .await;
            if acked.is_ok() {
                self.sent_settle(link, run);
            }
            Some(acked)
        };
        let singles = join_all(
            rest.iter()
                .map(|&tag| async move { (tag, self.ack(link, tag).await) }),
        );
        let (multiple, mut results) = futures::join!(multiple, singles);
        if let Some(acked) = multiple {
            let failed = acked.err().map(|e| e.to_string());
            results.extend(run.iter().map(|&tag| {
                let r = match &failed {
                    None => Ok(()),
                    Some(why) => Err(QueueError::connection(
                        BACKEND,
                        format!("basic.ack (multiple) failed: {why}"),
                    )),
                };
                (tag, r)
            }));
        }
        results
    }

    /// Puts the message back on the queue (or into a holding queue) as its
    /// next attempt, then acknowledges the delivery.
    async fn requeue(&self, link: &Link, lease: &Lease, delay: Duration) -> Result<()> {
        let (queue, props) = self
            .route(
                link,
                &lease.decoded.message,
                Some(delay),
                lease.attempt,
                lease.decoded.enqueued_ms,
            )
            .await?;
        let published = link
            .publish_confirmed(&queue, &lease.decoded.message.payload, props)
            .await;
        self.forget_missing(published)?;
        self.ack(link, lease.tag).await
    }

    /// Removes a lease so that exactly one caller settles it. Stale when the
    /// delivery was settled, expired and redelivered, or its connection is gone.
    fn claim(&self, r: &ParsedReceipt) -> Result<(Lease, Arc<Link>)> {
        let link = lock(&self.link).clone();
        let mut st = lock(&self.state);
        let Some(lease) = st.leased.get(&r.token) else {
            return Err(stale());
        };
        if lease.generation != r.generation || lease.tag != r.tag {
            return Err(QueueError::invalid_receipt(
                BACKEND,
                "receipt does not match its delivery",
            ));
        }
        let usable = link.filter(|l| {
            l.generation == lease.generation && st.generation == lease.generation && l.healthy()
        });
        let Some(link) = usable else {
            st.leased.remove(&r.token);
            return Err(stale());
        };
        let lease = st.leased.remove(&r.token).expect("checked above");
        st.settled(lease.incarnation);
        Ok((lease, link))
    }

    /// Gives a claimed lease back after a failed settle, so the same receipt
    /// can retry (only while its connection lives).
    fn restore(&self, token: u64, mut lease: Lease) {
        lease.expired = false;
        let mut st = lock(&self.state);
        if st.generation == lease.generation && !st.broken {
            st.deadlines.push(Reverse((lease.deadline, token)));
            if let Some(c) = st.consumer.as_mut()
                && c.incarnation == lease.incarnation
            {
                c.outstanding += 1;
            }
            st.leased.insert(token, lease);
        }
    }

    /// The background pass: lease deadlines, idle subscription, unclaimed
    /// buffered deliveries.
    async fn housekeep(&self) {
        let Some(link) = self.current_link() else {
            return;
        };
        let now = Instant::now();
        let config = &self.settings.config;
        let mut to_dlq = Vec::new();
        let mut to_requeue = Vec::new();
        let mut to_ack = Vec::new();
        let mut woke = false;
        let (cancel, give_back) = {
            let mut st = lock(&self.state);
            while let Some(Reverse((at, token))) = st.deadlines.peek().copied() {
                if at > now {
                    break;
                }
                st.deadlines.pop();
                let Some(l) = st.leased.get(&token) else {
                    continue;
                };
                let exhausted = self.options.max_attempts.is_some_and(|m| l.attempt >= m);
                if !l.expired && l.deadline == at {
                    if l.purged || exhausted {
                        let lease = st.leased.remove(&token).expect("present");
                        st.settled(lease.incarnation);
                        if lease.purged {
                            to_ack.push(lease)
                        } else {
                            to_dlq.push(lease)
                        }
                    } else {
                        // Keep it a while: its receipt still settles it, and
                        // our next pop takes it before anything else.
                        if let Some(l) = st.leased.get_mut(&token) {
                            l.expired = true;
                        }
                        st.expired.push_back(token);
                        st.deadlines
                            .push(Reverse((at + config.expired_grace, token)));
                        woke = true;
                    }
                } else if l.expired && l.deadline + config.expired_grace == at {
                    let lease = st.leased.remove(&token).expect("present");
                    st.settled(lease.incarnation);
                    if lease.purged {
                        to_ack.push(lease)
                    } else {
                        to_requeue.push(lease)
                    }
                }
            }
            let idle = st.waiting == 0;
            let cancel = if idle && now >= st.idle_since + config.linger {
                // The next subscription is sized from the demand it meets.
                st.peak_demand = 0;
                st.consumer.take().map(|c| c.tag)
            } else {
                None
            };
            let give_back: Vec<Buffered> =
                if idle && st.consumer.is_none() && now >= st.idle_since + config.hold {
                    let generation = link.generation;
                    st.buffer
                        .drain(..)
                        .filter(|b| b.generation == generation)
                        .collect()
                } else {
                    Vec::new()
                };
            (cancel, give_back)
        };
        if woke {
            self.notify.notify_waiters();
        }
        if let Some(tag) = cancel {
            let _ = timed(
                "basic.cancel",
                self.t(),
                link.consume
                    .basic_cancel(ShortString::from(tag), BasicCancelOptions::default()),
            )
            .await;
        }
        let reason = max_attempts_reason(self.options.max_attempts.unwrap_or(0));
        let jobs = give_back
            .into_iter()
            .map(Job::GiveBack)
            .chain(to_ack.into_iter().map(Job::Ack))
            .chain(to_dlq.into_iter().map(Job::Dlq))
            .chain(to_requeue.into_iter().map(Job::Requeue));
        join_all(jobs.map(|job| self.run_job(&link, job, &reason))).await;
    }

    async fn run_job(&self, link: &Link, job: Job, reason: &str) {
        let (tag, result) = match job {
            // Republished rather than nacked, so the broker's delivery
            // count does not grow for a delivery no caller ever saw.
            Job::GiveBack(b) => {
                let props = codec::properties(
                    &b.decoded.message,
                    b.decoded.attempts_done,
                    b.decoded.enqueued_ms,
                    Vec::new(),
                );
                let sent = match link
                    .publish_confirmed(&self.name, &b.decoded.message.payload, props)
                    .await
                {
                    Ok(()) => self.ack(link, b.tag).await,
                    Err(e) => Err(e),
                };
                (b.tag, sent)
            }
            Job::Ack(l) => (l.tag, self.ack(link, l.tag).await),
            Job::Dlq(l) => (l.tag, self.move_to_dlq(link, &l, reason, l.attempt).await),
            Job::Requeue(l) => (l.tag, self.requeue(link, &l, Duration::ZERO).await),
        };
        if let Err(e) = result {
            tracing::warn!(queue = %self.name, error = %e, "rabbitmq: could not move a delivery; handing it back to the broker");
            self.nack_back(link, tag).await;
        }
    }

    /// Ends the subscription and waits until its last deliveries are buffered.
    async fn stop_consumer(&self, link: &Link) {
        let slot = lock(&self.state).consumer.take();
        if let Some(slot) = slot {
            let _ = timed(
                "basic.cancel",
                self.t(),
                link.consume
                    .basic_cancel(ShortString::from(slot.tag), BasicCancelOptions::default()),
            )
            .await;
            let _ = tokio::time::timeout(Duration::from_secs(2), slot.done).await;
        }
    }

    /// The handle that holds a receipt's delivery: this one, or another
    /// handle of the same queue in this process.
    fn owner(self: &Arc<Self>, r: &ParsedReceipt) -> Result<Arc<Inner>> {
        if r.uid == self.uid {
            return Ok(self.clone());
        }
        let other = lock(&HANDLES).get(&r.uid).and_then(Weak::upgrade);
        match other {
            Some(o) if o.name == self.name && o.settings.shown == self.settings.shown => Ok(o),
            Some(_) => Err(QueueError::invalid_receipt(
                BACKEND,
                "receipt of another queue",
            )),
            // Its handle is gone, and with it the channel holding the delivery.
            None => Err(stale()),
        }
    }

    /// The next message of the dead-letter queue, read on `channel` with
    /// `basic.get` and left unacknowledged; `None` when the queue is empty.
    async fn next_dead_letter(&self, channel: &Channel) -> Result<Option<(u64, Decoded)>> {
        let got = timed(
            "basic.get",
            self.t(),
            channel.basic_get(
                ShortString::from(self.dlq.as_str()),
                BasicGetOptions { no_ack: false },
            ),
        )
        .await?;
        Ok(got.map(|got| {
            let d = got.delivery;
            (d.delivery_tag, codec::decode(d.data, &d.properties, 0))
        }))
    }

    /// Puts back, in place, every dead letter read on `channel` up to
    /// `last_tag` and not acknowledged, then closes the channel (which
    /// would give them back too; the nack keeps their order).
    async fn release_dead_letters(&self, channel: Channel, last_tag: Option<u64>) {
        if let Some(tag) = last_tag {
            let _ = channel
                .basic_nack(
                    tag,
                    BasicNackOptions {
                        multiple: true,
                        requeue: true,
                    },
                )
                .await;
        }
        let _ = tokio::time::timeout(self.t(), channel.close(200, ShortString::from("bye"))).await;
    }

    /// Counts of the holding queues: those known, plus the whole ladder
    /// probed at most every few seconds.
    async fn holding_counts(&self, link: &Link) -> Result<BTreeMap<u64, u64>> {
        let probe_all = lock(&self.probed_at).is_none_or(|at| at.elapsed() >= PROBE_EVERY);
        let candidates: Vec<u64> = if probe_all {
            delay::LADDER_MS.to_vec()
        } else {
            lock(&self.buckets).iter().copied().collect()
        };
        let mut counts = BTreeMap::new();
        let mut channel: Option<Channel> = None;
        for bucket in candidates {
            let ch = match &channel {
                Some(c) => c.clone(),
                None => {
                    let c = link.scratch_channel().await?;
                    channel = Some(c.clone());
                    c
                }
            };
            let name = delay::holding_queue(&self.name, bucket);
            match self.passive_count(&ch, &name).await {
                Ok(n) => {
                    counts.insert(bucket, n);
                }
                Err(QueueError::QueueNotFound { .. }) => {
                    // The failed declare closed the channel.
                    channel = None;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(c) = channel {
            let _ = c.close(200, ShortString::from("bye")).await;
        }
        {
            let mut known = lock(&self.buckets);
            if probe_all {
                known.clear();
            }
            known.extend(counts.keys().copied());
        }
        if probe_all {
            *lock(&self.probed_at) = Some(Instant::now());
        }
        Ok(counts)
    }

    async fn passive_count(&self, channel: &Channel, queue: &str) -> Result<u64> {
        let options = QueueDeclareOptions {
            passive: true,
            durable: true,
            ..QueueDeclareOptions::default()
        };
        match timed_raw(
            "queue.declare",
            self.t(),
            channel.queue_declare(ShortString::from(queue), options, FieldTable::default()),
        )
        .await?
        {
            Ok(q) => Ok(u64::from(q.message_count())),
            Err(e) if is_not_found(&e) => Err(QueueError::QueueNotFound {
                backend: BACKEND,
                queue: queue.to_owned(),
            }),
            Err(e) => Err(map(e)),
        }
    }

    /// Local counts over every handle of this queue in the process:
    /// (buffered, leased, oldest enqueued ms).
    fn local_counts(&self) -> (u64, u64, Option<i64>) {
        let handles: Vec<Arc<Inner>> = lock(&HANDLES).values().filter_map(Weak::upgrade).collect();
        let (mut buffered, mut leased, mut oldest) = (0u64, 0u64, None::<i64>);
        for h in handles
            .iter()
            .filter(|h| h.name == self.name && h.settings.shown == self.settings.shown)
        {
            let st = lock(&h.state);
            for b in st.buffer.iter().filter(|b| b.generation == st.generation) {
                buffered += 1;
                oldest =
                    Some(oldest.map_or(b.decoded.enqueued_ms, |o| o.min(b.decoded.enqueued_ms)));
            }
            for l in st.leased.values().filter(|l| l.generation == st.generation) {
                if l.expired {
                    buffered += 1;
                } else {
                    leased += 1;
                }
                oldest =
                    Some(oldest.map_or(l.decoded.enqueued_ms, |o| o.min(l.decoded.enqueued_ms)));
            }
        }
        (buffered, leased, oldest)
    }
}

#[async_trait]
impl QueueProvider for RabbitMqQueue {
    fn queue_name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn push(&self, message: Message) -> Result<MessageId> {
        let inner = &self.inner;
        inner.check(&message)?;
        let link = inner.link().await?;
        let (queue, props) = inner
            .route(&link, &message, message.delay, 0, now_millis())
            .await?;
        let published = link
            .publish_confirmed(&queue, &message.payload, props)
            .await;
        inner.check_link(&link, inner.forget_missing(published))?;
        Ok(message.id)
    }

    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let link = inner.link().await?;
        let now = now_millis();
        let mut failures = Vec::new();
        let mut routed = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            let route = async {
                inner.check(message)?;
                inner.route(&link, message, message.delay, 0, now).await
            }
            .await;
            match route {
                Ok((queue, props)) => routed.push((index, message, queue, props)),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        // Polled together, the publishes are queued in order and written in
        // as few socket writes as the I/O loop manages.
        let link_ref = &link;
        let sent = join_all(
            routed
                .into_iter()
                .map(|(index, message, queue, props)| async move {
                    let confirm = link_ref
                        .publish_start(&queue, &message.payload, props)
                        .await;
                    (index, queue, confirm)
                }),
        )
        .await;
        let mut pending = Vec::new();
        for (index, queue, confirm) in sent {
            match confirm {
                Ok(c) => pending.push((index, (queue, c))),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        let t = inner.t();
        let confirmed = join_all(
            pending
                .into_iter()
                .map(|(index, (queue, confirm))| async move {
                    let result = match tokio::time::timeout(t, confirm).await {
                        Err(_) => Err(QueueError::Timeout {
                            backend: BACKEND,
                            operation: "publisher confirm",
                            after: t,
                        }),
                        Ok(Err(e)) => Err(map(e)),
                        Ok(Ok(c)) => check_confirmation(&queue, c),
                    };
                    (index, result)
                }),
        )
        .await;
        for (index, result) in confirmed {
            if let Err(error) = inner.forget_missing(result) {
                failures.push(BatchFailure { index, error });
            }
        }
        if failures.is_empty() {
            return Ok(messages.into_iter().map(|m| m.id).collect());
        }
        if failures
            .iter()
            .any(|f| matches!(f.error, QueueError::Timeout { .. }))
        {
            let timeout = QueueError::Timeout {
                backend: BACKEND,
                operation: "publisher confirm",
                after: inner.t(),
            };
            let _ = inner.check_link(&link, Err::<(), _>(timeout));
        }
        failures.sort_by_key(|f| f.index);
        Err(QueueError::PartialBatch {
            backend: BACKEND,
            failures,
        })
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        self.inner.pop_batch(max, wait).await
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        let r = parse_receipt(receipt)?;
        let owner = self.inner.owner(&r)?;
        let (lease, link) = owner.claim(&r)?;
        let acked = owner.ack(&link, lease.tag).await;
        owner.check_link(&link, acked)
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<()> {
        let mut failures = Vec::new();
        let mut claimed = Vec::new();
        for (index, receipt) in receipts.iter().enumerate() {
            let c = parse_receipt(receipt).and_then(|r| {
                let owner = self.inner.owner(&r)?;
                let (lease, link) = owner.claim(&r)?;
                Ok((owner, lease.tag, link))
            });
            match c {
                Ok(c) => claimed.push((index, c)),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        // One group per handle and link: each is acknowledged together, with
        // a multiple ack where the tags allow it.
        let mut groups: Vec<(Arc<Inner>, Arc<Link>, Vec<(usize, u64)>)> = Vec::new();
        for (index, (owner, tag, link)) in claimed {
            match groups
                .iter_mut()
                .find(|(o, l, _)| Arc::ptr_eq(o, &owner) && Arc::ptr_eq(l, &link))
            {
                Some((_, _, tags)) => tags.push((index, tag)),
                None => groups.push((owner, link, vec![(index, tag)])),
            }
        }
        let acked = join_all(groups.into_iter().map(|(owner, link, tags)| async move {
            let index_of: HashMap<u64, usize> = tags.iter().map(|&(i, t)| (t, i)).collect();
            let results = owner
                .ack_all(&link, tags.into_iter().map(|(_, t)| t).collect())
                .await;
            results
                .into_iter()
                .map(|(tag, r)| (index_of[&tag], r))
                .collect::<Vec<_>>()
        }))
        .await;
        for (index, result) in acked.into_iter().flatten() {
            if let Err(error) = result {
                failures.push(BatchFailure { index, error });
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        failures.sort_by_key(|f| f.index);
        Err(QueueError::PartialBatch {
            backend: BACKEND,
            failures,
        })
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        if delay > delay::MAX_DELAY {
            return Err(QueueError::invalid_message(
                BACKEND,
                format!("delay {delay:?} exceeds the maximum of 7 days"),
            ));
        }
        let r = parse_receipt(receipt)?;
        let owner = self.inner.owner(&r)?;
        let (lease, link) = owner.claim(&r)?;
        let result = if lease.purged {
            owner.ack(&link, lease.tag).await
        } else if let Some(max) = owner.options.max_attempts.filter(|&m| lease.attempt >= m) {
            owner
                .move_to_dlq(&link, &lease, &max_attempts_reason(max), lease.attempt)
                .await
        } else {
            owner.requeue(&link, &lease, delay).await
        };
        if let Err(e) = result {
            owner.restore(r.token, lease);
            return Err(e);
        }
        Ok(())
    }

    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        let r = parse_receipt(receipt)?;
        let owner = self.inner.owner(&r)?;
        let now = Instant::now();
        // A far-away deadline is capped rather than overflowing the clock.
        let deadline = now
            .checked_add(by)
            .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        let mut st = lock(&owner.state);
        let current = st.generation;
        let Some(lease) = st.leased.get_mut(&r.token) else {
            return Err(stale());
        };
        if lease.generation != r.generation || lease.tag != r.tag {
            return Err(QueueError::invalid_receipt(
                BACKEND,
                "receipt does not match its delivery",
            ));
        }
        if lease.generation != current {
            return Err(stale());
        }
        lease.deadline = deadline;
        lease.expired = false;
        st.deadlines.push(Reverse((deadline, r.token)));
        Ok(())
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        let r = parse_receipt(receipt)?;
        let owner = self.inner.owner(&r)?;
        let (lease, link) = owner.claim(&r)?;
        if let Err(e) = owner
            .move_to_dlq(&link, &lease, reason, lease.attempt)
            .await
        {
            owner.restore(r.token, lease);
            return Err(e);
        }
        Ok(())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let link = inner.link().await?;
        let channel = link.scratch_channel().await?;
        let mut out = Vec::new();
        let mut last_tag = None;
        let result = async {
            while out.len() < limit {
                let Some((tag, decoded)) = inner.next_dead_letter(&channel).await? else {
                    break;
                };
                last_tag = Some(tag);
                out.push(dead_letter_of(decoded));
            }
            Ok::<_, QueueError>(())
        }
        .await;
        inner.release_dead_letters(channel, last_tag).await;
        result?;
        Ok(out)
    }

    async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        let inner = &self.inner;
        let link = inner.link().await?;
        let channel = link.scratch_channel().await?;
        let ids: HashSet<MessageId> = match &which {
            Replay::Ids(ids) => ids.iter().cloned().collect(),
            _ => HashSet::new(),
        };
        let limit = match which {
            Replay::Oldest(n) => n,
            Replay::Ids(_) | Replay::All => usize::MAX,
        };
        let mut pending = Vec::new();
        let mut last_tag = None;
        let read = async {
            while pending.len() < limit {
                let Some((tag, decoded)) = inner.next_dead_letter(&channel).await? else {
                    break;
                };
                if matches!(which, Replay::Ids(_)) && !ids.contains(&decoded.message.id) {
                    // Left alone: given back, in place, below.
                    last_tag = Some(tag);
                    continue;
                }
                // Same id, payload and headers; attempts start again.
                let props = codec::properties(&decoded.message, 0, decoded.enqueued_ms, Vec::new());
                let confirm = link
                    .publish_start(&inner.name, &decoded.message.payload, props)
                    .await?;
                pending.push((tag, confirm));
            }
            Ok::<_, QueueError>(())
        }
        .await;
        let t = inner.t();
        let name = inner.name.as_str();
        let confirmed = join_all(pending.into_iter().map(|(tag, confirm)| async move {
            let ok = match tokio::time::timeout(t, confirm).await {
                Ok(Ok(c)) => check_confirmation(name, c).is_ok(),
                _ => false,
            };
            (tag, ok)
        }))
        .await;
        let mut moved = 0;
        for (tag, ok) in confirmed {
            if ok
                && channel
                    .basic_ack(tag, BasicAckOptions { multiple: false })
                    .await
                    .is_ok()
            {
                moved += 1;
            }
        }
        inner.release_dead_letters(channel, last_tag).await;
        read?;
        Ok(moved)
    }

    async fn purge_dead_letters(&self) -> Result<u64> {
        let inner = &self.inner;
        let link = inner.link().await?;
        let channel = link.scratch_channel().await?;
        let purged = timed(
            "queue.purge",
            inner.t(),
            channel.queue_purge(
                ShortString::from(inner.dlq.as_str()),
                QueuePurgeOptions::default(),
            ),
        )
        .await;
        let _ = tokio::time::timeout(inner.t(), channel.close(200, ShortString::from("bye"))).await;
        Ok(u64::from(purged?))
    }

    async fn purge(&self) -> Result<u64> {
        let inner = &self.inner;
        let link = inner.link().await?;
        let mut count = 0u64;
        {
            // No new deliveries while the buffer is emptied.
            let _ctl = inner.consumer_ctl.lock().await;
            inner.stop_consumer(&link).await;
            // Waiting messages held here go now; leased ones' future
            // redeliveries are dropped when they come due.
            let tags: Vec<u64> = {
                let mut st = lock(&inner.state);
                let generation = st.generation;
                let mut tags: Vec<u64> = st
                    .buffer
                    .drain(..)
                    .filter(|b| b.generation == generation)
                    .map(|b| b.tag)
                    .collect();
                let expired: Vec<u64> = st
                    .leased
                    .iter()
                    .filter(|(_, l)| l.expired)
                    .map(|(t, _)| *t)
                    .collect();
                for token in expired {
                    if let Some(l) = st.leased.remove(&token) {
                        tags.push(l.tag);
                    }
                }
                for lease in st.leased.values_mut() {
                    lease.purged = true;
                }
                tags
            };
            for tag in tags {
                inner.ack(&link, tag).await?;
                count += 1;
            }
        }
        let channel = link.scratch_channel().await?;
        let main = timed(
            "queue.purge",
            inner.t(),
            channel.queue_purge(
                ShortString::from(inner.name.as_str()),
                QueuePurgeOptions::default(),
            ),
        )
        .await?;
        count += u64::from(main);
        let _ = tokio::time::timeout(inner.t(), channel.close(200, ShortString::from("bye"))).await;
        let buckets: Vec<u64> = inner
            .holding_counts(&link)
            .await?
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(b, _)| b)
            .collect();
        if !buckets.is_empty() {
            let channel = link.scratch_channel().await?;
            for bucket in buckets {
                let name = delay::holding_queue(&inner.name, bucket);
                count += u64::from(
                    timed(
                        "queue.purge",
                        inner.t(),
                        channel.queue_purge(ShortString::from(name), QueuePurgeOptions::default()),
                    )
                    .await?,
                );
            }
            let _ =
                tokio::time::timeout(inner.t(), channel.close(200, ShortString::from("bye"))).await;
        }
        Ok(count)
    }

    async fn stats(&self) -> Result<QueueStats> {
        let inner = &self.inner;
        let link = inner.link().await?;
        let channel = link.scratch_channel().await?;
        let counts = async {
            let ready = inner.passive_count(&channel, &inner.name).await?;
            let dead = inner.passive_count(&channel, &inner.dlq).await?;
            Ok::<_, QueueError>((ready, dead))
        }
        .await;
        let _ = tokio::time::timeout(inner.t(), channel.close(200, ShortString::from("bye"))).await;
        let (ready, dead) = counts?;
        let delayed: u64 = inner.holding_counts(&link).await?.values().sum();
        let (buffered, leased, oldest) = inner.local_counts();
        Ok(QueueStats::default()
            .with_depth(ready + buffered)
            .with_in_flight(leased)
            .with_delayed(delayed)
            .with_dead_lettered(dead)
            .with_oldest_age(oldest.map(codec::age)))
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}

fn dead_letter_of(decoded: Decoded) -> DeadLetter {
    let dead_ms = decoded.dead_at_ms.unwrap_or(decoded.enqueued_ms);
    let attempts = if decoded.dead_at_ms.is_some() {
        decoded.attempts_done
    } else {
        decoded.attempts_done + 1
    };
    DeadLetter::new(
        decoded.message,
        decoded.reason.unwrap_or_else(|| "unknown".to_owned()),
        attempts,
        system_time_from_millis(dead_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_parse_back() {
        let r = Receipt::new(format!("{:x}.3.17.42", 0xdead_beef_u64));
        let p = parse_receipt(&r).unwrap();
        assert_eq!(
            (p.uid, p.generation, p.tag, p.token),
            (0xdead_beef, 3, 17, 42)
        );
        for bad in ["", "x.1.2.3", "ab.1.2", "ab.1.2.3.4", "ab.-1.2.3"] {
            assert!(
                matches!(
                    parse_receipt(&Receipt::new(bad)),
                    Err(QueueError::InvalidReceipt { .. })
                ),
                "{bad}"
            );
        }
    }
}
