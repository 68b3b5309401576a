//! Survives a restart of a NATS server while producers push and a
//! `flextide-worker` worker consumes. Runs only with
//! `FLEXTIDE_TEST_NATS_RESTART=1`. It never touches the shared server: it
//! starts a private `nats-server -js` on a free port with a store directory
//! of its own (crate `flextide-test-servers`; the binary from
//! `FLEXTIDE_TEST_NATS_SERVER`, default `nats-server` from PATH), kills it
//! with SIGKILL by its PID mid-run, and starts it again on the same port
//! and store.
//!
//! What must hold (checked by `flextide_test_servers::load`): every message
//! whose push was acknowledged (PubAck) is handled at least once —
//! JetStream writes each message to its store before it acknowledges, so a
//! killed process loses none — duplicates are allowed and counted, errors
//! seen during the restart are retryable, the worker keeps running (each
//! pop is a fresh pull request, so nothing goes stale across the reconnect)
//! and the queue drains to empty afterwards.
//!
//! Run with: `FLEXTIDE_TEST_NATS_RESTART=1 cargo test -p flextide-queue-nats --test restart`

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use flextide_queue_conformance::unique_queue_name;
use flextide_queue_core::{QueueOptions, QueueProvider};
use flextide_queue_nats::Nats;
use flextide_test_servers::{
    Kind, Server,
    load::{Settings, restart_under_load, run_bounded},
};

const VAR: &str = "FLEXTIDE_TEST_NATS_RESTART";

/// Shown as ignored, with the reason, unless the variable allows it.
fn main() -> std::process::ExitCode {
    use libtest_mimic::{Arguments, Completion, Trial};
    let args = Arguments::from_args();
    let trial = Trial::ignorable_test("survives_a_server_restart", move || {
        if std::env::var(VAR).as_deref() != Ok("1") {
            return Ok(Completion::ignored_with(format!(
                "set {VAR}=1 to let it start and kill a private nats-server"
            )));
        }
        let server = Arc::new(Mutex::new(Server::start(Kind::Nats)?));
        run_bounded(survives_a_server_restart(server.clone()))?;
        Ok(Completion::Completed)
    });
    libtest_mimic::run(&args, vec![trial]).exit_code()
}

async fn survives_a_server_restart(server: Arc<Mutex<Server>>) {
    let url = server.lock().unwrap().url();
    let client = Nats::new(&url).unwrap();
    let name = unique_queue_name("restart");
    let (client_ref, name_ref) = (&client, &name);
    let open = move |options: QueueOptions| async move {
        let q: Arc<dyn QueueProvider> = Arc::new(client_ref.open(name_ref, options).await.unwrap());
        q
    };
    let report = restart_under_load(
        Settings::new("nats (SIGKILL, then the same store)"),
        open,
        // SIGKILL by PID, 2 s down, then the same port and store again.
        move || {
            server
                .lock()
                .unwrap()
                .crash_and_restart(Duration::from_secs(2))
                .unwrap_or_else(|e| panic!("{e}"))
        },
    )
    .await;
    eprintln!("{report}");
    client.drop_queue(&name).await.unwrap();
}
