//! The conformance suite over a plain AMQP 1.0 broker: a private RabbitMQ
//! node with its `rabbitmq_amqp1_0` plugin. Not Service Bus: there are no
//! lock tokens, lock expiry, dead-letter sub-queue or scheduling, so the
//! queue runs with what is left (capabilities say so, and those cases are
//! ignored). It exercises the queue's own code (receipts, the lock table,
//! batches, reconnects) over a real AMQP 1.0 transport.
//!
//! Opt-in, not part of CI: a send was seen to get no outcome for 30 s
//! now and then under the suite's concurrent connections (not understood
//! yet; which case it hits varies), so the run is not reliable enough to
//! gate on. Run with `FLEXTIDE_TEST_SERVICEBUS_AMQP10=1 cargo test -p
//! flextide-queue-servicebus --test conformance_amqp10`; otherwise every
//! case shows as ignored.

mod common;

/// Cases left out here, and why. What RabbitMQ cannot do: expire a lease
/// (a delivery stays with its connection until settled) and count
/// redeliveries (its AMQP 1.0 header `delivery-count` stays 0). What this
/// backend does on purpose, as Service Bus does: refuse a receipt whose
/// lock ran out even before the message is delivered again
/// (`MessageLockLost`), where the contract lets it still delete.
const LEFT_OUT: &[(&str, &str)] = &[
    (
        "lease::expired_lease_redelivers",
        "no lease expiry on RabbitMQ",
    ),
    (
        "fencing::stale_receipt_cannot_delete",
        "no lease expiry on RabbitMQ",
    ),
    (
        "fencing::stale_receipt_cannot_nack",
        "no lease expiry on RabbitMQ",
    ),
    (
        "across_handles::dropped_handle_redelivers_after_the_lease",
        "no lease expiry on RabbitMQ",
    ),
    (
        "lease::nack_redelivers_at_once",
        "RabbitMQ does not count redeliveries",
    ),
    (
        "lease::attempts_count_up",
        "RabbitMQ does not count redeliveries",
    ),
    (
        "fencing::nacked_receipt_is_stale",
        "RabbitMQ does not count redeliveries",
    ),
    (
        "across_handles::nacks_count_one_attempt_each",
        "RabbitMQ does not count redeliveries",
    ),
    (
        "fencing::expired_receipt_still_deletes",
        "an expired lock is stale, as on Service Bus",
    ),
    // Not understood yet (open): under several concurrent connections a
    // send to RabbitMQ 3.10's plugin was seen to get no outcome for 30 s.
    (
        "concurrency::concurrent_pushers",
        "send stalls seen on RabbitMQ 3.10 (open)",
    ),
    (
        "concurrency::consumers_on_several_handles",
        "send stalls seen on RabbitMQ 3.10 (open)",
    ),
];

fn cases() -> Vec<flextide_queue_conformance::Case> {
    flextide_queue_conformance::all_cases()
        .into_iter()
        .filter(|c| !LEFT_OUT.iter().any(|(name, _)| *name == c.name))
        .collect()
}

use flextide_test_servers::{Kind, Server, installed};

fn main() -> std::process::ExitCode {
    if std::env::var_os("FLEXTIDE_TEST_SERVICEBUS_AMQP10").is_none() {
        return flextide_queue_conformance::run("servicebus-amqp10", || async {
            flextide_queue_conformance::Connect::<common::ServiceBusHarness>::NotConfigured(
                "set FLEXTIDE_TEST_SERVICEBUS_AMQP10=1 to run the suite over a private RabbitMQ AMQP 1.0 node".into(),
            )
        });
    }
    if let Err(why) = installed(Kind::RabbitMqAmqp10) {
        return flextide_queue_conformance::run("servicebus-amqp10", move || {
            let why = why.clone();
            async move {
                flextide_queue_conformance::Connect::<common::ServiceBusHarness>::NotConfigured(why)
            }
        });
    }
    let server = match Server::start(Kind::RabbitMqAmqp10) {
        Ok(s) => s,
        Err(why) => {
            return flextide_queue_conformance::run("servicebus-amqp10", move || {
                let why = why.clone();
                async move {
                    flextide_queue_conformance::Connect::<common::ServiceBusHarness>::Failed(why)
                }
            });
        }
    };
    let url = format!("{}/?address_prefix=%2Fqueue%2F", server.url());
    for (name, why) in LEFT_OUT {
        eprintln!("left out: {name} ({why})");
    }
    let code = flextide_queue_conformance::run_cases("servicebus-amqp10", cases(), move || {
        let url = url.clone();
        async move { common::connect_to(&url).await }
    });
    drop(server);
    code
}
