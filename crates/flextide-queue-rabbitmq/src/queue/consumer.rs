//! The pop path: what is buffered is handed out at once; a short pop uses
//! `basic.get`; a waiting pop subscribes (`basic.consume`) with a prefetch
//! sized from the demand, and a task per subscription buffers what the
//! broker sends.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use flextide_queue_core::{Delivery, QueueError, Result};
use futures::{FutureExt, StreamExt};
use lapin::{
    Consumer,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions},
    types::{FieldTable, ShortString},
};
use tokio::{sync::watch, time::Instant};

use super::{
    Inner, closed, detached, lock, lost,
    state::{Buffered, ConsumerSlot, Handed, Lease, State},
};
use crate::{
    BACKEND, codec,
    error::{is_not_found, map, timed, timed_raw},
    link::Link,
};

/// Pops shorter than this with nothing buffered use `basic.get`: they ask
/// for what is available now, not for a subscription.
const GET_BELOW: Duration = Duration::from_millis(20);
/// How long a pop that started a subscription gathers its first deliveries.
const FIRST_GATHER: Duration = Duration::from_millis(5);

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
        // Dropped outside a runtime, there is nowhere to run the move: the
        // deliveries stay on the channel and go back to the broker with it.
        let rt = tokio::runtime::Handle::try_current().ok()?;
        let (inner, link) = (self.inner.clone(), self.link.clone());
        let leases = std::mem::take(&mut self.leases);
        Some(rt.spawn(async move { inner.dead_letter_refused(&link, leases).await }))
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
    /// Leases up to `n` buffered deliveries of link `generation`.
    fn take(
        &self,
        generation: u64,
        n: usize,
        demand: Option<&mut Demand<'_>>,
        refused: &mut Vec<(Lease, String)>,
    ) -> Vec<Delivery> {
        let mut st = lock(&self.state);
        let out = st.take(generation, n, Instant::now(), refused);
        if let Some(d) = demand {
            d.got(&mut st, out.len());
        }
        out
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
        refused: &mut Vec<(Lease, String)>,
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
            match st.lease(b, Instant::now()) {
                Handed::Out(d) => out.push(d),
                Handed::Refused(l, why) => refused.push((l, why)),
            }
        }
        Ok(out)
    }

    /// Makes sure a subscription can deliver what waiting pops ask for (see
    /// [`State::resubscribe`] for the window).
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
        if self.is_closed() {
            return Err(closed());
        }
        let plan = {
            let mut st = lock(&self.state);
            if st.generation != link.generation || st.broken {
                return Err(lost());
            }
            st.resubscribe(usize::from(self.settings.config.max_prefetch))
        };
        let Some(plan) = plan else {
            return Ok(false);
        };
        // Cancel, qos and consume are sent back to back and answered in
        // order: one round trip instead of three. Each frame is queued when
        // its future is first polled, and `join!` polls them in this order.
        let t = self.t();
        let incarnation = plan.incarnation;
        let tag = format!("ft-{:x}-{}-{incarnation}", self.uid, link.generation);
        let cancel = async {
            match plan.cancel {
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
            match plan.qos {
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
                self.mark_broken(link);
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
                prefetch: plan.prefetch,
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

    /// Ends the subscription and waits until its last deliveries, and those
    /// of subscriptions cancelled before it on this link, are buffered: the
    /// broker sends nothing to a consumer after its cancel-ok, and each
    /// subscription's task ends once it has buffered what came before.
    /// Bounded by the operation timeout.
    pub(super) async fn stop_consumer(&self, link: &Link) {
        let (tag, done) = lock(&self.state).unsubscribe();
        let t = self.t();
        if let Some(tag) = tag {
            let _ = timed(
                "basic.cancel",
                t,
                link.consume
                    .basic_cancel(ShortString::from(tag), BasicCancelOptions::default()),
            )
            .await;
        }
        let _ = tokio::time::timeout(t, futures::future::join_all(done)).await;
    }

    pub(super) async fn pop_batch(
        self: &Arc<Self>,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(self.settings.config.max_batch);
        let link = self.ready_link().await?;
        let mut refused = Refused::new(self, &link);
        let result = self.pop_on(&link, max, wait, &mut refused.leases).await;
        let result = self.check_link(&link, result);
        refused.finish().await;
        result
    }

    /// The wait loop. Not `backend::wait_for_deliveries`: a pop that found
    /// deliveries here goes on gathering a new subscription's first frames,
    /// and subscribes between looks, which that helper's single `look`
    /// does not express; the rule it encodes (register the wake-up before
    /// each look) is kept.
    async fn pop_on(
        self: &Arc<Self>,
        link: &Arc<Link>,
        max: usize,
        wait: Duration,
        refused: &mut Vec<(Lease, String)>,
    ) -> Result<Vec<Delivery>> {
        let generation = link.generation;
        let deadline = Instant::now() + wait;
        // What is buffered already is returned at once: the consumer task
        // buffers each burst the broker sends before waking pops, so waiting
        // for more would only add latency.
        let out = self.take(generation, max, None, refused);
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
            let mut out = self.take(generation, max, Some(&mut demand), refused);
            if !out.is_empty() {
                // Let the consumer task buffer what the I/O loop already
                // read before returning a partial batch.
                tokio::task::yield_now().await;
                let more = self.take(generation, max - out.len(), Some(&mut demand), refused);
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
                            self.take(generation, max - out.len(), Some(&mut demand), refused);
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
}
