//! Survives a crash and restart of a RabbitMQ broker while producers push
//! and a worker consumes. The broker is a private node this test starts
//! (crate `flextide-test-servers`: its own node name, ports and mnesia
//! directory), stops (`rabbitmqctl stop`: the whole Erlang node goes down)
//! and starts again: every connection drops, and durable queues are
//! recovered from disk. The shared broker is never touched, so the test always runs where
//! RabbitMQ is installed.
//!
//! What must hold: every message whose push was confirmed is handled at
//! least once (duplicates are allowed by the contract and counted), errors
//! seen during the restart are retryable, the `flextide-worker` worker keeps
//! running and handles messages pushed after the restart, and the queue
//! drains to empty afterwards.
//!
//! Run with: `cargo test -p flextide-queue-rabbitmq --test restart`

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use flextide_queue_conformance::unique_queue_name;
use flextide_queue_core::{Message, MessageId, QueueError, QueueOptions, QueueProvider};
use flextide_queue_rabbitmq::{QueueType, RabbitMq, RabbitMqConfig};
use flextide_test_servers::{Kind, Server};
use flextide_worker::{CancellationToken, HandlerError, Task, Worker, handler_fn};
use tokio::time::Instant;

const PRODUCERS: usize = 2;
const CHUNK: usize = 20;

/// When the broker accepted connections again, and the first push confirmed
/// and the first message handled after that: how long recovery took.
#[derive(Default)]
struct Recovery {
    up: Option<Instant>,
    first_confirm: Option<Instant>,
    first_handled: Option<Instant>,
}

impl Recovery {
    fn mark(slot: &Mutex<Recovery>, which: fn(&mut Recovery) -> &mut Option<Instant>) {
        let mut r = slot.lock().unwrap();
        if r.up.is_some() {
            which(&mut r).get_or_insert_with(Instant::now);
        }
    }
}

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
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                // Producers retry until confirmed: bound the whole run, so a
                // broker that never recovers fails the test, not hangs it.
                // (The timer is made inside the runtime: it needs its clock.)
                runtime
                    .block_on(async {
                        tokio::time::timeout(
                            Duration::from_secs(300),
                            survives_a_broker_restart(queue_type),
                        )
                        .await
                    })
                    .map_err(|_| "did not finish within 5 minutes")?;
                Ok(Completion::Completed)
            },
        )
    })
    .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// Pushes chunks with confirms until `stop`; returns the confirmed ids and
/// the retryable errors it met (a non-retryable one fails the test).
async fn produce(
    queue: Arc<dyn QueueProvider>,
    stop: Arc<AtomicBool>,
    recovery: Arc<Mutex<Recovery>>,
    tag: usize,
) -> (Vec<MessageId>, usize) {
    let mut confirmed = Vec::new();
    let mut errors = 0;
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let mut chunk: Vec<Message> = (0..CHUNK)
            .map(|i| Message::new(format!("p{tag}-{n}-{i}")))
            .collect();
        n += 1;
        // A chunk is retried until every message of it is confirmed, so
        // nothing the test counts on is left unconfirmed.
        while !chunk.is_empty() {
            match queue.push_batch(chunk.clone()).await {
                Ok(ids) => {
                    Recovery::mark(&recovery, |r| &mut r.first_confirm);
                    confirmed.extend(ids);
                    chunk.clear();
                }
                Err(QueueError::PartialBatch { failures, .. }) => {
                    for f in &failures {
                        assert!(
                            f.error.is_retryable(),
                            "a restart must only cause retryable errors: {}",
                            f.error
                        );
                    }
                    let failed: HashSet<usize> = failures.iter().map(|f| f.index).collect();
                    let mut retry = Vec::new();
                    for (i, m) in chunk.drain(..).enumerate() {
                        if failed.contains(&i) {
                            retry.push(m);
                        } else {
                            confirmed.push(m.id);
                        }
                    }
                    chunk = retry;
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    assert!(
                        e.is_retryable(),
                        "a restart must only cause retryable errors: {e}"
                    );
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (confirmed, errors)
}

async fn survives_a_broker_restart(queue_type: QueueType) {
    let server = tokio::task::spawn_blocking(|| Server::start(Kind::RabbitMq))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let client =
        RabbitMq::with_config(&url, RabbitMqConfig::default().queue_type(queue_type)).unwrap();
    let name = unique_queue_name("restart");
    // No attempt limit: redeliveries caused by the restart must not turn
    // into dead letters.
    let options = QueueOptions::default()
        .lease(Duration::from_secs(10))
        .max_attempts(None);
    let open = || async {
        let q: Arc<dyn QueueProvider> =
            Arc::new(client.open(&name, options.clone()).await.unwrap());
        q
    };

    // The worker: counts every time the handler sees a message.
    let handled: Arc<Mutex<HashMap<MessageId, u32>>> = Arc::default();
    let recovery: Arc<Mutex<Recovery>> = Arc::default();
    let consumer = open().await;
    let shutdown = CancellationToken::new();
    let worker = {
        let (handled, recovery) = (handled.clone(), recovery.clone());
        let worker = Worker::builder(consumer.clone())
            .concurrency(8)
            .poll_wait(Duration::from_millis(500))
            .build(handler_fn(move |task: Task| {
                let (handled, recovery) = (handled.clone(), recovery.clone());
                async move {
                    Recovery::mark(&recovery, |r| &mut r.first_handled);
                    *handled
                        .lock()
                        .unwrap()
                        .entry(task.id().clone())
                        .or_default() += 1;
                    Ok::<_, HandlerError>(())
                }
            }));
        tokio::spawn(worker.run(shutdown.clone()))
    };

    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for tag in 0..PRODUCERS {
        producers.push(tokio::spawn(produce(
            open().await,
            stop.clone(),
            recovery.clone(),
            tag,
        )));
    }

    // Let messages flow, then restart the broker under load.
    let deadline = Instant::now() + Duration::from_secs(30);
    while handled.lock().unwrap().len() < 200 {
        assert!(
            Instant::now() < deadline,
            "the worker handled too little before the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        // A clean stop: after a SIGKILL a single-node quorum queue may
        // stay leaderless ("leader not known", rabbitmq-server#10070);
        // the crash is what `cargo xtask chaos` does.
        server.stop().unwrap_or_else(|e| panic!("{e}"));
        server.restart().unwrap_or_else(|e| panic!("{e}"));
        server
    })
    .await
    .unwrap();
    let restart_took = started.elapsed();
    recovery.lock().unwrap().up = Some(Instant::now());
    let handled_at_restart = handled.lock().unwrap().len();

    // Keep pushing after the restart, so the worker must consume from the
    // new connections.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let mut confirmed = HashSet::new();
    let mut push_errors = 0;
    for p in producers {
        let (ids, errors) = p.await.unwrap();
        confirmed.extend(ids);
        push_errors += errors;
    }

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(
            !worker.is_finished(),
            "the worker stopped during the restart"
        );
        let missing = {
            let h = handled.lock().unwrap();
            confirmed.iter().filter(|id| !h.contains_key(*id)).count()
        };
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} confirmed messages were never handled",
            confirmed.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let handled_after_restart = handled.lock().unwrap().len() - handled_at_restart;
    assert!(
        handled_after_restart > 0,
        "the worker handled nothing after the restart"
    );
    let (to_confirm, to_handle) = {
        let r = recovery.lock().unwrap();
        let up = r.up.expect("set after the restart");
        let after = |t: Option<Instant>| t.map(|t| t.duration_since(up));
        (after(r.first_confirm), after(r.first_handled))
    };
    // Pushes reconnect on the next call; the worker's fetch loop backs off
    // up to 5 s between failed pops.
    assert!(
        to_confirm.is_some_and(|d| d < Duration::from_secs(10)),
        "pushes took too long to recover: {to_confirm:?}"
    );
    assert!(
        to_handle.is_some_and(|d| d < Duration::from_secs(15)),
        "the worker took too long to recover: {to_handle:?}"
    );

    // Nothing is stuck: once acknowledgements lost in the restart are
    // redelivered and handled again, the queue is empty.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = consumer.stats().await;
        if let Ok(s) = &s
            && s.depth == 0
            && s.in_flight == 0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue did not drain after the restart: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    assert!(!worker.is_finished(), "the worker stopped");
    shutdown.cancel();
    let report = worker.await.unwrap();
    let handled = handled.lock().unwrap().clone();
    let duplicates: u32 = handled.values().map(|n| n - 1).sum();
    // Producers retry a chunk until all of it is confirmed, so whatever
    // reached the queue was confirmed in the end.
    let unexpected = handled.keys().filter(|id| !confirmed.contains(*id)).count();
    assert_eq!(unexpected, 0, "handled messages that were never pushed");
    eprintln!(
        "{queue_type:?}: restart took {restart_took:?}, then first push confirmed after {to_confirm:?}, \
         first message handled after {to_handle:?}; {} confirmed, {} handled ({handled_after_restart} after the restart), \
         {duplicates} duplicate handlings; \
         {push_errors} push retries; worker: {} processed, {} settle errors",
        confirmed.len(),
        handled.len(),
        report.processed,
        report.settle_errors,
    );
    drop(consumer);
    client.drop_queue(&name).await.unwrap();
    drop(client);
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}
