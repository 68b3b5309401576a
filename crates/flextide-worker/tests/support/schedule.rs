//! The test over a real server: three scheduler instances on one
//! queue over a simulated hour make exactly one task per slot. Shared by
//! `schedule_postgres.rs` and `schedule_redis.rs`.
//!
//! The hour is simulated by calling `Scheduler::tick_at` with moments 7 s
//! apart (not aligned to the 10 s slots), the three instances at each
//! moment concurrently, over separate connections; the second instance is
//! down for ten minutes in the middle and comes back as a new scheduler
//! (nothing carried over) with `MissedSlots::CatchUp`.

#![allow(dead_code, unreachable_pub)]

use std::{
    collections::BTreeSet,
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use flextide_queue_core::QueueProvider;
use flextide_worker::{MissedSlots, SLOT_HEADER, Schedule, Scheduler, SchedulerReport};

/// Every 10 s.
const CRON: &str = "*/10 * * * * *";
const HOUR: u64 = 3600;
const STEP: u64 = 7;

fn scheduler(queue: Arc<dyn QueueProvider>, policy: MissedSlots) -> Scheduler {
    let schedule = Schedule::new("every-10s", CRON)
        .unwrap()
        .payload("tick")
        .missed(policy)
        .look_back(Duration::from_secs(15 * 60));
    Scheduler::builder()
        .schedule(schedule, queue)
        .build()
        .expect("the queue must deduplicate (Capabilities::dedup) for schedules without a lock")
}

/// `open()` gives a fresh handle (its own connection) on the same queue.
pub async fn three_instances_over_a_simulated_hour<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn QueueProvider>>,
{
    let handles = [open().await, open().await, open().await];
    // A fresh minute-aligned start: the dedup ids differ from any earlier run.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t0 = UNIX_EPOCH + Duration::from_secs(now - now % 60);
    let mut instances: Vec<Option<Scheduler>> = handles
        .iter()
        .map(|q| Some(scheduler(q.clone(), MissedSlots::Skip)))
        .collect();
    let mut total = SchedulerReport::default();
    let mut moments: Vec<u64> = (0..HOUR).step_by(STEP as usize).collect();
    moments.push(HOUR);
    for t in moments {
        // Instance 1 is down from minute 20 to minute 30.
        if (1200..1800).contains(&t) {
            instances[1] = None;
        } else if instances[1].is_none() {
            instances[1] = Some(scheduler(
                handles[1].clone(),
                MissedSlots::CatchUp { max: 1000 },
            ));
        }
        let at = t0 + Duration::from_secs(t);
        let ticks = instances
            .iter_mut()
            .flatten()
            .map(|s| async move { s.tick_at(at).await });
        for report in futures::future::join_all(ticks).await {
            let r = report.expect("tick");
            total.enqueued += r.enqueued;
            total.duplicates += r.duplicates;
        }
    }
    // The slots of the hour, and the five of the minute before t0, which
    // the 60 s grace at start counts as on time.
    let expected = (HOUR / 10 + 1 + 5) as usize;

    // Every slot once, no other message.
    let q = &handles[0];
    let mut slots = BTreeSet::new();
    let mut count = 0;
    loop {
        let batch = q.pop_batch(100, Duration::from_millis(200)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        let receipts: Vec<_> = batch.iter().map(|d| d.receipt.clone()).collect();
        for d in batch {
            count += 1;
            slots.insert(d.message.headers[SLOT_HEADER].clone());
        }
        q.delete_batch(&receipts).await.unwrap();
    }
    let _ = q.drop_queue().await;
    for h in &handles {
        let _ = h.close().await;
    }
    assert_eq!(total.enqueued as usize, expected, "{total:?}");
    assert_eq!(count, expected, "tasks in the queue");
    assert_eq!(slots.len(), expected, "distinct slots");
    assert!(
        total.duplicates > 0,
        "the instances raced on the same slots: {total:?}"
    );
}
