//! Rebalances: a second group member joining and leaving while messages
//! are in flight loses nothing; the duplicates it causes are counted. A
//! keyed record nacked in place keeps its key's order, delay and attempt
//! through a consumer restart. Waiting for the assignment before the first
//! pop.
//!
//! Run with `FLEXTIDE_TEST_KAFKA_URL=127.0.0.1:9092 cargo test -p
//! flextide-queue-kafka --test kafka_specific`.

mod common;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use flextide_queue_conformance::core::{Message, QueueError, QueueOptions, QueueProvider};
use flextide_queue_kafka::{Kafka, KafkaQueue};
use tokio::time::Instant;

const MESSAGES: usize = 200;

#[derive(Default)]
struct Tally {
    deliveries: HashMap<String, u32>,
    deleted: HashMap<String, u32>,
    stale: u32,
}

impl Tally {
    /// Pops up to `max` and deletes them; returns how many were delivered.
    async fn drain(&mut self, q: &KafkaQueue, max: usize) -> usize {
        let got = q.pop_batch(max, Duration::from_millis(500)).await.unwrap();
        for d in &got {
            let id = d.message.id.as_str().to_owned();
            *self.deliveries.entry(id.clone()).or_default() += 1;
            match q.delete(&d.receipt).await {
                Ok(()) => *self.deleted.entry(id).or_default() += 1,
                Err(QueueError::StaleReceipt { .. }) => self.stale += 1,
                Err(e) => panic!("delete: {e}"),
            }
        }
        got.len()
    }
}

fn members(url: &str) -> (Kafka, Kafka) {
    let config = || common::test_config().partitions(4);
    (
        Kafka::with_config(url, config()).unwrap(),
        Kafka::with_config(url, config()).unwrap(),
    )
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let url = match common::brokers("FLEXTIDE_TEST_KAFKA_URL") {
        Ok(u) => u,
        Err(why) => {
            let required = flextide_queue_conformance::is_required("kafka");
            eprintln!("kafka_specific: {why}");
            if required {
                eprintln!("0 passed, 1 failed");
                return std::process::ExitCode::FAILURE;
            }
            println!("test rebalances ... ignored");
            println!("test keyed_order_across_a_restart ... ignored");
            println!("test assigned_before_the_first_pop ... ignored");
            return std::process::ExitCode::SUCCESS;
        }
    };
    rebalances_lose_nothing(&url).await;
    println!("test rebalances ... ok");
    keyed_order_across_a_restart(&url).await;
    println!("test keyed_order_across_a_restart ... ok");
    assigned_before_the_first_pop(&url).await;
    println!("test assigned_before_the_first_pop ... ok");
    println!("3 passed, 0 failed");
    std::process::ExitCode::SUCCESS
}

/// `wait_for_assignment` starts the consumer and returns once the group
/// assigned it the queue's partitions; records pushed after it are
/// fetched by that member.
async fn assigned_before_the_first_pop(url: &str) {
    let name = flextide_queue_conformance::unique_queue_name("assigned");
    let client = Kafka::with_config(url, common::test_config()).unwrap();
    let q = client.open(&name, QueueOptions::default()).await.unwrap();
    assert!(
        q.wait_for_assignment(Duration::from_secs(60))
            .await
            .unwrap(),
        "assigned within 60 s"
    );
    // Already assigned: the answer does not change.
    assert!(q.wait_for_assignment(Duration::ZERO).await.unwrap());
    let id = q.push(Message::new("after the join")).await.unwrap();
    let d = q
        .pop(Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the record pushed after the assignment");
    assert_eq!(d.message.id, id);
    q.delete(&d.receipt).await.unwrap();
    q.close().await.unwrap();
    drop(q);
    client.drop_queue(&name).await.unwrap();
}

/// A keyed record nacked with a delay stays its key's head through a
/// consumer restart in the same process (the ledger forgets the partition
/// and fetches it again from the last commit): the key's next records
/// still wait, the delay and the nack's attempt are remembered.
async fn keyed_order_across_a_restart(url: &str) {
    let name = flextide_queue_conformance::unique_queue_name("keyed-restart");
    let client = Kafka::with_config(url, common::test_config()).unwrap();
    let q = client.open(&name, QueueOptions::default()).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..4 {
        let m = Message::new(format!("a{i}")).with_ordering_key("A");
        ids.push(q.push(m).await.unwrap());
    }
    let head = q
        .pop(Duration::from_secs(20))
        .await
        .unwrap()
        .expect("A's head");
    assert_eq!(head.message.id, ids[0]);
    let delay = Duration::from_secs(4);
    let nacked_at = Instant::now();
    q.nack(&head.receipt, delay).await.unwrap();
    q.rejoin().await.unwrap();
    let mut order = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while order.len() < ids.len() && Instant::now() < deadline {
        let Some(d) = q.pop(Duration::from_secs(1)).await.unwrap() else {
            continue;
        };
        if d.message.id == ids[0] {
            let after = nacked_at.elapsed();
            assert!(
                after >= delay,
                "the nack's delay was kept: back after {after:?}"
            );
            assert_eq!(d.attempt, 2, "the nack's attempt was kept");
        }
        order.push(d.message.id.clone());
        q.delete(&d.receipt).await.unwrap();
    }
    assert_eq!(
        order, ids,
        "A's messages in push order, the nacked head first"
    );
    q.close().await.unwrap();
    drop(q);
    client.drop_queue(&name).await.unwrap();
}

async fn rebalances_lose_nothing(url: &str) {
    let name = flextide_queue_conformance::unique_queue_name("rebalance");
    let (a_client, b_client) = members(url);
    let options = QueueOptions::default()
        .lease(Duration::from_secs(60))
        .max_attempts(None);
    let a = a_client.open(&name, options.clone()).await.unwrap();
    let pushed: HashSet<String> = a
        .push_batch(
            (0..MESSAGES)
                .map(|i| Message::new(format!("m{i}")))
                .collect(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|id| id.as_str().to_owned())
        .collect();
    assert_eq!(pushed.len(), MESSAGES);

    // A works alone for a while, then holds 10 leases unsettled.
    let mut tally = Tally::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally.deleted.len() < MESSAGES / 4 && Instant::now() < deadline {
        tally.drain(&a, 10).await;
    }
    assert!(
        tally.deleted.len() >= MESSAGES / 4,
        "A consumed too little alone"
    );
    let held = a.pop_batch(10, Duration::from_secs(5)).await.unwrap();
    for d in &held {
        *tally
            .deliveries
            .entry(d.message.id.as_str().to_owned())
            .or_default() += 1;
    }

    // B joins: the group rebalances, A loses some partitions.
    let b = b_client.open(&name, options.clone()).await.unwrap();
    let mut b_got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while b_got == 0 && Instant::now() < deadline {
        b_got += tally.drain(&b, 10).await;
        tally.drain(&a, 10).await;
    }
    assert!(b_got > 0, "B was never assigned a partition");
    // A's held receipts: those of partitions it lost are stale.
    let stale_before = tally.stale;
    for d in &held {
        let id = d.message.id.as_str().to_owned();
        match a.delete(&d.receipt).await {
            Ok(()) => *tally.deleted.entry(id).or_default() += 1,
            Err(QueueError::StaleReceipt { .. }) => tally.stale += 1,
            Err(e) => panic!("delete: {e}"),
        }
    }
    let held_stale = tally.stale - stale_before;

    // B holds 5 leases and leaves without settling them (closed cleanly):
    // A must get them.
    let b_held = b.pop_batch(5, Duration::from_secs(2)).await.unwrap();
    for d in &b_held {
        *tally
            .deliveries
            .entry(d.message.id.as_str().to_owned())
            .or_default() += 1;
    }
    b.close().await.unwrap();
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(90);
    while tally.deleted.len() < MESSAGES && Instant::now() < deadline {
        tally.drain(&a, 50).await;
    }

    let lost: Vec<&String> = pushed
        .iter()
        .filter(|id| !tally.deleted.contains_key(*id))
        .collect();
    let duplicates = tally.deliveries.values().filter(|n| **n > 1).count();
    let deleted_twice = tally.deleted.values().filter(|n| **n > 1).count();
    eprintln!(
        "rebalance: {MESSAGES} messages, {} held by A at the join ({held_stale} of them stale after it), {} held by B when it left; {duplicates} delivered more than once, {deleted_twice} deleted twice, {} stale deletes",
        held.len(),
        b_held.len(),
        tally.stale
    );
    assert!(lost.is_empty(), "lost after rebalances: {lost:?}");
    assert_eq!(tally.deliveries.len(), MESSAGES, "a message nobody pushed");
    // Duplicates come only from leases a member lost: A's stale ones and
    // B's unsettled ones (and any popped at the instant of a rebalance).
    assert!(
        duplicates <= held.len() + b_held.len() + 10,
        "{duplicates} duplicates for {} lost leases",
        held_stale as usize + b_held.len()
    );
    a.close().await.unwrap();
    drop(a);
    a_client.drop_queue(&name).await.unwrap();
}
