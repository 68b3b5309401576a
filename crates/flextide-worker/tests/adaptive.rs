//! The worker's adaptive batch sizes and its lease guard of prefetched
//! deliveries, on tokio's paused clock against the memory backend.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{Recorder, SEC, push_all, wait_for};
use flextide_queue_core::{QueueOptions, QueueProvider};
use flextide_worker::{CancellationToken, Task, Worker, handler_fn};
use tokio::time::{Instant, sleep};

#[tokio::test(start_paused = true)]
async fn a_deep_backlog_grows_pops_and_acks_and_an_idle_queue_shrinks_them() {
    let q = Recorder::new("deep", QueueOptions::default().lease(60 * SEC));
    push_all(&*q, (0..20_000).map(|i| format!("m{i}"))).await;
    // The defaults but concurrency: 16 handlers, prefetch adaptive.
    let worker = Worker::builder(q.clone())
        .concurrency(16)
        .build(handler_fn(|_task: Task| async { Ok(()) }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, 60 * SEC, |s| s.processed == 20_000).await;

    let log = q.log();
    let largest_pop = log.pop_sizes.iter().map(|&(_, got)| got).max().unwrap();
    assert_eq!(largest_pop, 512, "pops grew to the fetch batch");
    assert!(
        log.pops <= 20_000 / 256 + 10,
        "pops stayed small: {} pops, sizes {:?}",
        log.pops,
        log.pop_sizes
    );
    let largest_ack = log.delete_calls.iter().map(|&(_, n)| n).max().unwrap();
    assert!(largest_ack > 128, "acks stayed at most 128: {largest_ack}");
    assert!(
        log.delete_calls.len() <= 20_000 / 128,
        "acks were not coalesced: {} delete calls",
        log.delete_calls.len()
    );
    // About three pops' worth at most: claimed, waiting, being acknowledged.
    assert!(
        log.max_outstanding <= 32 + 3 * (512 - 32),
        "held {}",
        log.max_outstanding
    );

    // The backlog is gone: the next pops shrink back to concurrency +
    // prefetch, and a message pushed to the idle queue starts at once.
    sleep(5 * SEC).await;
    let before = q.log().pop_sizes.len();
    let pushed_at = Instant::now();
    push_all(&*q, ["late"]).await;
    wait_for(&progress, 5 * SEC, |s| s.processed == 20_001).await;
    assert!(
        pushed_at.elapsed() < Duration::from_millis(50),
        "an idle push waited {:?}",
        pushed_at.elapsed()
    );
    let asks: Vec<usize> = q.log().pop_sizes[before..]
        .iter()
        .map(|&(asked, _)| asked)
        .collect();
    assert!(
        asks.iter().all(|&n| n <= 32),
        "an idle queue is still popped in large batches: {asks:?}"
    );
    // A small burst is held as before the sizes adapted: no hoarding.
    push_all(&*q, (0..100).map(|i| format!("b{i}"))).await;
    wait_for(&progress, 10 * SEC, |s| s.processed == 20_101).await;
    shutdown.cancel();
    let report = run.await.unwrap();
    assert_eq!(
        (report.failed, report.settle_errors, report.given_back_late),
        (0, 0, 0)
    );
    assert_eq!(q.stats().await.unwrap(), Default::default());
}

#[tokio::test(start_paused = true)]
async fn a_fixed_prefetch_does_not_adapt() {
    let q = Recorder::new("fixed", QueueOptions::default().lease(60 * SEC));
    push_all(&*q, (0..2_000).map(|i| format!("m{i}"))).await;
    let worker = Worker::builder(q.clone())
        .concurrency(16)
        .prefetch(16)
        .build(handler_fn(|_task: Task| async { Ok(()) }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, 60 * SEC, |s| s.processed == 2_000).await;
    shutdown.cancel();
    run.await.unwrap();
    let log = q.log();
    assert!(log.max_outstanding <= 32, "held {}", log.max_outstanding);
    assert!(log.pop_sizes.iter().all(|&(asked, _)| asked <= 32));
}

/// Runs one slow handler at a time (4 s each, lease 10 s) over six
/// messages with `prefetch` (None: adaptive) and records every start.
async fn slow_handler_with_prefetch(
    q: Arc<Recorder>,
    prefetch: Option<usize>,
) -> (flextide_worker::WorkerReport, HashMap<String, u32>) {
    push_all(&*q, (0..6).map(|i| format!("m{i}"))).await;
    let starts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let s = starts.clone();
    let builder = Worker::builder(q.clone()).concurrency(1);
    let builder = match prefetch {
        Some(n) => builder.prefetch(n),
        None => builder,
    };
    let worker = builder.build(handler_fn(move |task: Task| {
        let s = s.clone();
        async move {
            let key = String::from_utf8_lossy(task.payload()).into_owned();
            *s.lock().unwrap().entry(key).or_default() += 1;
            sleep(4 * SEC).await;
            Ok(())
        }
    }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, 120 * SEC, |s| s.processed == 6).await;
    shutdown.cancel();
    let report = run.await.unwrap();
    let starts = starts.lock().unwrap().clone();
    (report, starts)
}

#[tokio::test(start_paused = true)]
async fn prefetched_deliveries_are_given_back_before_their_lease_ends() {
    // Five prefetched behind one 4 s handler, 10 s leases: the fourth
    // would start at 12 s, after its lease ended (and another consumer
    // could hold it). Each is given back at half its lease instead.
    let q = Recorder::new("guard", QueueOptions::default().lease(10 * SEC));
    let (report, starts) = slow_handler_with_prefetch(q.clone(), Some(5)).await;
    assert_eq!(report.processed, 6);
    assert!(report.given_back_late >= 3, "{report:?}");
    assert_eq!(
        (report.settle_errors, report.lease_lost),
        (0, 0),
        "no lease ran out in the worker's hands"
    );
    assert!(
        starts.values().all(|&n| n == 1),
        "a message ran twice: {starts:?}"
    );
    let log = q.log();
    assert_eq!(
        log.releases as u64, report.given_back_late,
        "released, not nacked"
    );
    assert!(log.nacks.is_empty(), "{:?}", log.nacks);
    assert_eq!(q.stats().await.unwrap(), Default::default());
}

#[tokio::test(start_paused = true)]
async fn without_release_late_deliveries_are_nacked_at_once() {
    let q = Recorder::with("guard-nack", QueueOptions::default().lease(10 * SEC), |r| {
        r.caps.release = false
    });
    let (report, starts) = slow_handler_with_prefetch(q.clone(), Some(5)).await;
    assert_eq!((report.processed, report.settle_errors), (6, 0));
    assert!(report.given_back_late >= 3, "{report:?}");
    assert!(starts.values().all(|&n| n == 1), "{starts:?}");
    let log = q.log();
    assert_eq!(log.releases, 0);
    assert!(
        log.nacks.len() as u64 >= report.given_back_late && log.nacks.iter().all(|d| d.is_zero()),
        "{:?}",
        log.nacks
    );
}

#[tokio::test(start_paused = true)]
async fn the_adaptive_prefetch_also_never_lets_a_lease_run_out_unstarted() {
    let q = Recorder::new("guard-adaptive", QueueOptions::default().lease(10 * SEC));
    let (report, starts) = slow_handler_with_prefetch(q.clone(), None).await;
    assert_eq!(
        (report.processed, report.settle_errors, report.lease_lost),
        (6, 0, 0)
    );
    assert!(starts.values().all(|&n| n == 1), "{starts:?}");
    assert_eq!(q.stats().await.unwrap(), Default::default());
}
