//! The whole conformance suite against NATS JetStream.
//!
//! Run with `FLEXTIDE_TEST_NATS_URL=nats://127.0.0.1:4222 cargo test -p
//! flextide-queue-nats --test conformance`. Connection loss is caused by
//! making the handles' clients reconnect. With the `testcontainers` feature
//! and the variable unset, it starts a NATS container for the run.

mod common;

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run("nats", || common::connect("FLEXTIDE_TEST_NATS_URL", true))
}
