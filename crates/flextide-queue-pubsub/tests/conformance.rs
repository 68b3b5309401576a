//! The whole conformance suite against the Pub/Sub emulator, on plain
//! subscriptions (receipts are not fenced).
//!
//! Run with `FLEXTIDE_TEST_PUBSUB_URL=pubsub://flextide-test?emulator=127.0.0.1:8085
//! cargo test -p flextide-queue-pubsub --test conformance` after starting
//! the emulator (`cloud-pubsub-emulator --host=127.0.0.1 --port=8085`).

mod common;

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run("pubsub", || common::connect(false))
}
