//! Connections dropped while messages flow: every message whose push was
//! confirmed is delivered, none is lost. Needs `FLEXTIDE_TEST_RABBITMQ_URL`
//! (shown as ignored without it unless `FLEXTIDE_TEST_REQUIRE` names rabbitmq).

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use flextide_queue_conformance::integration_test;
use flextide_queue_core::{Message, MessageId, QueueError, QueueOptions, QueueProvider};
use flextide_queue_rabbitmq::{QueueType, RabbitMq, RabbitMqConfig};
use tokio::time::Instant;

const MESSAGES: usize = 2000;
const CHUNK: usize = 50;

async fn run(url: String, queue_type: QueueType) {
    let client =
        RabbitMq::with_config(&url, RabbitMqConfig::default().queue_type(queue_type)).unwrap();
    let name = flextide_queue_conformance::unique_queue_name("reconnect_under_load");
    let options = QueueOptions::default()
        .lease(Duration::from_secs(10))
        .max_attempts(None);
    let producer = Arc::new(client.open(&name, options.clone()).await.unwrap());
    let consumer = Arc::new(client.open(&name, options).await.unwrap());
    let confirmed: Arc<Mutex<HashSet<MessageId>>> = Arc::default();
    let seen: Arc<Mutex<HashSet<MessageId>>> = Arc::default();
    let produced = Arc::new(AtomicBool::new(false));

    let producing = {
        let (q, confirmed, produced) = (producer.clone(), confirmed.clone(), produced.clone());
        tokio::spawn(async move {
            let mut retries = 0;
            for c in 0..MESSAGES / CHUNK {
                // Spread the load over the disruptions.
                tokio::time::sleep(Duration::from_millis(30)).await;
                let mut chunk: Vec<Message> = (0..CHUNK)
                    .map(|i| Message::new(format!("m{c}-{i}")))
                    .collect();
                while !chunk.is_empty() {
                    match q.push_batch(chunk.clone()).await {
                        Ok(ids) => {
                            confirmed.lock().unwrap().extend(ids);
                            chunk.clear();
                        }
                        Err(QueueError::PartialBatch { failures, .. }) => {
                            assert!(
                                failures.iter().all(|f| f.error.is_retryable()),
                                "{failures:?}"
                            );
                            let failed: HashSet<usize> = failures.iter().map(|f| f.index).collect();
                            let mut retry = Vec::new();
                            for (i, m) in chunk.drain(..).enumerate() {
                                if failed.contains(&i) {
                                    retry.push(m);
                                } else {
                                    confirmed.lock().unwrap().insert(m.id);
                                }
                            }
                            chunk = retry;
                            retries += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => {
                            assert!(e.is_retryable(), "push failed for good: {e}");
                            retries += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
            produced.store(true, Ordering::SeqCst);
            retries
        })
    };

    let consuming = {
        let (q, confirmed, seen, produced) = (
            consumer.clone(),
            confirmed.clone(),
            seen.clone(),
            produced.clone(),
        );
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut errors = 0;
            loop {
                let done = produced.load(Ordering::SeqCst) && {
                    let (c, s) = (confirmed.lock().unwrap(), seen.lock().unwrap());
                    c.is_subset(&s)
                };
                if done || Instant::now() > deadline {
                    return errors;
                }
                match q.pop_batch(CHUNK, Duration::from_millis(500)).await {
                    Ok(batch) => {
                        seen.lock()
                            .unwrap()
                            .extend(batch.iter().map(|d| d.message.id.clone()));
                        let receipts: Vec<_> = batch.iter().map(|d| d.receipt.clone()).collect();
                        // A delete lost with its connection only means a redelivery.
                        if q.delete_batch(&receipts).await.is_err() {
                            errors += 1;
                        }
                    }
                    Err(e) => {
                        assert!(e.is_retryable(), "pop failed for good: {e}");
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        })
    };

    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        producer.disconnect().await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        consumer.disconnect().await;
    }
    let retries = producing.await.unwrap();
    let errors = consuming.await.unwrap();
    let confirmed = confirmed.lock().unwrap().clone();
    let seen = seen.lock().unwrap().clone();
    let missing: Vec<_> = confirmed.difference(&seen).collect();
    eprintln!(
        "{queue_type:?}: {} confirmed, {} delivered, {retries} push retries, {errors} consumer errors",
        confirmed.len(),
        seen.len()
    );
    assert_eq!(
        confirmed.len(),
        MESSAGES,
        "every push was eventually confirmed"
    );
    assert!(
        missing.is_empty(),
        "{} confirmed messages were never delivered: {missing:?}",
        missing.len()
    );
    drop((producer, consumer));
    client.drop_queue(&name).await.unwrap();
}

async fn quorum_queue_loses_nothing_confirmed(url: String) {
    run(url, QueueType::Quorum).await;
}

async fn classic_queue_loses_nothing_confirmed(url: String) {
    run(url, QueueType::Classic).await;
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "rabbitmq",
        "FLEXTIDE_TEST_RABBITMQ_URL",
        vec![
            integration_test!(quorum_queue_loses_nothing_confirmed).threads(2),
            integration_test!(classic_queue_loses_nothing_confirmed).threads(2),
        ],
    )
}
