//! `flextide pop --keep` run four times in a row: each run is a process
//! that opens the queue with a client of its own, pops one message, nacks
//! it with no delay and closes the queue before it exits. Each run must
//! see one attempt more than the last (1, 2, 3, 4): the copy the nack
//! republished, which the broker pushes straight into the closing handle's
//! prefetch buffer, is given back by `close` without a delivery counted.
//! Before `close` did that, the runs saw 1, 2, 4, 5 (quorum queues count
//! the return in `x-delivery-count`, classic ones set `redelivered`).
//! Also checked: a handle dropped without `close` inside a runtime does the
//! same in the background. Runs on quorum and on classic queues.
//! Needs `FLEXTIDE_TEST_RABBITMQ_URL` (shown as ignored without it unless
//! `FLEXTIDE_TEST_REQUIRE` names rabbitmq).

use std::{sync::Arc, time::Duration};

use flextide_queue_conformance::integration_test;
use flextide_queue_core::{Connector, Message, QueueOptions, QueueProvider};
use flextide_queue_rabbitmq::{QueueType, RabbitMq, RabbitMqConfig, RabbitMqConnector};

/// What the `flextide` command waits for a message (`--wait` default).
const WAIT: Duration = Duration::from_secs(5);

/// Opens `name` as a new process would: a client of its own. Quorum queues
/// go through `RabbitMqConnector`, as the `flextide` command opens them.
async fn open_as_a_process(url: &str, name: &str, kind: QueueType) -> Arc<dyn QueueProvider> {
    let options = QueueOptions::default().max_attempts(None);
    match kind {
        QueueType::Quorum => RabbitMqConnector.open(url, name, options).await.unwrap(),
        _ => {
            let client =
                RabbitMq::with_config(url, RabbitMqConfig::default().queue_type(kind)).unwrap();
            Arc::new(client.open(name, options).await.unwrap())
        }
    }
}

/// How a run ends: `close` (a clean exit), or the last handle dropped
/// inside the runtime.
#[derive(Clone, Copy, PartialEq)]
enum End {
    Close,
    Drop,
}

async fn four_runs(url: String, kind: QueueType, end: End) {
    let name = flextide_queue_conformance::unique_queue_name("pop_keep");
    let q = open_as_a_process(&url, &name, kind).await;
    let id = q.push(Message::new("kept four times")).await.unwrap();
    q.close().await.unwrap();
    drop(q);

    for want in 1..=4u32 {
        let q = open_as_a_process(&url, &name, kind).await;
        let got = q.pop_batch(1, WAIT).await.unwrap();
        assert_eq!(got.len(), 1, "run {want}: the kept message ({kind:?})");
        let d = &got[0];
        assert_eq!(d.message.id, id, "run {want}: the same message");
        assert_eq!(
            d.attempt,
            want,
            "run {want} of `flextide pop --keep` on a {kind:?} queue (ended by {})",
            if end == End::Close { "close" } else { "drop" }
        );
        q.nack(&d.receipt, Duration::ZERO).await.unwrap();
        if end == End::Close {
            q.close().await.unwrap();
        }
        drop(q);
    }

    let q = open_as_a_process(&url, &name, kind).await;
    let d = q
        .pop(WAIT)
        .await
        .unwrap()
        .expect("the message after four runs");
    assert_eq!(d.attempt, 5, "the fifth delivery ({kind:?})");
    q.delete(&d.receipt).await.unwrap();
    q.close().await.unwrap();
    drop(q);
    RabbitMq::new(&url)
        .unwrap()
        .drop_queue(&name)
        .await
        .unwrap();
}

async fn pop_keep_four_times_quorum(url: String) {
    four_runs(url, QueueType::Quorum, End::Close).await;
}

async fn pop_keep_four_times_classic(url: String) {
    four_runs(url, QueueType::Classic, End::Close).await;
}

async fn dropped_handles_give_back_too_quorum(url: String) {
    four_runs(url, QueueType::Quorum, End::Drop).await;
}

async fn dropped_handles_give_back_too_classic(url: String) {
    four_runs(url, QueueType::Classic, End::Drop).await;
}

/// After `close`, calls fail rather than reconnect, and a second `close`
/// does nothing.
async fn calls_after_close_fail(url: String) {
    let name = flextide_queue_conformance::unique_queue_name("closed");
    let q = open_as_a_process(&url, &name, QueueType::Quorum).await;
    q.close().await.unwrap();
    q.close().await.unwrap();
    let pushed = q.push(Message::new("too late")).await;
    assert!(pushed.is_err(), "a push on a closed handle: {pushed:?}");
    let popped = q.pop(Duration::from_millis(100)).await;
    assert!(popped.is_err(), "a pop on a closed handle: {popped:?}");
    drop(q);
    RabbitMq::new(&url)
        .unwrap()
        .drop_queue(&name)
        .await
        .unwrap();
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "rabbitmq",
        "FLEXTIDE_TEST_RABBITMQ_URL",
        vec![
            integration_test!(pop_keep_four_times_quorum).threads(2),
            integration_test!(pop_keep_four_times_classic).threads(2),
            integration_test!(dropped_handles_give_back_too_quorum).threads(2),
            integration_test!(dropped_handles_give_back_too_classic).threads(2),
            integration_test!(calls_after_close_fail).threads(2),
        ],
    )
}
