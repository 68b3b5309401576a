//! Survives a restart of a RabbitMQ broker while producers push and a
//! worker consumes. The broker is a private node this test starts (crate
//! `flextide-test-servers`: its own node name, ports and mnesia
//! directory), stops (`rabbitmqctl stop`: the whole Erlang node goes down)
//! and starts again: every connection drops, and durable queues are
//! recovered from disk. The shared broker is never touched, so the test
//! always runs where RabbitMQ is installed.
//!
//! What must hold (checked by `flextide_test_servers::load`): every message
//! whose push was confirmed is handled at least once (duplicates are
//! allowed by the contract and counted), errors seen during the restart are
//! retryable, the `flextide-worker` worker keeps running and handles
//! messages pushed after the restart, and the queue drains to empty
//! afterwards.
//!
//! Run with: `cargo test -p flextide-queue-rabbitmq --test restart`

use std::sync::{Arc, Mutex};

use flextide_queue_conformance::unique_queue_name;
use flextide_queue_core::{QueueOptions, QueueProvider};
use flextide_queue_rabbitmq::{QueueType, RabbitMq, RabbitMqConfig};
use flextide_test_servers::{
    Kind, Server,
    load::{Settings, restart_under_load, run_bounded},
};

/// Shown as ignored, with the reason, where RabbitMQ is not installed (a
/// failure when FLEXTIDE_TEST_REQUIRE names rabbitmq).
fn main() -> std::process::ExitCode {
    use libtest_mimic::{Arguments, Completion, Trial};
    let mut args = Arguments::from_args();
    // Each case runs a broker of its own: one at a time keeps a small
    // machine's memory and the timings sane.
    args.test_threads = Some(1);
    let trials = [
        ("quorum", QueueType::Quorum),
        ("classic", QueueType::Classic),
    ]
    .into_iter()
    .map(|(kind, queue_type)| {
        Trial::ignorable_test(
            format!("{kind}_queue_survives_a_broker_restart"),
            move || {
                if let Err(missing) = flextide_test_servers::installed(Kind::RabbitMq) {
                    if flextide_queue_conformance::is_required("rabbitmq") {
                        return Err(missing.into());
                    }
                    return Ok(Completion::ignored_with(missing));
                }
                run_bounded(survives_a_broker_restart(queue_type))?;
                Ok(Completion::Completed)
            },
        )
    })
    .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

async fn survives_a_broker_restart(queue_type: QueueType) {
    let server = tokio::task::spawn_blocking(|| Server::start(Kind::RabbitMq))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let server = Arc::new(Mutex::new(server));
    let client =
        RabbitMq::with_config(&url, RabbitMqConfig::default().queue_type(queue_type)).unwrap();
    let name = unique_queue_name("restart");
    let (client_ref, name_ref) = (&client, &name);
    let open = move |options: QueueOptions| async move {
        let q: Arc<dyn QueueProvider> = Arc::new(client_ref.open(name_ref, options).await.unwrap());
        q
    };
    let restart = {
        let server = server.clone();
        move || {
            let mut server = server.lock().unwrap();
            // A clean stop: after a SIGKILL a single-node quorum queue may
            // stay leaderless ("leader not known", rabbitmq-server#10070);
            // the crash is what `cargo xtask chaos` does.
            server.stop().unwrap_or_else(|e| panic!("{e}"));
            server.restart().unwrap_or_else(|e| panic!("{e}"));
        }
    };
    let report = restart_under_load(Settings::new(format!("{queue_type:?}")), open, restart).await;
    eprintln!("{report}");
    client.drop_queue(&name).await.unwrap();
    drop(client);
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}
