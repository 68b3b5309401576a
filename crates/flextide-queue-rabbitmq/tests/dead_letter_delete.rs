//! Deleting chosen dead letters beside a replay of all of them, from two
//! clients at once (as two processes): `q.dlq` has no delete by id, so the
//! delete holds every dead letter unacknowledged while it looks for the
//! chosen ones. Nothing may be lost or doubled: every dead letter ends up
//! exactly once deleted (and chosen), replayed (on the queue once) or still
//! listed (in its old order), and the counts returned match.
//! Needs `FLEXTIDE_TEST_RABBITMQ_URL` (shown as ignored without it unless
//! `FLEXTIDE_TEST_REQUIRE` names rabbitmq).

use std::{collections::HashSet, time::Duration};

use bytes::Bytes;
use flextide_queue_conformance::integration_test;
use flextide_queue_core::{Message, MessageId, QueueOptions, QueueProvider, Replay};
use flextide_queue_rabbitmq::RabbitMq;

const N: usize = 40;

async fn delete_beside_a_replay_loses_and_doubles_nothing(url: String) {
    let client = RabbitMq::new(&url).unwrap();
    let name = flextide_queue_conformance::unique_queue_name("dl_delete");
    let q = client.open(&name, QueueOptions::default()).await.unwrap();
    for i in 0..N {
        q.push(Message::new(Bytes::from(format!("m{i}"))))
            .await
            .unwrap();
    }
    // Dead-lettered one by one: `order` is the order of q.dlq.
    let mut order: Vec<MessageId> = Vec::new();
    while order.len() < N {
        let d = q
            .pop(Duration::from_secs(10))
            .await
            .unwrap()
            .expect("a pushed message");
        q.dead_letter(&d.receipt, "boom").await.unwrap();
        order.push(d.message.id);
    }
    let chosen: Vec<MessageId> = order.iter().step_by(2).cloned().collect();

    let other_client = RabbitMq::new(&url).unwrap();
    let other = other_client
        .open(&name, QueueOptions::default())
        .await
        .unwrap();
    let (deleted, replayed) = tokio::join!(
        q.delete_dead_letters(&chosen),
        other.replay_dead_letters(Replay::All)
    );
    let (deleted, replayed) = (deleted.unwrap(), replayed.unwrap());

    let mut back: Vec<MessageId> = Vec::new();
    while let Some(d) = q.pop(Duration::from_secs(3)).await.unwrap() {
        q.delete(&d.receipt).await.unwrap();
        back.push(d.message.id);
    }
    let back_set: HashSet<&MessageId> = back.iter().collect();
    assert_eq!(back_set.len(), back.len(), "a replayed message came twice");
    assert_eq!(back.len() as u64, replayed, "replayed count vs the queue");

    let left: Vec<MessageId> = q
        .dead_letters(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.message.id)
        .collect();
    let left_set: HashSet<&MessageId> = left.iter().collect();
    assert!(
        left_set.is_disjoint(&back_set),
        "a dead letter was replayed and kept"
    );
    let old_order: Vec<&MessageId> = order.iter().filter(|id| left_set.contains(id)).collect();
    assert_eq!(
        left.iter().collect::<Vec<_>>(),
        old_order,
        "the dead letters left keep their order"
    );
    let gone: Vec<&MessageId> = order
        .iter()
        .filter(|id| !left_set.contains(id) && !back_set.contains(id))
        .collect();
    assert_eq!(gone.len() as u64, deleted, "deleted count vs what is gone");
    assert!(
        gone.iter().all(|id| chosen.contains(id)),
        "only chosen dead letters may go"
    );
    assert_eq!(left.len() + back.len() + gone.len(), N);
    println!(
        "deleted {deleted}, replayed {replayed}, left {}",
        left.len()
    );

    drop((q, other));
    client.drop_queue(&name).await.unwrap();
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "rabbitmq",
        "FLEXTIDE_TEST_RABBITMQ_URL",
        vec![integration_test!(delete_beside_a_replay_loses_and_doubles_nothing).threads(2)],
    )
}
