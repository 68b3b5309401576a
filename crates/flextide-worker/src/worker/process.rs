//! One delivery from the handler's call to its settlement: catches panics,
//! extends the lease while the handler runs, cancels it at the shutdown
//! deadline, and settles by the result.

use std::{
    any::Any,
    future::Future,
    panic::AssertUnwindSafe,
    pin::{Pin, pin},
    sync::{Arc, atomic::Ordering},
    task::Poll,
    time::Duration,
};

use flextide_queue_core::{QueueError, Receipt};
use futures::{FutureExt, future::OptionFuture};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::{ack::Ack, run::Ctx, settle};
use crate::{
    BoxError, HandlerError,
    error::{classify, error_chain},
    progress::bump,
};

/// The runtime's half of a delivery (the handler got the other half).
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) receipt: Receipt,
    pub(crate) attempt: u32,
    pub(crate) lease_deadline: Instant,
    pub(crate) popped_at: Instant,
    pub(crate) token: CancellationToken,
    pub(crate) probe: bool,
}

type Panic = Box<dyn Any + Send + 'static>;

enum Outcome<T> {
    /// The handler returned (or panicked); its response is dropped.
    Done(Result<Result<(), T>, Panic>),
    /// The lease could not be extended; the handler was cancelled.
    LeaseLost,
    /// Shutdown's deadline passed; the handler was cancelled and dropped.
    Aborted,
}

/// A running `extend` call.
type Extension<'a> = Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + 'a>>;

/// Shortest lease the heartbeat works with, so a tiny lease cannot spin it.
const MIN_LEASE: Duration = Duration::from_millis(10);

pub(crate) async fn run<F, R, E>(ctx: Arc<Ctx>, job: Job, call: Result<F, Panic>)
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
{
    let shared = &*ctx.shared;
    let started = Instant::now();
    let (outcome, lease_end) = match call {
        Ok(future) => supervise(&ctx, &job, future).await,
        Err(panic) => (Outcome::Done(Err(panic)), job.lease_deadline),
    };
    let elapsed = started.elapsed();
    ctx.gates.running.release(1);
    shared
        .counters
        .busy_nanos
        .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);

    let failure = match outcome {
        Outcome::Done(Ok(Ok(_))) => {
            shared.metrics.duration.record(elapsed.as_secs_f64());
            bump(&shared.counters.processed);
            shared.metrics.processed.increment(1);
            record_breaker(&ctx, Some(true), job.probe);
            let ack = Ack {
                receipt: job.receipt,
                lease_end,
            };
            if let Err(unsent) = ctx.acks.send(ack) {
                // The ack loop is gone (a shutdown gave up waiting): ack here.
                settle::ack_one(shared, &unsent.0.receipt).await;
                ctx.gates.held.release(1);
            }
            return;
        }
        Outcome::Done(Ok(Err(e))) => classify(e),
        Outcome::Done(Err(panic)) => {
            bump(&shared.counters.panicked);
            shared.metrics.panicked.increment(1);
            HandlerError::retryable(format!("handler panicked: {}", panic_message(&*panic)))
        }
        Outcome::LeaseLost => {
            bump(&shared.counters.lease_lost);
            shared.metrics.lease_lost.increment(1);
            // Said when the lease was found lost (rate-limited when stale).
            debug!(
                "lease lost while the handler ran; not settling: the message is delivered again"
            );
            record_breaker(&ctx, None, job.probe);
            ctx.gates.held.release(1);
            return;
        }
        Outcome::Aborted => {
            record_breaker(&ctx, None, job.probe);
            settle::give_back_one(shared, &job.receipt).await;
            ctx.gates.held.release(1);
            return;
        }
    };

    shared.metrics.duration.record(elapsed.as_secs_f64());
    bump(&shared.counters.failed);
    shared.metrics.failed.increment(1);
    let chain = error_chain(&failure);
    let policy = &shared.config.retry;
    if failure.is_retryable() && !policy.is_exhausted(job.attempt) {
        record_breaker(&ctx, Some(false), job.probe);
        let delay = failure
            .retry_after()
            .unwrap_or_else(|| policy.delay(job.attempt));
        warn!(error = %chain, attempt = job.attempt, retry_in = ?delay, "handler failed; retrying later");
        settle::retry_later(shared, &job.receipt, delay).await;
    } else {
        let reason = if failure.is_retryable() {
            record_breaker(&ctx, Some(false), job.probe);
            format!(
                "{}: {chain}",
                flextide_queue_core::backend::max_attempts_reason(policy.max_attempts)
            )
        } else {
            record_breaker(&ctx, None, job.probe);
            chain
        };
        error!(reason = %reason, attempt = job.attempt, "handler failed for good; dead-lettering");
        settle::dead_letter(shared, &job.receipt, &reason).await;
    }
    ctx.gates.held.release(1);
}

fn record_breaker(ctx: &Ctx, result: Option<bool>, probe: bool) {
    if let Some(breaker) = &ctx.shared.breaker {
        breaker.record(result, probe, &ctx.shared.counters, &ctx.shared.metrics);
    }
}

/// Runs the handler future to its end, the lease lost, or the hard stop;
/// returns how it ended and when the lease (as last extended) ends.
async fn supervise<F, R, E>(ctx: &Ctx, job: &Job, future: F) -> (Outcome<BoxError>, Instant)
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
{
    // Only what the runtime needs leaves the handler's future: the response
    // is dropped at once, the error boxed (so neither need be `Send`).
    let future = future.map(|result| result.map(drop).map_err(Into::into));
    let mut future = pin!(AssertUnwindSafe(future).catch_unwind());
    // Most handlers finish on their first poll: no timer, no select.
    if let Poll::Ready(result) = futures::poll!(future.as_mut()) {
        return (Outcome::Done(result), job.lease_deadline);
    }
    let shared = &*ctx.shared;
    let heartbeat = shared.config.heartbeat && shared.caps.extend_lease;
    let lease = job
        .lease_deadline
        .saturating_duration_since(job.popped_at)
        .max(MIN_LEASE);
    let mut deadline = job.lease_deadline;
    let mut next_beat = deadline.checked_sub(lease / 2).unwrap_or(deadline);
    let mut extending: Option<(Instant, Extension<'_>)> = None;
    let mut lost = false;
    let give_up = shared.config.handler_timeout.map(|t| Instant::now() + t);
    loop {
        tokio::select! {
            biased;
            result = future.as_mut() => {
                return (if lost { Outcome::LeaseLost } else { Outcome::Done(result) }, deadline);
            }
            _ = sleep_until_opt(give_up), if give_up.is_some() && !lost => {
                job.token.cancel();
                let timeout = shared.config.handler_timeout.unwrap_or_default();
                warn!(?timeout, attempt = job.attempt, "the handler ran past its timeout; retrying the message");
                return (Outcome::Done(Ok(Err(Box::new(tower::timeout::error::Elapsed::new())))), deadline);
            }
            _ = ctx.hard_stop.cancelled() => {
                job.token.cancel();
                return (if lost { Outcome::LeaseLost } else { Outcome::Aborted }, deadline);
            }
            Some(result) = OptionFuture::from(extending.as_mut().map(|(_, f)| f)) => {
                let (sent_at, _) = extending.take().expect("an extension was running");
                match result {
                    Ok(()) => {
                        deadline = sent_at + lease;
                        next_beat = sent_at + lease / 2;
                        debug!(lease = ?lease, "lease extended");
                    }
                    Err(e) if e.is_retryable() && Instant::now() + lease / 10 < deadline => {
                        next_beat = Instant::now() + (lease / 10).min(Duration::from_secs(1));
                        warn!(error = %e, "extending the lease failed; trying again");
                    }
                    Err(QueueError::StaleReceipt { .. }) => {
                        lost = true;
                        job.token.cancel();
                        // After a broker restart every running delivery's
                        // receipt goes stale at once: one warning per window.
                        if let Some(suppressed) = shared.stale_log.admit(1) {
                            warn!(
                                earlier_unreported = suppressed,
                                "a running handler's receipt is stale (its lease ended, or the broker restarted); cancelling it: the message is delivered again"
                            );
                        }
                    }
                    Err(e) => {
                        lost = true;
                        job.token.cancel();
                        warn!(error = %e, "extending the lease failed; cancelling the handler");
                    }
                }
            }
            _ = tokio::time::sleep_until(next_beat), if heartbeat && !lost && extending.is_none() => {
                extending = Some((Instant::now(), shared.queue.extend(&job.receipt, lease)));
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}
