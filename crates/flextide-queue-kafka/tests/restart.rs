//! Survives a restart of the Kafka-compatible broker while producers push
//! and a `flextide-worker` worker consumes. The broker is a private tansu
//! this test starts (crate `flextide-test-servers`: its own port and data
//! directory, records, committed offsets and groups in the embedded SQLite
//! engine's file), kills with SIGKILL by its PID mid-run, and starts again
//! on the same port and file. The shared broker is never touched.
//!
//! What must hold (checked by `flextide_test_servers::load`): every message
//! whose push the broker acknowledged (`acks=all`) is handled at least
//! once, duplicates are allowed and counted (records settled after the
//! last commit come again, as after any consumer restart), errors seen
//! during the outage are retryable, the worker keeps running (librdkafka
//! reconnects the producer and the group member) and handles messages
//! pushed after the restart, and the queue drains to empty afterwards.
//!
//! Needs a tansu built with its `libsql` engine (the wheel's tansu keeps
//! everything in memory, which a restart would wipe):
//! `cargo install tansu --no-default-features --features libsql --root DIR`,
//! then `FLEXTIDE_TEST_TANSU_DURABLE=DIR/bin/tansu cargo test -p
//! flextide-queue-kafka --test restart`. Without it the case shows as
//! ignored with that reason (a failure when FLEXTIDE_TEST_REQUIRE names
//! kafka).

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use flextide_queue_conformance::unique_queue_name;
use flextide_queue_core::{QueueOptions, QueueProvider};
use flextide_queue_kafka::Kafka;
use flextide_test_servers::{
    Kind, Server,
    load::{Settings, restart_under_load, run_bounded},
};

fn main() -> std::process::ExitCode {
    use libtest_mimic::{Arguments, Completion, Trial};
    let args = Arguments::from_args();
    let trial = Trial::ignorable_test("survives_a_broker_restart", move || {
        if let Err(missing) = flextide_test_servers::installed(Kind::Kafka) {
            let why = format!(
                "{missing}: set FLEXTIDE_TEST_TANSU_DURABLE to a tansu built with \
                 `--features libsql`"
            );
            if flextide_queue_conformance::is_required("kafka") {
                return Err(why.into());
            }
            return Ok(Completion::ignored_with(why));
        }
        let server = Arc::new(Mutex::new(Server::start(Kind::Kafka)?));
        run_bounded(survives_a_broker_restart(server.clone()))?;
        Ok(Completion::Completed)
    });
    libtest_mimic::run(&args, vec![trial]).exit_code()
}

async fn survives_a_broker_restart(server: Arc<Mutex<Server>>) {
    let url = server.lock().unwrap().url();
    let client = Kafka::with_config(&url, common::test_config()).unwrap();
    let name = unique_queue_name("restart");
    let (client_ref, name_ref) = (&client, &name);
    let open = move |options: QueueOptions| async move {
        let q: Arc<dyn QueueProvider> = Arc::new(client_ref.open(name_ref, options).await.unwrap());
        q
    };
    let mut settings = Settings::new("kafka (tansu, SQLite engine; SIGKILL, then the same file)");
    // The member rejoins its group after the restart (about half the
    // session timeout per join, more while the broker recovers).
    settings.handle_within = Duration::from_secs(30);
    // librdkafka reconnects with a backoff (at most 2 s as the backend
    // sets it), then the idempotent producer re-initialises.
    settings.confirm_within = Duration::from_secs(20);
    // SIGKILL by PID, 2 s down (pushes, fetches and commits meet the
    // outage), then the same port and database file.
    let report = restart_under_load(settings, open, move || {
        server
            .lock()
            .unwrap()
            .crash_and_restart(Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{e}"))
    })
    .await;
    eprintln!("{report}");
    client.drop_queue(&name).await.unwrap();
}
