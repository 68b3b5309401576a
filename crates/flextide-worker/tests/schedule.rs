//! Periodic schedules on the memory backend and Tokio's paused clock:
//! exactly one task per slot from three instances, each missed-slot policy
//! after downtime, DST, a queue without dedup behind a lock, and the errors
//! a bad schedule gets.

#[path = "support/schedule.rs"]
mod support;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use flextide_queue_core::{
    Capabilities, Delivery, Message, MessageId, QueueOptions, QueueProvider, QueueStats, Receipt,
    Result,
};
use flextide_queue_memory::MemoryQueue;
use flextide_worker::{
    CancellationToken, Clock, MemoryScheduleLock, MissedSlots, SCHEDULE_HEADER, SLOT_HEADER,
    Schedule, ScheduleError, Scheduler, SchedulerReport, TokioClock,
};

fn at(rfc3339: &str) -> SystemTime {
    SystemTime::from(rfc3339.parse::<jiff::Timestamp>().unwrap())
}

fn memory(name: &str, options: QueueOptions) -> Arc<dyn QueueProvider> {
    Arc::new(MemoryQueue::new(name, options).unwrap())
}

/// Pops and deletes everything; the messages by slot header, each slot's
/// count.
async fn drain(queue: &dyn QueueProvider) -> BTreeMap<String, (usize, Message)> {
    let mut slots = BTreeMap::new();
    loop {
        let batch = queue.pop_batch(100, Duration::ZERO).await.unwrap();
        if batch.is_empty() {
            return slots;
        }
        for d in batch {
            queue.delete(&d.receipt).await.unwrap();
            let slot = d.message.headers[SLOT_HEADER].clone();
            slots.entry(slot).or_insert((0, d.message.clone())).0 += 1;
        }
    }
}

fn spawn(
    scheduler: Scheduler,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<SchedulerReport> {
    tokio::spawn(scheduler.run(stop.child_token()))
}

#[tokio::test(start_paused = true)]
async fn three_instances_push_exactly_one_task_per_slot() {
    let queue = memory("sched_three", QueueOptions::default());
    let clock = Arc::new(TokioClock::starting_at(at("2026-01-01T00:00:05Z")));
    let stop = CancellationToken::new();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let schedule = Schedule::new("every-10s", "*/10 * * * * *")
                .unwrap()
                .payload(r#"{"job":"sweep"}"#)
                .header("content-type", "application/json");
            let scheduler = Scheduler::builder()
                .schedule(schedule, queue.clone())
                .clock(clock.clone())
                .build()
                .unwrap();
            spawn(scheduler, &stop)
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(600)).await;
    stop.cancel();
    let mut total = SchedulerReport::default();
    for run in runs {
        let r = run.await.unwrap();
        total.enqueued += r.enqueued;
        total.duplicates += r.duplicates;
    }
    // 23:59:10 to 00:10:00: the slots up to the 60 s grace before the
    // start count as on time.
    let slots = drain(&*queue).await;
    assert_eq!(slots.len(), 66);
    assert!(slots.values().all(|(n, _)| *n == 1), "one task per slot");
    assert_eq!(total.enqueued, 66);
    assert_eq!(total.duplicates, 2 * 66);
    assert_eq!(slots.keys().next().unwrap(), "2025-12-31T23:59:10Z");
    let (_, first) = &slots["2026-01-01T00:00:00Z"];
    assert_eq!(first.headers[SCHEDULE_HEADER], "every-10s");
    assert_eq!(first.headers["content-type"], "application/json");
    assert_eq!(&first.payload[..], br#"{"job":"sweep"}"#);
    assert!(slots.contains_key("2026-01-01T00:10:00Z"));
}

/// One instance runs 00:00:05–00:05:05, none until 00:15:05, then one with
/// `policy` until 00:16:05: which slots of the gap exist afterwards.
async fn after_downtime(policy: MissedSlots, look_back: Option<Duration>) -> Vec<String> {
    let queue = memory("sched_missed", QueueOptions::default());
    let clock = Arc::new(TokioClock::starting_at(at("2026-01-01T00:00:05Z")));
    let scheduler = |policy| {
        let mut schedule = Schedule::new("minutely", "0 * * * * *")
            .unwrap()
            .missed(policy);
        if let Some(l) = look_back {
            schedule = schedule.look_back(l);
        }
        Scheduler::builder()
            .schedule(schedule, queue.clone())
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let stop = CancellationToken::new();
    let first = spawn(scheduler(MissedSlots::Skip), &stop);
    tokio::time::sleep(Duration::from_secs(300)).await;
    stop.cancel();
    first.await.unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    let stop = CancellationToken::new();
    let second = spawn(scheduler(policy), &stop);
    tokio::time::sleep(Duration::from_secs(60)).await;
    stop.cancel();
    second.await.unwrap();
    let slots = drain(&*queue).await;
    assert!(slots.values().all(|(n, _)| *n == 1));
    // "HH:MM" of each slot.
    let minutes: Vec<String> = slots.keys().map(|k| k[11..16].to_owned()).collect();
    // Before and after the gap, every policy has the same slots.
    for m in [
        "00:00", "00:01", "00:02", "00:03", "00:04", "00:05", "00:15", "00:16",
    ] {
        assert!(minutes.iter().any(|x| x == m), "{m} in {minutes:?}");
    }
    minutes
}

/// The slots of the gap, 00:06 to 00:14, as minutes.
fn gap(minutes: &[String]) -> Vec<&str> {
    minutes
        .iter()
        .filter(|m| m.as_str() > "00:05" && m.as_str() < "00:15")
        .map(|m| &m[3..])
        .collect()
}

#[tokio::test(start_paused = true)]
async fn skip_pushes_none_of_the_missed_slots() {
    assert!(gap(&after_downtime(MissedSlots::Skip, None).await).is_empty());
}

#[tokio::test(start_paused = true)]
async fn run_once_pushes_the_latest_missed_slot() {
    assert_eq!(
        gap(&after_downtime(MissedSlots::RunOnce, None).await),
        ["14"]
    );
}

#[tokio::test(start_paused = true)]
async fn catch_up_pushes_at_most_max_missed_slots() {
    assert_eq!(
        gap(&after_downtime(MissedSlots::CatchUp { max: 3 }, None).await),
        ["12", "13", "14"]
    );
    // The default look-back is half the dedup window (30 min): all nine,
    // and the 14 minutes from 23:46, before the first instance started.
    let all = after_downtime(MissedSlots::CatchUp { max: 100 }, None).await;
    assert_eq!(
        gap(&all),
        ["06", "07", "08", "09", "10", "11", "12", "13", "14"]
    );
    assert_eq!(all.iter().filter(|m| m.starts_with("23:")).count(), 14);
}

#[tokio::test(start_paused = true)]
async fn catch_up_looks_back_no_further_than_the_look_back() {
    // From 00:15:05, five minutes back: 00:11 to 00:14.
    assert_eq!(
        gap(&after_downtime(
            MissedSlots::CatchUp { max: 100 },
            Some(Duration::from_secs(300))
        )
        .await),
        ["11", "12", "13", "14"]
    );
}

#[test]
fn fixed_times_in_a_dst_gap_or_fold_run_once() {
    // Europe/Berlin: 2026-03-29 02:00 CET jumps to 03:00 CEST; 2026-10-25
    // 03:00 CEST falls back to 02:00 CET.
    let s = Schedule::new("nightly", "0 30 2 * * *")
        .unwrap()
        .time_zone("Europe/Berlin")
        .unwrap();
    let spring: Vec<String> = s
        .next_slots(at("2026-03-27T12:00:00Z"), 3)
        .unwrap()
        .iter()
        .map(|s| s.local())
        .collect();
    assert_eq!(
        spring,
        [
            "2026-03-28T02:30:00+01:00[Europe/Berlin]",
            // 02:30 does not exist: the first time after the gap.
            "2026-03-29T03:00:00+02:00[Europe/Berlin]",
            "2026-03-30T02:30:00+02:00[Europe/Berlin]",
        ]
    );
    let autumn: Vec<String> = s
        .next_slots(at("2026-10-24T12:00:00Z"), 2)
        .unwrap()
        .iter()
        .map(|s| s.utc())
        .collect();
    // 02:30 happens twice on the 25th: pushed once, in the first pass.
    assert_eq!(autumn, ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]);
}

#[tokio::test(start_paused = true)]
async fn interval_slots_in_a_dst_fold_are_separate_slots() {
    // Every 30 minutes through the autumn fold in New York (2026-11-01,
    // 02:00 EDT falls back to 01:00 EST): 01:00 and 01:30 happen twice,
    // four distinct slots whose UTC dedup ids differ.
    let queue = memory("sched_dst", QueueOptions::default());
    let clock = Arc::new(TokioClock::starting_at(at("2026-11-01T04:55:00Z")));
    let schedule = Schedule::new("half-hourly", "0 */30 * * * *")
        .unwrap()
        .time_zone("America/New_York")
        .unwrap();
    let stop = CancellationToken::new();
    let run = spawn(
        Scheduler::builder()
            .schedule(schedule, queue.clone())
            .clock(clock)
            .build()
            .unwrap(),
        &stop,
    );
    tokio::time::sleep(Duration::from_secs(2 * 3600 + 600)).await;
    stop.cancel();
    run.await.unwrap();
    let slots: Vec<String> = drain(&*queue).await.into_keys().collect();
    assert_eq!(
        slots,
        [
            "2026-11-01T05:00:00Z", // 01:00 EDT
            "2026-11-01T05:30:00Z", // 01:30 EDT
            "2026-11-01T06:00:00Z", // 01:00 EST
            "2026-11-01T06:30:00Z", // 01:30 EST
            "2026-11-01T07:00:00Z", // 02:00 EST
        ]
    );
}

#[test]
fn a_bad_expression_zone_or_name_is_a_clear_error() {
    for bad in ["not cron", "61 * * * *", "* * * *", "0 0 30 2 *"] {
        let e = Schedule::new("s", bad).unwrap_err();
        assert!(matches!(e, ScheduleError::Cron { .. }), "{bad}: {e:?}");
        let text = e.to_string();
        assert!(text.contains(bad) && text.contains("cron"), "{text}");
    }
    let e = Schedule::new("s", "* * * * *")
        .unwrap()
        .time_zone("Mars/Olympus")
        .unwrap_err();
    assert!(e.to_string().contains("Mars/Olympus"), "{e}");
    for name in ["", "has space", &"x".repeat(101)] {
        assert!(matches!(
            Schedule::new(name, "* * * * *"),
            Err(ScheduleError::Name { .. })
        ));
    }
    assert_eq!(
        Schedule::new("s", "* * * * *")
            .unwrap()
            .dedup_id(at("2026-01-01T00:01:00Z"))
            .unwrap(),
        "s@2026-01-01T00:01:00Z"
    );
}

#[tokio::test]
async fn a_dedup_window_shorter_than_the_reach_is_refused() {
    let short = memory(
        "sched_short",
        QueueOptions::default().dedup_window(Duration::from_secs(60)),
    );
    let s = Schedule::new("s", "* * * * *").unwrap();
    // The default grace is 60 s: a slot may be pushed 60 s late.
    let e = Scheduler::builder()
        .schedule(s.clone(), short.clone())
        .build()
        .unwrap_err();
    assert!(matches!(e, ScheduleError::WindowTooShort { .. }), "{e:?}");
    assert!(e.to_string().contains("dedup window"), "{e}");
    Scheduler::builder()
        .schedule(s.clone().grace(Duration::from_secs(20)), short)
        .build()
        .unwrap();
    let hour = memory("sched_hour", QueueOptions::default());
    let e = Scheduler::builder()
        .schedule(
            s.clone()
                .missed(MissedSlots::RunOnce)
                .look_back(Duration::from_secs(7200)),
            hour.clone(),
        )
        .build()
        .unwrap_err();
    assert!(matches!(e, ScheduleError::WindowTooShort { .. }), "{e:?}");
    let e = Scheduler::builder()
        .schedule(s.clone(), hour.clone())
        .schedule(s, hour)
        .build()
        .unwrap_err();
    assert!(matches!(e, ScheduleError::DuplicateName { .. }), "{e:?}");
}

/// A memory queue that says it cannot deduplicate (like RabbitMQ).
#[derive(Debug)]
struct NoDedup(MemoryQueue);

#[async_trait]
impl QueueProvider for NoDedup {
    fn queue_name(&self) -> &str {
        self.0.queue_name()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dedup: false,
            dedup_window: None,
            ..self.0.capabilities()
        }
    }
    async fn push(&self, message: Message) -> Result<MessageId> {
        assert!(
            message.dedup_id.is_none(),
            "no dedup id to a queue without dedup"
        );
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
    async fn stats(&self) -> Result<QueueStats> {
        self.0.stats().await
    }
    fn backend_name(&self) -> &'static str {
        "nodedup"
    }
}

#[tokio::test(start_paused = true)]
async fn without_dedup_a_lock_is_required_and_elects_one_pusher() {
    let queue: Arc<dyn QueueProvider> = Arc::new(NoDedup(
        MemoryQueue::new("sched_lock", QueueOptions::default()).unwrap(),
    ));
    let schedule = Schedule::new("every-10s", "*/10 * * * * *").unwrap();
    let e = Scheduler::builder()
        .schedule(schedule.clone(), queue.clone())
        .build()
        .unwrap_err();
    assert!(matches!(e, ScheduleError::NeedsLock { .. }), "{e:?}");
    assert!(e.to_string().contains("ScheduleLock"), "{e}");

    let lock = Arc::new(MemoryScheduleLock::new());
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(at("2026-01-01T00:00:05Z")));
    let instance = |holder: &str| {
        Scheduler::builder()
            .schedule(schedule.clone(), queue.clone())
            .lock(lock.clone())
            .clock(clock.clone())
            .holder(holder)
            .build()
            .unwrap()
    };
    let stops: Vec<CancellationToken> = (0..3).map(|_| CancellationToken::new()).collect();
    let runs: Vec<_> = ["a", "b", "c"]
        .iter()
        .zip(&stops)
        .map(|(h, stop)| spawn(instance(h), stop))
        .collect();
    // Each instance stops in turn; the next takes over where it stopped.
    let mut enqueued = 0;
    for (stop, run) in stops.iter().zip(runs) {
        tokio::time::sleep(Duration::from_secs(200)).await;
        stop.cancel();
        enqueued += run.await.unwrap().enqueued;
    }
    let slots = drain(&*queue).await;
    assert!(slots.values().all(|(n, _)| *n == 1), "one task per slot");
    // 23:59:10 (the grace at start) to 00:10:00, no gap at the handovers.
    assert_eq!(slots.len(), 66);
    assert_eq!(enqueued, 66);
}

#[tokio::test]
async fn the_simulated_hour_of_the_server_tests_holds_on_memory() {
    // The harness of schedule_postgres.rs / schedule_redis.rs, on the
    // memory backend: proves the test itself before the servers run it.
    let queue = memory("sched_hour_sim", QueueOptions::default());
    support::three_instances_over_a_simulated_hour(|| {
        let q = queue.clone();
        async move { q }
    })
    .await;
}

/// A memory queue whose first `fail` pushes fail as a broker outage would.
#[derive(Debug)]
struct Flaky {
    inner: MemoryQueue,
    fail: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl QueueProvider for Flaky {
    fn queue_name(&self) -> &str {
        self.inner.queue_name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn push(&self, message: Message) -> Result<MessageId> {
        self.push_unique(message).await.map(|p| p.into_id())
    }
    async fn push_unique(&self, message: Message) -> Result<flextide_queue_core::Pushed> {
        use std::sync::atomic::Ordering;
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(flextide_queue_core::QueueError::connection(
                "flaky",
                std::io::Error::other("connection refused"),
            ));
        }
        self.inner.push_unique(message).await
    }
    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        self.inner.pop_batch(max, wait).await
    }
    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        self.inner.delete(receipt).await
    }
    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        self.inner.nack(receipt, delay).await
    }
    async fn stats(&self) -> Result<QueueStats> {
        self.inner.stats().await
    }
    fn backend_name(&self) -> &'static str {
        "flaky"
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_push_is_retried_and_the_slot_still_pushed_once() {
    let flaky = Arc::new(Flaky {
        inner: MemoryQueue::new("sched_flaky", QueueOptions::default()).unwrap(),
        fail: 0.into(),
    });
    let queue: Arc<dyn QueueProvider> = flaky.clone();
    let clock = Arc::new(TokioClock::starting_at(at("2026-01-01T00:00:55Z")));
    let schedule = Schedule::new("minutely", "0 * * * * *")
        .unwrap()
        .grace(Duration::from_secs(30));
    let mut scheduler = Scheduler::builder()
        .schedule(schedule, queue.clone())
        .clock(clock)
        .build()
        .unwrap();
    // One tick by hand: nothing due yet (00:00:00 is past the 30 s grace).
    assert_eq!(scheduler.tick().await.unwrap(), SchedulerReport::default());
    // The broker is down at 00:01:00 for three tries (1 s, 2 s, 4 s apart).
    let stop = CancellationToken::new();
    let run = spawn(scheduler, &stop);
    tokio::time::sleep(Duration::from_secs(4)).await;
    flaky.fail.store(3, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(125)).await;
    stop.cancel();
    let report = run.await.unwrap();
    assert_eq!(report.errors, 3, "{report:?}");
    assert_eq!(report.enqueued, 3, "{report:?}");
    let slots: Vec<String> = drain(&*queue).await.into_keys().collect();
    assert_eq!(
        slots,
        [
            "2026-01-01T00:01:00Z",
            "2026-01-01T00:02:00Z",
            "2026-01-01T00:03:00Z"
        ]
    );
}
