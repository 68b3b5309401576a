//! The worker's failure handling on tokio's paused clock: retries and
//! backoff, dead letters, panics, lost leases and heartbeats, the circuit
//! breaker, handler timeouts, acks through a broker outage.

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use common::{Recorder, SEC, push_all, queue, wait_for};
use flextide_queue_core::{Message, QueueOptions, QueueProvider};
use flextide_worker::{
    BreakerState, CancellationToken, CircuitBreaker, HandlerError, Jitter, ResultExt, RetryPolicy,
    Task, Worker, handler_fn,
};
use tokio::time::{Instant, sleep};

#[tokio::test(start_paused = true)]
async fn panics_are_counted_as_retryable_and_the_worker_goes_on() {
    let q = queue("panics", 30 * SEC);
    push_all(&*q, ["boom"]).await;
    push_all(&*q, (0..10).map(|i| format!("ok{i}"))).await;
    let worker = Worker::builder(q.clone())
        .concurrency(2)
        .retry(RetryPolicy::default().base(Duration::from_millis(100)))
        .build(handler_fn(|task: Task| async move {
            if task.payload() == b"boom" && task.attempt() == 1 {
                panic!("handler bug on the first attempt");
            }
            Ok(())
        }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, 10 * SEC, |s| s.processed == 11).await;
    shutdown.cancel();
    let report = run.await.unwrap();
    assert_eq!(
        (
            report.panicked,
            report.failed,
            report.retried,
            report.dead_lettered
        ),
        (1, 1, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeat_keeps_a_long_job_from_being_redelivered() {
    let q = queue("heartbeat", 10 * SEC);
    push_all(&*q, ["slow"]).await;
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let worker = Worker::builder(q.clone()).build(handler_fn(move |_task: Task| {
        c.fetch_add(1, Ordering::Relaxed);
        async move {
            sleep(35 * SEC).await;
            Ok(())
        }
    }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    // Another consumer must not get it while the job runs, 3.5 leases long.
    for _ in 0..34 {
        sleep(SEC).await;
        assert!(
            q.pop(Duration::ZERO).await.unwrap().is_none(),
            "redelivered while the handler ran"
        );
    }
    wait_for(&progress, 5 * SEC, |s| s.processed == 1).await;
    shutdown.cancel();
    let report = run.await.unwrap();
    assert_eq!(
        (report.processed, report.settle_errors, report.lease_lost),
        (1, 0, 0)
    );
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(q.stats().await.unwrap(), Default::default());
}

#[tokio::test(start_paused = true)]
async fn without_heartbeat_the_lease_expires_and_the_late_ack_is_only_logged() {
    let q = queue("no-heartbeat", 10 * SEC);
    push_all(&*q, ["slow"]).await;
    let worker = Worker::builder(q.clone())
        .heartbeat(false)
        .build(handler_fn(|_task: Task| async move {
            sleep(15 * SEC).await;
            Ok(())
        }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    sleep(11 * SEC).await;
    // The worker's own fetch may take it first; either way it was redelivered.
    wait_for(&progress, 10 * SEC, |s| {
        s.processed >= 1 && s.settle_errors == 1
    })
    .await;
    shutdown.cancel();
    let report = run.await.unwrap();
    assert_eq!(
        report.settle_errors, 1,
        "the stale ack is counted, not fatal"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_cancels_the_task_and_is_not_acked() {
    let q = Recorder::with("lost", QueueOptions::default().lease(10 * SEC), |r| {
        r.fail_extend = true
    });
    push_all(&*q, ["x"]).await;
    let worker = Worker::builder(q.clone()).build(handler_fn(|task: Task| async move {
        task.cancelled().await;
        Ok(()) // a success after cancellation must not be acked
    }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    let s = wait_for(&progress, 20 * SEC, |s| s.lease_lost == 1).await;
    assert_eq!(s.processed, 0);
    shutdown.cancel();
    let report = run.await.unwrap();
    assert_eq!((report.processed, report.lease_lost), (0, 1));
    assert_eq!(q.log().deletes + q.log().delete_batches, 0);
}

#[derive(Debug)]
struct Outer(std::io::Error);
impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sending the invoice failed")
    }
}
impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_then_dead_letter_with_the_chain() {
    let q = Recorder::new("backoff", QueueOptions::default().max_attempts(None));
    push_all(&*q, ["x"]).await;
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    let policy = RetryPolicy::default()
        .base(SEC)
        .factor(2.0)
        .cap(5 * SEC)
        .max_attempts(5)
        .jitter(Jitter::None);
    let worker = Worker::builder(q.clone())
        .retry(policy)
        .build(handler_fn(move |task: Task| {
            t.lock().unwrap().push((task.attempt(), Instant::now()));
            async move {
                Err::<(), _>(HandlerError::retryable(Outer(std::io::Error::other(
                    "smtp 451",
                ))))
            }
        }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, 60 * SEC, |s| s.dead_lettered == 1).await;
    shutdown.cancel();
    let report = run.await.unwrap();
    assert_eq!(
        (report.failed, report.retried, report.dead_lettered),
        (5, 4, 1)
    );
    assert_eq!(q.log().nacks, [SEC, 2 * SEC, 4 * SEC, 5 * SEC]);
    let times = times.lock().unwrap().clone();
    assert_eq!(
        times.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    for (pair, expected) in times.windows(2).zip([1, 2, 4, 5]) {
        let gap = pair[1].1 - pair[0].1;
        assert!(
            gap >= expected * SEC && gap < expected * SEC + Duration::from_millis(100),
            "gap {gap:?}"
        );
    }
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 5);
    assert_eq!(
        dead[0].reason,
        "max attempts exceeded (5): sending the invoice failed: smtp 451"
    );
}

#[tokio::test(start_paused = true)]
async fn full_jitter_delays_stay_within_their_bounds() {
    let q = Recorder::new("jitter", QueueOptions::default().max_attempts(None));
    push_all(&*q, (0..20).map(|i| format!("m{i}"))).await;
    let policy = RetryPolicy::default()
        .base(SEC)
        .factor(3.0)
        .cap(20 * SEC)
        .max_attempts(4);
    let worker = Worker::builder(q.clone())
        .retry(policy.clone())
        .build(handler_fn(|task: Task| async move {
            Err::<(), _>(HandlerError::retryable(format!(
                "attempt {}",
                task.attempt()
            )))
        }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, 300 * SEC, |s| s.dead_lettered == 20).await;
    shutdown.cancel();
    run.await.unwrap();
    let nacks = q.log().nacks;
    assert_eq!(nacks.len(), 60);
    // Every delay is at most the largest ceiling used (attempt 3: 9 s), and they vary.
    assert!(nacks.iter().all(|d| *d <= policy.ceiling(3)));
    let distinct: std::collections::HashSet<_> = nacks.iter().collect();
    assert!(distinct.len() > 30, "delays should be jittered");
    assert!(
        nacks.iter().any(|d| *d > policy.ceiling(2)),
        "the third attempt waits longer"
    );
}

#[tokio::test(start_paused = true)]
async fn fatal_errors_and_undecodable_payloads_dead_letter_at_once() {
    let q = queue("fatal", 30 * SEC);
    q.push(Message::new("not json")).await.unwrap();
    q.push(Message::json(&7u32).unwrap()).await.unwrap();
    let worker = Worker::builder(q.clone()).build(handler_fn(|task: Task| async move {
        let n: u32 = task.json()?;
        Err::<(), _>(HandlerError::fatal(format!("{n} is not a valid invoice")))
    }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, 5 * SEC, |s| s.dead_lettered == 2).await;
    shutdown.cancel();
    let report = run.await.unwrap();
    assert_eq!((report.failed, report.retried), (2, 0));
    let dead = q.dead_letters(10).await.unwrap();
    assert!(dead.iter().all(|d| d.attempts == 1));
    let mut reasons: Vec<_> = dead.iter().map(|d| d.reason.clone()).collect();
    reasons.sort();
    assert_eq!(reasons[0], "7 is not a valid invoice");
    assert!(reasons[1].starts_with("expected ident"), "{}", reasons[1]);
}

#[tokio::test(start_paused = true)]
async fn poison_messages_never_stall_good_ones() {
    let q = queue("poison", 30 * SEC);
    let mut payloads = Vec::new();
    for i in 0..100 {
        payloads.push(format!("good{i}"));
        if i % 5 == 0 {
            payloads.push(format!("fatal{i}"));
            payloads.push(format!("flaky{i}"));
            payloads.push(format!("panic{i}"));
        }
    }
    push_all(&*q, payloads).await;
    let worker = Worker::builder(q.clone())
        .concurrency(4)
        .retry(
            RetryPolicy::default()
                .base(Duration::from_millis(50))
                .max_attempts(3),
        )
        .build(handler_fn(|task: Task| async move {
            let p = std::str::from_utf8(task.payload()).unwrap().to_owned();
            sleep(Duration::from_millis(10)).await;
            if p.starts_with("fatal") {
                return Err(HandlerError::fatal("poison"));
            }
            if p.starts_with("flaky") {
                return Err::<(), _>("always fails").retryable();
            }
            if p.starts_with("panic") {
                panic!("always panics");
            }
            Ok(())
        }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, 60 * SEC, |s| {
        s.processed == 100 && s.dead_lettered == 60
    })
    .await;
    shutdown.cancel();
    let report = run.await.unwrap();
    assert_eq!(report.panicked, 60);
    assert_eq!(q.stats().await.unwrap().dead_lettered, 60);
}

#[tokio::test(start_paused = true)]
async fn fatal_poison_does_not_trip_the_circuit_breaker() {
    let q = queue("poison-breaker", 30 * SEC);
    push_all(
        &*q,
        (0..60).map(|i| {
            if i % 6 == 0 {
                format!("good{i}")
            } else {
                format!("poison{i}")
            }
        }),
    )
    .await;
    let worker = Worker::builder(q.clone())
        .circuit_breaker(CircuitBreaker::default().min_results(5))
        .build(handler_fn(|task: Task| async move {
            if task.payload().starts_with(b"poison") {
                Err(HandlerError::fatal("poison"))
            } else {
                Ok(())
            }
        }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    let s = wait_for(&progress, 5 * SEC, |s| {
        s.processed == 10 && s.dead_lettered == 50
    })
    .await;
    assert_eq!(s.breaker, BreakerState::Closed);
    shutdown.cancel();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn circuit_breaker_opens_pauses_fetching_and_closes_after_a_good_probe() {
    let q = queue("breaker", 60 * SEC);
    push_all(&*q, (0..40).map(|i| format!("m{i}"))).await;
    let down = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicU32::new(0));
    let (d, c) = (down.clone(), calls.clone());
    let worker = Worker::builder(q.clone())
        .concurrency(1)
        .prefetch(0)
        .retry(RetryPolicy::default().base(SEC).max_attempts(100))
        .circuit_breaker(CircuitBreaker::default().min_results(5).cool_down(30 * SEC))
        .build(handler_fn(move |_task: Task| {
            c.fetch_add(1, Ordering::SeqCst);
            let up = !d.load(Ordering::SeqCst);
            async move {
                if up {
                    Ok(())
                } else {
                    Err(HandlerError::retryable("database unavailable"))
                }
            }
        }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));

    wait_for(&progress, 10 * SEC, |s| s.breaker == BreakerState::Open).await;
    let opened_at = Instant::now();
    sleep(Duration::from_millis(100)).await;
    let while_open = calls.load(Ordering::SeqCst);
    assert_eq!(while_open, 5, "opened after the fifth failure");
    sleep(25 * SEC).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        while_open,
        "no message fetched while open"
    );

    // The probe fails: open again, exactly one call made.
    wait_for(&progress, 10 * SEC, |_| {
        calls.load(Ordering::SeqCst) == while_open + 1
    })
    .await;
    assert!(opened_at.elapsed() >= 30 * SEC);
    let s = wait_for(&progress, SEC, |s| s.breaker == BreakerState::Open).await;
    assert_eq!(s.processed, 0);
    sleep(10 * SEC).await;
    assert_eq!(calls.load(Ordering::SeqCst), while_open + 1);

    // The dependency recovers: the next probe closes it and everything flows.
    down.store(false, Ordering::SeqCst);
    wait_for(&progress, 30 * SEC, |s| s.breaker == BreakerState::Closed).await;
    wait_for(&progress, 30 * SEC, |s| s.processed == 40).await;
    shutdown.cancel();
    let report = run.await.unwrap();
    assert_eq!(report.failed, 6);
}

#[tokio::test(start_paused = true)]
async fn without_dead_letters_failures_are_parked_with_a_long_delay() {
    let q = Recorder::with("park", QueueOptions::default(), |r| {
        r.caps.dead_letters = false
    });
    push_all(&*q, ["x"]).await;
    let worker = Worker::builder(q.clone())
        .park_delay(Duration::from_secs(7200))
        .build(handler_fn(|_task: Task| async move {
            Err::<(), _>(HandlerError::fatal("bad"))
        }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, 5 * SEC, |s| s.parked == 1).await;
    shutdown.cancel();
    let report = run.await.unwrap();
    assert_eq!((report.parked, report.dead_lettered), (1, 0));
    assert_eq!(q.log().nacks, [Duration::from_secs(7200)]);
    assert_eq!(q.stats().await.unwrap().delayed, 1);
}

#[tokio::test(start_paused = true)]
async fn without_delayed_nacks_the_backoff_lives_in_the_lease() {
    let q = Recorder::with("no-delay", QueueOptions::default().lease(5 * SEC), |r| {
        r.caps.delay = false
    });
    push_all(&*q, ["x"]).await;
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    let worker = Worker::builder(q.clone())
        .retry(RetryPolicy::default().base(20 * SEC).jitter(Jitter::None))
        .build(handler_fn(move |task: Task| {
            t.lock().unwrap().push(Instant::now());
            async move {
                if task.attempt() == 1 {
                    Err(HandlerError::retryable("later"))
                } else {
                    Ok(())
                }
            }
        }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, 60 * SEC, |s| s.processed == 1).await;
    shutdown.cancel();
    run.await.unwrap();
    let times = times.lock().unwrap();
    let gap = times[1] - times[0];
    assert!(gap >= 20 * SEC && gap < 21 * SEC, "gap {gap:?}");
}

#[tokio::test(start_paused = true)]
async fn a_handler_past_its_timeout_is_cancelled_and_retried() {
    // The heartbeat would keep this message leased forever; the timeout
    // gives up on the handler, cancels its token and retries the message.
    let q = queue("hangs", 30 * SEC);
    push_all(&*q, ["hangs once"]).await;
    let token: Arc<Mutex<Option<CancellationToken>>> = Arc::default();
    let seen = token.clone();
    let worker = Worker::builder(q.clone())
        .handler_timeout(5 * SEC)
        .retry(RetryPolicy::default().base(Duration::from_millis(10)))
        .build(handler_fn(move |task: Task| {
            let seen = seen.clone();
            async move {
                if task.attempt() == 1 {
                    *seen.lock().unwrap() = Some(task.cancellation_token().clone());
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, 60 * SEC, |s| s.processed == 1).await;
    let took = started.elapsed();
    shutdown.cancel();
    let report = run.await.unwrap();
    assert_eq!((report.failed, report.retried, report.processed), (1, 1, 1));
    assert!(
        took >= 5 * SEC && took < 10 * SEC,
        "retried after the 5 s timeout, not after the 30 s lease: {took:?}"
    );
    let token = token.lock().unwrap().clone().unwrap();
    assert!(token.is_cancelled(), "the handler's token was cancelled");
}

#[tokio::test(start_paused = true)]
async fn acks_are_retried_through_a_short_outage_while_the_lease_lasts() {
    // The broker refuses deletes for 4 s (a restart); the lease is 30 s.
    // Retrying for about a second only would turn every ack of that moment
    // into a duplicate delivery.
    let q = Recorder::with(
        "outage",
        QueueOptions::default().lease(30 * SEC).max_attempts(None),
        |r| r.deletes_down_until = Some(Instant::now() + 4 * SEC),
    );
    push_all(&*q, ["a", "b", "c"]).await;
    let worker = Worker::builder(q.clone()).build(handler_fn(|_task: Task| async move { Ok(()) }));
    let progress = worker.progress();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for(&progress, 10 * SEC, |s| s.processed == 3).await;
    // Past the outage, well before the lease ends: everything acknowledged.
    sleep(6 * SEC).await;
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.in_flight), (0, 0), "{stats:?}");
    // And nothing comes back after the lease.
    sleep(40 * SEC).await;
    shutdown.cancel();
    let report = run.await.unwrap();
    assert_eq!(report.processed, 3, "no message was handled twice");
    assert_eq!(report.settle_errors, 0);
}
