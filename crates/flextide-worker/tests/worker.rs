//! The worker against the memory backend, on tokio's paused clock:
//! batching, shutdown, pools, tower layers; failures and recovery are in
//! `failures.rs`.

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use common::{Recorder, SEC, push_all, queue, wait_for};
use flextide_queue_core::{QueueOptions, QueueProvider};
use flextide_worker::{
    Autoscale, CancellationToken, HandlerError, RetryPolicy, Task, Worker, handler_fn,
};
use tokio::time::{Instant, sleep};

#[tokio::test(start_paused = true)]
async fn processes_everything_and_batches_acks_within_the_held_limit() {
    let q = Recorder::new("all", QueueOptions::default());
    push_all(&*q, (0..1000).map(|i| format!("m{i}"))).await;
    let seen = Arc::new(AtomicU32::new(0));
    let counter = seen.clone();
    let worker = Worker::builder(q.clone())
        .concurrency(8)
        .prefetch(8)
        .build(handler_fn(move |task: Task| {
            let counter = counter.clone();
            async move {
                assert!(task.payload().starts_with(b"m"));
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, 60 * SEC, |s| s.processed == 1000).await;
    shutdown.cancel();
    let report = run.await.unwrap();
    assert_eq!(report.processed, 1000);
    assert_eq!(seen.load(Ordering::Relaxed), 1000);
    assert_eq!(
        (report.failed, report.still_running, report.settle_errors),
        (0, 0, 0)
    );
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.in_flight), (0, 0));
    let log = q.log();
    assert!(
        log.max_outstanding <= 16,
        "held {} > concurrency + prefetch",
        log.max_outstanding
    );
    // Fast handlers keep the worker at its held limit all the time: acks
    // must still go out in whole batches of what it holds (16), and pops
    // refill whole batches, not the one or two slots a small ack freed.
    let sizes: Vec<usize> = log.delete_calls.iter().map(|&(_, n)| n).collect();
    assert!(
        sizes.len() <= 1000 / 16 + 2,
        "acks were not batched: {} delete calls, sizes {sizes:?}",
        sizes.len()
    );
    assert!(
        log.pops <= 1000 / 16 + 3,
        "pops were not batched: {} pops",
        log.pops
    );
}

#[tokio::test(start_paused = true)]
async fn an_ack_waits_at_most_the_ack_delay_for_company() {
    let q = Recorder::new("ack_delay", QueueOptions::default());
    push_all(&*q, ["fast", "slow"]).await;
    let worker = Worker::builder(q.clone())
        .concurrency(2)
        .prefetch(0)
        .ack_batching(128, Duration::from_millis(5))
        .build(handler_fn(|task: Task| async move {
            if task.payload() == b"slow" {
                sleep(10 * SEC).await;
            }
            Ok(())
        }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, 60 * SEC, |s| s.processed == 2).await;
    shutdown.cancel();
    run.await.unwrap();
    let log = q.log();
    let calls: Vec<(Duration, usize)> = log
        .delete_calls
        .iter()
        .map(|&(at, n)| (at - start, n))
        .collect();
    // The slow handler could still join the batch, so the fast ack waits,
    // but only for the ack delay; then the slow one goes alone.
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0], (Duration::from_millis(5), 1), "{calls:?}");
    assert_eq!(calls[1], (10 * SEC, 1), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_finishes_in_time_and_gives_back_the_rest() {
    // The memory backend has `release`: the prefetched messages that never
    // started come back with their attempt unspent, the aborted one spent.
    let q = queue("shutdown", 60 * SEC);
    let again = shutdown_with_long_handler(q.clone()).await;
    assert_eq!(
        again,
        [
            (b"long".to_vec(), 2),
            (b"short".to_vec(), 1),
            (b"short".to_vec(), 1)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_without_release_nacks_the_prefetched() {
    // Without `release`, the runtime falls back to a nack without delay:
    // still available at once, the attempt spent.
    let q = queue("shutdown-no-release", 60 * SEC);
    let again = shutdown_with_long_handler(Arc::new(common::WithoutRelease(q))).await;
    assert_eq!(
        again,
        [
            (b"long".to_vec(), 2),
            (b"short".to_vec(), 2),
            (b"short".to_vec(), 2)
        ]
    );
}

/// Runs a worker (two slots, two prefetched) on four messages, one of which
/// ignores cancellation, shuts it down with a 5 s deadline, and returns
/// (payload, attempt) of what the queue delivers next, sorted.
async fn shutdown_with_long_handler(q: Arc<dyn QueueProvider>) -> Vec<(Vec<u8>, u32)> {
    push_all(&*q, ["short", "long", "short", "short"]).await;
    let long_token = Arc::new(Mutex::new(None::<CancellationToken>));
    let seen = long_token.clone();
    let worker = Worker::builder(q.clone())
        .concurrency(2)
        .prefetch(2)
        .shutdown_timeout(5 * SEC)
        .build(handler_fn(move |task: Task| {
            let seen = seen.clone();
            async move {
                if task.payload() == b"long" {
                    *seen.lock().unwrap() = Some(task.cancellation_token().clone());
                    // Ignores cancellation: the runtime must give up on it.
                    sleep(100 * SEC).await;
                } else {
                    sleep(SEC).await;
                }
                Ok(())
            }
        }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, SEC, |s| s.in_flight == 2 && s.held == 4).await;
    sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    let report = run.await.unwrap();
    let took = started.elapsed();
    assert!(took >= 5 * SEC && took < 7 * SEC, "shutdown took {took:?}");
    assert_eq!(report.processed, 1, "the running short message finished");
    assert_eq!(
        report.nacked_at_shutdown, 3,
        "two prefetched and the long one were given back"
    );
    assert_eq!(report.settle_errors, 0);
    assert_eq!(report.still_running, 0);
    assert!(long_token.lock().unwrap().as_ref().unwrap().is_cancelled());
    // Given back with no delay: available at once, though leases are 60 s.
    let again = q.pop_batch(10, Duration::ZERO).await.unwrap();
    let mut payloads: Vec<_> = again
        .iter()
        .map(|d| (d.message.payload.to_vec(), d.attempt))
        .collect();
    payloads.sort();
    payloads
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_cooperative_handlers_finish_early() {
    let q = queue("coop", 60 * SEC);
    push_all(&*q, ["a"]).await;
    let worker = Worker::builder(q.clone())
        .shutdown_timeout(30 * SEC)
        .build(handler_fn(|_task: Task| async move {
            sleep(2 * SEC).await;
            Ok::<_, HandlerError>(())
        }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, SEC, |s| s.in_flight == 1).await;
    shutdown.cancel();
    let report = run.await.unwrap();
    assert_eq!((report.processed, report.nacked_at_shutdown), (1, 0));
    assert!(report.elapsed < 3 * SEC);
    assert_eq!(q.stats().await.unwrap().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn pool_scales_up_with_the_backlog_and_down_when_idle() {
    let q = queue("pool", 60 * SEC);
    push_all(&*q, (0..120).map(|i| format!("m{i}"))).await;
    let pool = Worker::builder(q.clone())
        .concurrency(1)
        .prefetch(0)
        .build_pool(
            handler_fn(|_task: Task| async move {
                sleep(SEC).await;
                Ok(())
            }),
            Autoscale::new(1, 4),
        );
    let progress = pool.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(pool.run(shutdown.clone()));
    wait_for(&progress, SEC, |s| s.workers == 1).await;
    // Checks every 5 s with a 10 s cooldown: 2 at 5 s, 3 at 15 s, 4 at 25 s.
    let s = wait_for(&progress, 30 * SEC, |s| s.workers == 4).await;
    assert_eq!(s.slots, 4);
    wait_for(&progress, 120 * SEC, |s| s.processed == 120).await;
    // Idle: down one worker at a time after 30 s below 20 % utilisation.
    wait_for(&progress, 120 * SEC, |s| s.workers == 1).await;
    shutdown.cancel();
    let report = run.await.unwrap();
    assert_eq!(report.processed, 120);
    assert_eq!(progress.snapshot().workers, 0);
}

#[tokio::test(start_paused = true)]
async fn tower_layers_compose_with_handlers() {
    use tower::{ServiceBuilder, limit::ConcurrencyLimitLayer, timeout::TimeoutLayer};
    let q = queue("layers", 60 * SEC);
    push_all(&*q, ["fast", "slow"]).await;
    let service = ServiceBuilder::new()
        .layer(ConcurrencyLimitLayer::new(1))
        .layer(TimeoutLayer::new(2 * SEC))
        .service(handler_fn(|task: Task| async move {
            if task.payload() == b"slow" {
                sleep(10 * SEC).await;
            }
            Ok(())
        }));
    let worker = Worker::builder(q.clone())
        .retry(RetryPolicy::no_retry())
        .build(service);
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, 10 * SEC, |s| {
        s.processed == 1 && s.dead_lettered == 1
    })
    .await;
    shutdown.cancel();
    run.await.unwrap();
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(
        dead[0].reason,
        "max attempts exceeded (1): request timed out"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_worker_stops_promptly() {
    let q = queue("idle", 30 * SEC);
    let worker = Worker::builder(q).build(handler_fn(|_task: Task| async move { Ok(()) }));
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    sleep(3 * SEC).await;
    shutdown.cancel();
    let report = run.await.unwrap();
    assert_eq!(
        report,
        flextide_worker::WorkerReport {
            elapsed: report.elapsed,
            ..Default::default()
        }
    );
    assert!(report.elapsed < 4 * SEC);
}
