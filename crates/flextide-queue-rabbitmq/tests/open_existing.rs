//! `RabbitMq::open_existing` (the connector's, for `flextide stats`, `peek`
//! and `dlq list`) creates nothing: a queue that does not exist is
//! `QueueNotFound` and stays absent; one that exists is opened as usual.
//! Needs `FLEXTIDE_TEST_RABBITMQ_URL` (shown as ignored without it unless
//! `FLEXTIDE_TEST_REQUIRE` names rabbitmq).

use flextide_queue_conformance::integration_test;
use flextide_queue_core::{Message, QueueError, QueueOptions, QueueProvider};
use flextide_queue_rabbitmq::{Connector, RabbitMq, RabbitMqConnector};

/// Opens with `open_existing` and reads the stats, the way `flextide stats`
/// does (the link may be made at open or at the first call).
async fn look(client: &RabbitMq, name: &str) -> Result<u64, QueueError> {
    let q = client.open_existing(name, QueueOptions::default()).await?;
    let stats = q.stats().await;
    let _ = q.close().await;
    Ok(stats?.depth)
}

async fn a_missing_queue_is_not_created(url: String) {
    let name = flextide_queue_conformance::unique_queue_name("open_existing");
    let client = RabbitMq::new(&url).unwrap();
    for _ in 0..2 {
        // The second look proves the first created nothing.
        match look(&client, &name).await {
            Err(QueueError::QueueNotFound { queue, .. }) => assert_eq!(queue, name),
            other => panic!("expected QueueNotFound, got {other:?}"),
        }
    }
    // Once a producer made it, it opens and counts.
    let q = client.open(&name, QueueOptions::default()).await.unwrap();
    q.push(Message::new("x")).await.unwrap();
    q.close().await.unwrap();
    assert_eq!(look(&client, &name).await.unwrap(), 1);
    client.drop_queue(&name).await.unwrap();
}

/// `flextide queue create` (the connector's `create_queue`) declares the
/// queue, so it exists afterwards; a second create changes nothing.
async fn create_queue_declares_it(url: String) {
    let name = flextide_queue_conformance::unique_queue_name("create_queue");
    let client = RabbitMq::new(&url).unwrap();
    for _ in 0..2 {
        RabbitMqConnector
            .create_queue(&url, &name, QueueOptions::default())
            .await
            .unwrap();
        assert_eq!(look(&client, &name).await.unwrap(), 0);
    }
    client.drop_queue(&name).await.unwrap();
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "rabbitmq",
        "FLEXTIDE_TEST_RABBITMQ_URL",
        vec![
            integration_test!(a_missing_queue_is_not_created),
            integration_test!(create_queue_declares_it),
        ],
    )
}
