//! Survives a restart of a NATS server while producers push and a
//! `flextide-worker` worker consumes. Runs only with
//! `FLEXTIDE_TEST_NATS_RESTART=1`. It never touches the shared server: it
//! starts a private `nats-server -js` on a free port with a store directory
//! of its own (the binary from `FLEXTIDE_TEST_NATS_SERVER`, default
//! `/usr/sbin/nats-server`), kills it with SIGKILL by its PID mid-run, and
//! starts it again on the same port and store.
//!
//! What must hold: every message whose push was acknowledged (PubAck) is
//! handled at least once — JetStream writes each message to its store
//! before it acknowledges, so a killed process loses none — duplicates are
//! allowed and counted, errors seen during the restart are retryable, the
//! worker keeps running (each pop is a fresh pull request, so nothing goes
//! stale across the reconnect) and the queue drains to empty afterwards.
//!
//! Run with: `FLEXTIDE_TEST_NATS_RESTART=1 cargo test -p flextide-queue-nats --test restart`

use std::{
    collections::{HashMap, HashSet},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use flextide_queue_conformance::unique_queue_name;
use flextide_queue_core::{Message, MessageId, QueueError, QueueOptions, QueueProvider};
use flextide_queue_nats::Nats;
use flextide_worker::{CancellationToken, HandlerError, Task, Worker, handler_fn};
use tokio::time::Instant;

const VAR: &str = "FLEXTIDE_TEST_NATS_RESTART";
const PRODUCERS: usize = 2;
const CHUNK: usize = 20;

/// A private nats-server: killed when dropped, its store removed.
struct Server {
    binary: String,
    port: u16,
    store: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn start(binary: String) -> Server {
        // A free port: bind, read it, release it.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let store = std::env::temp_dir().join(unique_queue_name("nats-restart-store"));
        let mut server = Server {
            binary,
            port,
            store,
            child: None,
        };
        server.spawn();
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn listening(&self) -> bool {
        TcpStream::connect_timeout(
            &format!("127.0.0.1:{}", self.port).parse().unwrap(),
            Duration::from_secs(1),
        )
        .is_ok()
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary));
        self.child = Some(child);
        for _ in 0..300 {
            if self.listening() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("nats-server did not listen on {} within 30 s", self.port);
    }

    /// SIGKILL by PID, 2 s down, then the same port and store again.
    fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(!self.listening(), "the killed server still listens");
        // Down long enough that pushes and pops meet the outage.
        std::thread::sleep(Duration::from_secs(2));
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// When the server accepted connections again, and the first push confirmed
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
        let binary = std::env::var("FLEXTIDE_TEST_NATS_SERVER")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "/usr/sbin/nats-server".to_owned());
        let server = Arc::new(Mutex::new(Server::start(binary)));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        // Producers retry until confirmed: bound the whole run, so a server
        // that never recovers fails the test, not hangs it.
        runtime
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(300),
                    survives_a_server_restart(server.clone()),
                )
                .await
            })
            .map_err(|_| "did not finish within 5 minutes")?;
        Ok(Completion::Completed)
    });
    libtest_mimic::run(&args, vec![trial]).exit_code()
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

async fn survives_a_server_restart(server: Arc<Mutex<Server>>) {
    let url = server.lock().unwrap().url();
    let client = Nats::new(&url).unwrap();
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

    // Let messages flow, then restart the server under load.
    let deadline = Instant::now() + Duration::from_secs(30);
    while handled.lock().unwrap().len() < 200 {
        assert!(
            Instant::now() < deadline,
            "the worker handled too little before the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    {
        let server = server.clone();
        tokio::task::spawn_blocking(move || server.lock().unwrap().restart())
            .await
            .unwrap();
    }
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
        "nats: restart (SIGKILL, then the same store) took {restart_took:?}, then first push confirmed after {to_confirm:?}, \
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
}
