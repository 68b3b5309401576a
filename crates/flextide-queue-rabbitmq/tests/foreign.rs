//! Messages and queues of other AMQP clients (contract clause 12, beyond
//! what the conformance suite can cause): a message published without
//! `message-id` keeps its id when the broker redelivers it after the
//! consuming connection died, and a queue another client declared without
//! our arguments gives an error that says what to do.
//! Needs `FLEXTIDE_TEST_RABBITMQ_URL` (shown as ignored without it unless
//! `FLEXTIDE_TEST_REQUIRE` names rabbitmq).

use std::time::Duration;

use flextide_queue_conformance::integration_test;
use flextide_queue_core::{Message, QueueError, QueueOptions, QueueProvider};
use flextide_queue_rabbitmq::RabbitMq;
use lapin::{
    BasicProperties, Connection, ConnectionProperties,
    options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{FieldTable, ShortString},
};

async fn foreign_message_keeps_its_id_across_a_broker_redelivery(url: String) {
    let client = RabbitMq::new(&url).unwrap();
    let name = flextide_queue_conformance::unique_queue_name("foreign_id");
    let q = client.open(&name, QueueOptions::default()).await.unwrap();
    // Declared before the other producer publishes to it.
    q.declare().await.unwrap();

    let other = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = other.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.basic_publish(
        ShortString::from(""),
        ShortString::from(name.as_str()),
        BasicPublishOptions::default(),
        b"from another client",
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    let first = q
        .pop(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the foreign message");
    // The consuming connection dies: the broker takes the delivery back and
    // delivers it again, to a new connection (as to another process).
    q.disconnect().await;
    let mut again = None;
    for _ in 0..10 {
        match q.pop(Duration::from_secs(2)).await {
            Ok(Some(d)) => {
                again = Some(d);
                break;
            }
            Ok(None) => {}
            Err(e) if e.is_retryable() => {}
            Err(e) => panic!("{e}"),
        }
    }
    let again = again.expect("the foreign message, redelivered by the broker");
    assert_eq!(again.message.payload.as_ref(), b"from another client");
    assert_eq!(
        again.message.id, first.message.id,
        "a broker redelivery must keep the id"
    );
    q.delete(&again.receipt).await.unwrap();

    let _ = other.close(200, ShortString::from("bye")).await;
    drop(q);
    client.drop_queue(&name).await.unwrap();
}

async fn queue_declared_by_another_client_says_what_to_do(url: String) {
    let client = RabbitMq::new(&url).unwrap();
    let name = flextide_queue_conformance::unique_queue_name("foreign_queue");
    let other = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = other.create_channel().await.unwrap();
    ch.queue_declare(
        ShortString::from(name.as_str()),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();

    for _ in 0..2 {
        // Opening declares nothing; the first write does, and is refused.
        let q = client.open(&name, QueueOptions::default()).await.unwrap();
        let refused = q.push(Message::new("x")).await;
        let Err(QueueError::Configuration { message, .. }) = refused else {
            panic!("expected a configuration error, got {refused:?}");
        };
        for part in [
            name.as_str(),
            "x-dead-letter-exchange",
            "another client",
            "delete",
            "drop_queue",
        ] {
            assert!(message.contains(part), "{part:?} missing from: {message}");
        }
        assert!(!message.contains("guest:guest"), "{message}");
    }

    // The client still works, for other queues and for this one once it is
    // deleted.
    let fine = flextide_queue_conformance::unique_queue_name("foreign_queue_ok");
    let q = client.open(&fine, QueueOptions::default()).await.unwrap();
    drop(q);
    client.drop_queue(&fine).await.unwrap();
    client.drop_queue(&name).await.unwrap();
    let q = client.open(&name, QueueOptions::default()).await.unwrap();
    drop(q);
    client.drop_queue(&name).await.unwrap();
    let _ = other.close(200, ShortString::from("bye")).await;
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "rabbitmq",
        "FLEXTIDE_TEST_RABBITMQ_URL",
        vec![
            integration_test!(foreign_message_keeps_its_id_across_a_broker_redelivery).threads(2),
            integration_test!(queue_declared_by_another_client_says_what_to_do).threads(2),
        ],
    )
}
