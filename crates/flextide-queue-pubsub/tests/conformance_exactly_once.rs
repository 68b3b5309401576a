//! The conformance suite again, on subscriptions with exactly-once
//! delivery, where stale receipts are refused (`fenced_receipts`).
//!
//! Run with the same `FLEXTIDE_TEST_PUBSUB_URL` as `conformance.rs`:
//! `cargo test -p flextide-queue-pubsub --test conformance_exactly_once`.

mod common;

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run("pubsub", || common::connect(true))
}
