//! The whole conformance suite against a Kafka-compatible broker.
//!
//! Run with `FLEXTIDE_TEST_KAFKA_URL=127.0.0.1:9092 cargo test -p
//! flextide-queue-kafka --test conformance`. Connection loss is caused by
//! making the queue's consumer leave its group and join again.

mod common;

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run("kafka", || common::connect("FLEXTIDE_TEST_KAFKA_URL"))
}
