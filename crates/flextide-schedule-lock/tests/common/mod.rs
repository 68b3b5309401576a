//! The lock contract, run against each store.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, SystemTime};

use flextide_worker::ScheduleLock;

/// Exclusive, renewed, recorded, released, fenced, expired.
pub async fn lock_contract(lock: &dyn ScheduleLock, key: &str) {
    let long = Duration::from_secs(30);
    // Taken, exclusive, renewed with the same token.
    let a = lock
        .acquire(key, "a", long)
        .await
        .unwrap()
        .expect("free lock");
    assert_eq!(a.handled, None);
    assert!(
        lock.acquire(key, "b", long).await.unwrap().is_none(),
        "held by a"
    );
    let again = lock.acquire(key, "a", long).await.unwrap().unwrap();
    assert_eq!(again.token, a.token, "a renewal keeps the token");
    // Recorded under the lease; seen by the next holder.
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    assert!(lock.record(key, &a, t).await.unwrap());
    // Released: another holder takes over with a larger token and the record.
    lock.release(key, "b").await.unwrap(); // not b's: nothing happens
    assert!(lock.acquire(key, "b", long).await.unwrap().is_none());
    lock.release(key, "a").await.unwrap();
    let b = lock
        .acquire(key, "b", Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    assert!(b.token > a.token);
    assert_eq!(b.handled, Some(t));
    // The old holder's lease is fenced off.
    assert!(
        !lock
            .record(key, &a, t + Duration::from_secs(60))
            .await
            .unwrap()
    );
    // b's short lease runs out (waited for generously): c takes over, and b
    // can no longer record.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let c = lock
        .acquire(key, "c", long)
        .await
        .unwrap()
        .expect("b's lease ran out");
    assert!(c.token > b.token);
    assert!(
        !lock
            .record(key, &b, t + Duration::from_secs(120))
            .await
            .unwrap()
    );
    assert!(
        lock.record(key, &c, t + Duration::from_secs(180))
            .await
            .unwrap()
    );
    lock.release(key, "c").await.unwrap();
}

/// Three scheduler instances sharing `lock`, each over its own handle of
/// one queue, tick through a simulated hour at 7 s steps (concurrently at
/// each moment): every 10 s slot is pushed exactly once, by whichever holds
/// the lease. Returns nothing; asserts and drops the queue.
pub async fn three_instances_with_a_lock(
    lock: std::sync::Arc<dyn ScheduleLock>,
    handles: [std::sync::Arc<dyn flextide_queue_core::QueueProvider>; 3],
) {
    use flextide_worker::{SLOT_HEADER, Schedule, Scheduler};
    use std::collections::BTreeSet;

    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(now - now % 60);
    let mut instances: Vec<Scheduler> = handles
        .iter()
        .enumerate()
        .map(|(i, q)| {
            Scheduler::builder()
                .schedule(
                    Schedule::new("every-10s", "*/10 * * * * *").unwrap(),
                    q.clone(),
                )
                .lock(lock.clone())
                .holder(format!("instance-{i}"))
                .build()
                .unwrap()
        })
        .collect();
    let mut enqueued = 0;
    let mut moments: Vec<u64> = (0..3600).step_by(7).collect();
    moments.push(3600);
    for t in moments {
        let at = t0 + Duration::from_secs(t);
        let ticks = instances
            .iter_mut()
            .map(|s| async move { s.tick_at(at).await });
        for r in futures::future::join_all(ticks).await {
            enqueued += r.expect("tick").enqueued;
        }
    }
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
    // The hour's 361 slots and the five of the minute before t0 (the
    // grace at start).
    assert_eq!(count, 366);
    assert_eq!(slots.len(), 366);
    assert_eq!(enqueued, 366);
}
