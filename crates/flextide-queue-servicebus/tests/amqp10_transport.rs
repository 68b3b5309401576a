//! The AMQP 1.0 transport against a real AMQP 1.0 broker: a private
//! RabbitMQ node with its bundled `rabbitmq_amqp1_0` plugin (started here
//! through `flextide-test-servers`; own node name, ports and data
//! directory; never the shared node).
//!
//! Shows: connect with SASL PLAIN and ANONYMOUS, send and wait for the
//! broker's accepted outcome, receive unsettled with credit given per call,
//! accept (gone), release (delivered again), reject (not delivered again),
//! the receive-wait returning empty, and reconnecting after the broker
//! restarts (a durable message survives; a link of the dead connection
//! fails with a connection error, which is what makes the queue
//! reconnect). It cannot show what RabbitMQ lacks: lock tokens, lock
//! expiry and renewal, `$cbs`, `$management`, the dead-letter sub-queue
//! or scheduled messages; those are unit-tested against the documented
//! frames and need a real namespace (`tests/conformance.rs`).
//!
//! Run with `cargo test -p flextide-queue-servicebus --test amqp10_transport`
//! (needs `/usr/lib/rabbitmq/bin/rabbitmq-server`; skipped without it
//! unless `FLEXTIDE_TEST_REQUIRE` names `servicebus-transport` or `all`).

use std::{sync::Arc, time::Duration};

use flextide_queue_servicebus::{
    Message, ServiceBusConfig,
    transport::{Connection, Receiver},
};
use flextide_test_servers::{Kind, Server, installed};

fn required() -> bool {
    std::env::var("FLEXTIDE_TEST_REQUIRE")
        .unwrap_or_default()
        .split([',', ' '])
        .any(|b| b.eq_ignore_ascii_case("all") || b.eq_ignore_ascii_case("servicebus-transport"))
}

async fn connect(url: &str) -> Connection {
    let config = Arc::new(ServiceBusConfig::parse(url).unwrap());
    Connection::open(config, &format!("ftq-test-{}", uuid_like()))
        .await
        .expect("connect to the private AMQP 1.0 node")
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

async fn one(
    receiver: &mut Receiver,
    what: &str,
) -> flextide_queue_servicebus::transport::Incoming {
    let mut got = receiver.receive(1, Duration::from_secs(20)).await.unwrap();
    assert_eq!(got.len(), 1, "{what}: expected one delivery");
    got.pop().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_against_rabbitmq_amqp10() {
    if let Err(why) = installed(Kind::RabbitMqAmqp10) {
        assert!(!required(), "required but unavailable: {why}");
        eprintln!("skipped: {why}");
        return;
    }
    let mut server = tokio::task::spawn_blocking(|| Server::start(Kind::RabbitMqAmqp10))
        .await
        .unwrap()
        .expect("private RabbitMQ node with rabbitmq_amqp1_0");
    let url = server.url();
    let address = "/queue/ftq_transport";

    let mut conn = connect(&url).await;
    let mut sender = conn.sender(address, "ftq_transport").await.unwrap();
    let mut receiver = conn.receiver(address, "ftq_transport").await.unwrap();

    // Nothing there: the wait ends with nothing.
    eprintln!("step: Nothing there: the wait ends with nothing.");
    let empty = receiver
        .receive(5, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(empty.is_empty(), "an empty queue gave {empty:?}");

    // send + receive unsettled + accept: gone.
    eprintln!("step: send + receive unsettled + accept: gone.");
    let m = Message::from_parts("m-accept", "hello").with_header("k", "v");
    sender.send(&m, 0, None).await.unwrap();
    let d = one(&mut receiver, "accept").await;
    let got = d.message().unwrap();
    assert_eq!(
        (got.id.as_str(), &got.payload[..]),
        ("m-accept", &b"hello"[..])
    );
    assert_eq!(got.headers.get("k").map(String::as_str), Some("v"));
    assert_eq!(d.attempt(), 1, "first delivery is attempt 1");
    receiver.accept(&d).await.unwrap();

    // Carried attempts (a nack-with-delay copy) are read back.
    eprintln!("step: Carried attempts (a nack-with-delay copy) are read back.");
    sender
        .send(&Message::from_parts("m-carried", "x"), 3, None)
        .await
        .unwrap();
    let d = one(&mut receiver, "carried").await;
    assert_eq!(d.attempt(), 4, "3 carried + first delivery of the copy");
    receiver.accept(&d).await.unwrap();

    // Another message-id on the wire (a unique push's dedup id, a copy's
    // fresh id): the Flextide id comes back from its property.
    eprintln!("step: another message-id on the wire keeps the Flextide id.");
    sender
        .send_as(&Message::from_parts("m-own", "w"), "dedup-key-1", 0, None)
        .await
        .unwrap();
    let d = one(&mut receiver, "wire id").await;
    assert_eq!(d.message().unwrap().id.as_str(), "m-own");
    receiver.accept(&d).await.unwrap();

    // release: delivered again.
    eprintln!("step: release: delivered again.");
    sender
        .send(&Message::from_parts("m-release", "r"), 0, None)
        .await
        .unwrap();
    let d = one(&mut receiver, "release").await;
    receiver.release(&d).await.unwrap();
    let again = one(&mut receiver, "released again").await;
    assert_eq!(again.message().unwrap().id.as_str(), "m-release");
    receiver.accept(&again).await.unwrap();

    // reject: not delivered again (RabbitMQ drops or dead-letters it).
    eprintln!("step: reject: not delivered again (RabbitMQ drops or dead-letters it).");
    sender
        .send(&Message::from_parts("m-reject", "j"), 0, None)
        .await
        .unwrap();
    let d = one(&mut receiver, "reject").await;
    receiver.reject(&d, Some("poison")).await.unwrap();
    let after = receiver
        .receive(1, Duration::from_millis(500))
        .await
        .unwrap();
    assert!(after.is_empty(), "a rejected message came back: {after:?}");

    // A batch: several in one receive call, all unsettled until accepted.
    eprintln!("step: A batch: several in one receive call, all unsettled until accepted.");
    for i in 0..3 {
        sender
            .send(&Message::from_parts(format!("b{i}"), "b"), 0, None)
            .await
            .unwrap();
    }
    let mut batch = Vec::new();
    while batch.len() < 3 {
        let got = receiver
            .receive(3 - batch.len(), Duration::from_secs(20))
            .await
            .unwrap();
        assert!(!got.is_empty(), "batch stalled at {}", batch.len());
        batch.extend(got);
    }
    for d in &batch {
        receiver.accept(d).await.unwrap();
    }

    // Unsettled when its connection goes away: delivered again on a new
    eprintln!("step: Unsettled when its connection goes away: delivered again on a new");
    // connection.
    sender
        .send(&Message::from_parts("m-kept", "k"), 0, None)
        .await
        .unwrap();
    let d = one(&mut receiver, "unsettled").await;
    assert_eq!(d.message().unwrap().id.as_str(), "m-kept");
    receiver.close().await;
    sender.close().await;
    conn.close().await;
    let mut conn = connect(&url).await;
    let mut receiver = conn.receiver(address, "ftq_transport").await.unwrap();
    let d = one(&mut receiver, "redelivered on a new connection").await;
    assert_eq!(d.message().unwrap().id.as_str(), "m-kept");
    receiver.accept(&d).await.unwrap();

    // Reconnect: the broker restarts; a link of the old connection fails
    eprintln!("step: Reconnect: the broker restarts; a link of the old connection fails");
    // with a retryable connection error, and a new connection works.
    let server = tokio::task::spawn_blocking(move || {
        server.stop().unwrap();
        server.restart().unwrap();
        server
    })
    .await
    .unwrap();
    match receiver.receive(1, Duration::from_secs(5)).await {
        Err(e) => assert!(e.is_retryable(), "a dead connection gave {e}"),
        Ok(got) => panic!("a dead connection received {got:?}"),
    }
    drop(conn);
    let mut conn = connect(&url).await;
    let mut sender = conn.sender(address, "ftq_transport").await.unwrap();
    let mut receiver = conn.receiver(address, "ftq_transport").await.unwrap();
    sender
        .send(&Message::from_parts("m-after", "a"), 0, None)
        .await
        .unwrap();
    let d = one(&mut receiver, "after restart").await;
    assert_eq!(d.message().unwrap().id.as_str(), "m-after");
    receiver.accept(&d).await.unwrap();
    conn.close().await;
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}
