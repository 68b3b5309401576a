//! One worker's run: start the loops, dispatch deliveries to the handler,
//! and shut down in order.

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, atomic::Ordering},
    task::Poll,
    time::{Duration, SystemTime},
};

use flextide_queue_core::Delivery;
use tokio::{
    sync::mpsc,
    time::{Instant, timeout},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::Service;
use tracing::{Instrument, error, field, info_span, warn};

use super::ack::Ack;
use super::{
    Shared, ack,
    adapt::{Policy, Sizing},
    fetch, guard, process, settle,
};
use crate::{BoxError, Task, error::error_chain, gate::Gates};

/// Deliveries of one pop.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) deliveries: Vec<Delivery>,
    /// When the pop was sent: leases run from no earlier than this.
    pub(crate) popped_at: Instant,
    /// The circuit breaker's half-open probe.
    pub(crate) probe: bool,
}

/// What each message's task needs from its worker's run.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) gates: Arc<Gates>,
    pub(crate) acks: mpsc::UnboundedSender<Ack>,
    /// Cancelled when the shutdown deadline passes.
    pub(crate) hard_stop: CancellationToken,
    pub(crate) sizing: Arc<Sizing>,
}

pub(crate) async fn drive<S>(
    shared: Arc<Shared>,
    mut service: S,
    shutdown: CancellationToken,
) -> (usize, Option<String>)
where
    S: Service<Task> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    let config = &shared.config;
    let gates = Arc::new(Gates::new(config.concurrency, config.prefetch));
    let sizing = Arc::new(Sizing::new(Policy::new(
        config.concurrency,
        config.prefetch,
        config.fetch_batch,
        config.adaptive,
    )));
    shared.counters.register(&gates);
    // Stops fetching and dispatching: the caller's shutdown, or a failed service.
    let stop = shutdown.child_token();
    let hard_stop = CancellationToken::new();
    let tracker = TaskTracker::new();

    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let ack_close = CancellationToken::new();
    let acker = tokio::spawn(ack::run(
        shared.clone(),
        gates.clone(),
        sizing.clone(),
        ack_rx,
        ack_close.clone(),
    ));
    // Never full: every batch holds at least one unit of the held gate.
    let (batch_tx, mut batch_rx) = mpsc::channel(sizing.policy().max_held());
    let fetcher = tokio::spawn(fetch::run(
        shared.clone(),
        gates.clone(),
        sizing.clone(),
        batch_tx,
        stop.clone(),
    ));

    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        gates: gates.clone(),
        acks: ack_tx,
        hard_stop: hard_stop.clone(),
        sizing,
    });
    let mut leftovers = Vec::new();
    let error = dispatch(
        &ctx,
        &mut service,
        &mut batch_rx,
        &stop,
        &tracker,
        &mut leftovers,
    )
    .await;

    // Shutdown, in order: no more fetching, give back what never started,
    // let running handlers finish (then cancel them), flush the acks.
    stop.cancel();
    let _ = fetcher.await;
    batch_rx.close();
    while let Ok(batch) = batch_rx.try_recv() {
        leftovers.extend(batch.deliveries);
    }
    drop(service);
    settle::give_back(&shared, &gates, leftovers).await;

    tracker.close();
    if timeout(config.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        hard_stop.cancel();
        let _ = timeout(config.abort_grace, tracker.wait()).await;
    }
    drop(ctx);
    ack_close.cancel();
    let _ = timeout(config.abort_grace, acker).await;

    let still_running = gates.running.used();
    shared.counters.unregister(&gates);
    (still_running, error)
}

/// Hands deliveries to the service until `stop`; deliveries taken but not
/// started go to `leftovers`. Returns the service's error if it failed.
async fn dispatch<S>(
    ctx: &Arc<Ctx>,
    service: &mut S,
    rx: &mut mpsc::Receiver<Batch>,
    stop: &CancellationToken,
    tracker: &TaskTracker,
    leftovers: &mut Vec<Delivery>,
) -> Option<String>
where
    S: Service<Task> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    let gates = &ctx.gates;
    loop {
        if stop.is_cancelled() {
            return None;
        }
        let batch = match rx.try_recv() {
            Ok(batch) => batch,
            Err(_) => tokio::select! {
                biased;
                _ = stop.cancelled() => return None,
                batch = rx.recv() => match batch {
                    Some(batch) => batch,
                    None => return None,
                },
            },
        };
        let (popped_at, probe) = (batch.popped_at, batch.probe);
        let mut deliveries = batch.deliveries.into_iter();
        while let Some(delivery) = deliveries.next() {
            // Given back rather than started with half its lease gone.
            let give_back_at = guard::give_back_at(popped_at, delivery.lease_deadline);
            if give_back_at.is_some_and(|at| Instant::now() >= at) {
                give_back_late(ctx, tracker, delivery);
                continue;
            }
            if gates.running.try_take(1) == 0 {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => {
                        leftovers.push(delivery);
                        leftovers.extend(deliveries);
                        return None;
                    }
                    _ = gates.running.take(1) => {}
                    _ = guard::sleep_until_opt(give_back_at) => {
                        give_back_late(ctx, tracker, delivery);
                        continue;
                    }
                }
            }
            // One poll first: a ready service (the usual case) costs no select.
            // Errors are boxed at once: `S::Error` need not be `Send`.
            let mut poll_ready = |cx: &mut std::task::Context<'_>| {
                service.poll_ready(cx).map_err(Into::<BoxError>::into)
            };
            let ready = match std::future::poll_fn(|cx| Poll::Ready(poll_ready(cx))).await {
                Poll::Ready(ready) => Some(ready),
                Poll::Pending => tokio::select! {
                    biased;
                    _ = stop.cancelled() => None,
                    ready = std::future::poll_fn(&mut poll_ready) => Some(ready),
                    _ = guard::sleep_until_opt(give_back_at) => {
                        gates.running.release(1);
                        give_back_late(ctx, tracker, delivery);
                        continue;
                    }
                },
            };
            match ready {
                Some(Ok(())) => {
                    if guard::started_late(popped_at, delivery.lease_deadline, Instant::now()) {
                        ctx.sizing.report_late();
                    }
                    start(ctx, service, delivery, popped_at, probe, tracker)
                }
                Some(Err(e)) => {
                    gates.running.release(1);
                    leftovers.push(delivery);
                    leftovers.extend(deliveries);
                    let chain = error_chain(&*e);
                    error!(queue = %ctx.shared.queue_name, error = %chain, "the handler service failed; stopping the worker");
                    return Some(format!("handler service failed: {chain}"));
                }
                None => {
                    gates.running.release(1);
                    leftovers.push(delivery);
                    leftovers.extend(deliveries);
                    return None;
                }
            }
        }
    }
}

/// Gives back a prefetched delivery that waited half its lease without a
/// free slot (released: the attempt is not spent), and tells the sizing
/// the worker holds too many.
fn give_back_late(ctx: &Arc<Ctx>, tracker: &TaskTracker, delivery: Delivery) {
    ctx.sizing.report_late();
    let shared = &ctx.shared;
    if let Some(earlier) = shared.late_log.admit(1) {
        warn!(
            queue = %shared.queue_name,
            earlier_unreported = earlier,
            "a prefetched delivery waited half its lease without a free slot; giving it back before its lease ends (the worker now holds fewer)"
        );
    }
    shared.metrics.given_back_late.increment(1);
    let ctx = ctx.clone();
    tracker.spawn(async move {
        settle::give_back_late(&ctx.shared, &ctx.gates, delivery).await;
    });
}

/// Calls the service on one delivery and spawns the task that supervises
/// and settles it.
fn start<S>(
    ctx: &Arc<Ctx>,
    service: &mut S,
    delivery: Delivery,
    popped_at: Instant,
    probe: bool,
    tracker: &TaskTracker,
) where
    S: Service<Task> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    let shared = &ctx.shared;
    let Delivery {
        message,
        receipt,
        attempt,
        lease_deadline,
        ..
    } = delivery;
    if let Some(age) = message
        .enqueued_at
        .and_then(|at| SystemTime::now().duration_since(at).ok())
    {
        shared.metrics.push_to_start.record(age.as_secs_f64());
    }
    let span = info_span!(
        "flextide.process",
        otel.kind = "consumer",
        messaging.system = shared.backend,
        messaging.operation.type = "process",
        messaging.destination.name = &*shared.queue_name,
        messaging.message.id = %message.id,
        messaging.delivery.attempt = attempt,
        traceparent = message.traceparent().map(field::display),
        tracestate = message.tracestate().map(field::display),
    );
    let token = CancellationToken::new();
    let task = Task {
        message,
        attempt,
        lease_deadline,
        token: token.clone(),
        queue: shared.queue_name.clone(),
    };
    // A service whose `call` itself panics is treated like a panicking future.
    let call = {
        let _entered = span.enter();
        std::panic::catch_unwind(AssertUnwindSafe(|| service.call(task)))
    };
    let job = process::Job {
        receipt,
        attempt,
        lease_deadline,
        popped_at,
        token,
        probe,
    };
    tracker.spawn(process::run(ctx.clone(), job, call).instrument(span));
}

/// Keeps the gauges of a standalone worker current.
pub(crate) async fn monitor(shared: Arc<Shared>, stop: CancellationToken) {
    let mut meter = UtilizationMeter::new(&shared);
    let mut tick = tokio::time::interval(shared.config.stats_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        meter.sample(&shared);
        if let Ok(stats) = shared.queue.stats().await {
            shared.metrics.depth.set(stats.depth as f64);
        }
    }
}

/// Busy share of the concurrency slots between two samples: the handlers'
/// run time added up, or the share running right now if that is higher
/// (handlers longer than the interval count only when they end).
#[derive(Debug)]
pub(crate) struct UtilizationMeter {
    busy_nanos: u64,
    at: Instant,
}

impl UtilizationMeter {
    pub(crate) fn new(shared: &Shared) -> Self {
        UtilizationMeter {
            busy_nanos: shared.counters.busy_nanos.load(Ordering::Relaxed),
            at: Instant::now(),
        }
    }

    /// Samples, updates the in-flight and utilisation gauges, and returns
    /// the utilisation (0 to 1).
    pub(crate) fn sample(&mut self, shared: &Shared) -> f64 {
        let now = Instant::now();
        let busy = shared.counters.busy_nanos.load(Ordering::Relaxed);
        let (running, _, slots) = shared.counters.load();
        let window = now.duration_since(self.at).max(Duration::from_millis(1));
        let average =
            (busy - self.busy_nanos) as f64 / (window.as_nanos() as f64 * slots.max(1) as f64);
        let current = running as f64 / slots.max(1) as f64;
        self.busy_nanos = busy;
        self.at = now;
        let utilization = average.max(current).clamp(0.0, 1.0);
        shared.metrics.in_flight.set(running as f64);
        shared.metrics.utilization.set(utilization);
        utilization
    }
}
