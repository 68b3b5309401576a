//! A failure the broker answers by closing only the publishing channel
//! (here: a holding queue declared elsewhere with other arguments) costs
//! neither the connection nor the leases held on the consuming channel: the
//! publishing channel is reopened and the deliveries' receipts still work.
//! Needs `FLEXTIDE_TEST_RABBITMQ_URL` (shown as ignored without it unless
//! `FLEXTIDE_TEST_REQUIRE` names rabbitmq).

use std::time::Duration;

use flextide_queue_conformance::integration_test;
use flextide_queue_core::{Message, QueueError, QueueOptions, QueueProvider};
use flextide_queue_rabbitmq::RabbitMq;
use lapin::{
    Connection, ConnectionProperties,
    options::QueueDeclareOptions,
    types::{FieldTable, ShortString},
};

async fn publishing_channel_closed_by_the_broker_keeps_leases(url: String) {
    let client = RabbitMq::new(&url).unwrap();
    let name = flextide_queue_conformance::unique_queue_name("channel_recovery");
    let q = client.open(&name, QueueOptions::default()).await.unwrap();
    q.push(Message::new("held")).await.unwrap();
    let held = q
        .pop(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the pushed message");
    let connection = q.connection_name();

    // Someone declared the 1 s holding queue without its TTL and
    // dead-lettering: our declaration of it is refused (PRECONDITION_FAILED),
    // which closes the channel it was sent on.
    let other = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = other.create_channel().await.unwrap();
    ch.queue_declare(
        ShortString::from(format!("{name}.qhold.1000")),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let refused = q
        .push(Message::new("delayed").with_delay(Duration::from_millis(900)))
        .await;
    assert!(
        matches!(refused, Err(QueueError::Configuration { .. })),
        "{refused:?}"
    );

    // Publishing works again, on the same connection.
    q.push(Message::new("after")).await.unwrap();
    assert_eq!(
        q.connection_name(),
        connection,
        "the connection was replaced"
    );
    // The lease held meanwhile still settles.
    q.delete(&held.receipt).await.unwrap();
    let after = q
        .pop(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the message pushed after the refusal");
    assert_eq!(after.message.payload.as_ref(), b"after");
    q.delete(&after.receipt).await.unwrap();

    let _ = other.close(200, ShortString::from("bye")).await;
    drop(q);
    client.drop_queue(&name).await.unwrap();
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "rabbitmq",
        "FLEXTIDE_TEST_RABBITMQ_URL",
        vec![integration_test!(publishing_channel_closed_by_the_broker_keeps_leases).threads(2)],
    )
}
