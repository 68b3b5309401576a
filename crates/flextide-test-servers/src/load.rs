//! A server restart under load, the same for every backend: producers push
//! confirmed batches and a `flextide-worker` worker consumes while the
//! caller restarts its private server. What must hold afterwards: every
//! message whose push was confirmed is handled at least once (duplicates
//! are allowed and counted), errors seen during the restart are retryable,
//! the worker keeps running and handles messages pushed after the restart,
//! pushes and handling recover in time, and the queue drains to empty.
//! Any of these failing panics; the [`Report`] says how it went.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use flextide_queue_core::{Message, MessageId, QueueError, QueueOptions, QueueProvider};
use flextide_worker::{CancellationToken, HandlerError, Task, Worker, handler_fn};
use tokio::time::Instant;

/// Messages per pushed batch.
const CHUNK: usize = 20;

/// What differs between backends.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Names the run in the report.
    pub label: String,
    /// The lease of the queue (opened with no attempt limit, so that
    /// redeliveries caused by the restart do not turn into dead letters).
    pub lease: Duration,
    /// How many producers push at once.
    pub producers: usize,
    /// How many messages the worker handles before the restart.
    pub handled_before_restart: usize,
    /// How soon after the restart the first push must be confirmed.
    pub confirm_within: Duration,
    /// How soon after the restart the first message must be handled.
    pub handle_within: Duration,
}

impl Settings {
    /// A 10 s lease, two producers, 200 messages handled before the
    /// restart; pushes reconnect on the next call and the worker's fetch
    /// loop backs off up to 5 s between failed pops, so the first push
    /// must be confirmed within 10 s and the first message handled within
    /// 15 s of the restart.
    pub fn new(label: impl Into<String>) -> Settings {
        Settings {
            label: label.into(),
            lease: Duration::from_secs(10),
            producers: 2,
            handled_before_restart: 200,
            confirm_within: Duration::from_secs(10),
            handle_within: Duration::from_secs(15),
        }
    }
}

/// How a [`restart_under_load`] went (it panics if it failed).
#[derive(Debug, Clone)]
pub struct Report {
    /// [`Settings::label`].
    pub label: String,
    /// How long the `restart` closure took.
    pub restart_took: Duration,
    /// From the restart to the first confirmed push.
    pub to_confirm: Duration,
    /// From the restart to the first handled message.
    pub to_handle: Duration,
    /// Messages whose push was confirmed.
    pub confirmed: usize,
    /// Distinct messages handled.
    pub handled: usize,
    /// Distinct messages first handled after the restart.
    pub handled_after_restart: usize,
    /// Handlings beyond the first of a message.
    pub duplicates: u32,
    /// Failed (retryable) pushes that were retried.
    pub push_errors: usize,
    /// What the worker reported: messages processed.
    pub processed: u64,
    /// What the worker reported: failed acknowledgements.
    pub settle_errors: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: restart took {:?}, then first push confirmed after {:?}, first message handled after {:?}; \
             {} confirmed, {} handled ({} after the restart), {} duplicate handlings; \
             {} push retries; worker: {} processed, {} settle errors",
            self.label,
            self.restart_took,
            self.to_confirm,
            self.to_handle,
            self.confirmed,
            self.handled,
            self.handled_after_restart,
            self.duplicates,
            self.push_errors,
            self.processed,
            self.settle_errors,
        )
    }
}

/// When the server was up again, and the first push confirmed and the
/// first message handled after that: how long recovery took.
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

/// Runs `test` on a fresh two-thread runtime, for at most five minutes:
/// producers retry until confirmed, so a server that never recovers fails
/// the test, not hangs it. (The timer is made inside the runtime: it needs
/// its clock.)
pub fn run_bounded(test: impl Future<Output = ()>) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(300), test).await })
        .map_err(|_| "did not finish within 5 minutes".to_owned())
}

/// Runs a worker and `settings.producers` producers on queues from `open`
/// (one queue name, opened with the options given), calls `restart` (on a
/// blocking thread) once the worker has handled enough, keeps pushing 3 s
/// more, then checks what the module documentation says and returns the
/// report. The queues it opened are dropped when it returns; removing the
/// queue is the caller's.
pub async fn restart_under_load<F, Fut>(
    settings: Settings,
    open: F,
    restart: impl FnOnce() + Send + 'static,
) -> Report
where
    F: Fn(QueueOptions) -> Fut,
    Fut: Future<Output = Arc<dyn QueueProvider>>,
{
    let options = QueueOptions::default()
        .lease(settings.lease)
        .max_attempts(None);

    // The worker: counts every time the handler sees a message.
    let handled: Arc<Mutex<HashMap<MessageId, u32>>> = Arc::default();
    let recovery: Arc<Mutex<Recovery>> = Arc::default();
    let consumer = open(options.clone()).await;
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
    for tag in 0..settings.producers {
        producers.push(tokio::spawn(produce(
            open(options.clone()).await,
            stop.clone(),
            recovery.clone(),
            tag,
        )));
    }

    // Let messages flow, then restart the server under load.
    let deadline = Instant::now() + Duration::from_secs(30);
    while handled.lock().unwrap().len() < settings.handled_before_restart {
        assert!(
            Instant::now() < deadline,
            "the worker handled too little before the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    tokio::task::spawn_blocking(restart).await.unwrap();
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
    let to_confirm = to_confirm
        .filter(|d| *d < settings.confirm_within)
        .unwrap_or_else(|| panic!("pushes took too long to recover: {to_confirm:?}"));
    let to_handle = to_handle
        .filter(|d| *d < settings.handle_within)
        .unwrap_or_else(|| panic!("the worker took too long to recover: {to_handle:?}"));

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
    let worker_report = worker.await.unwrap();
    let handled = handled.lock().unwrap().clone();
    // Producers retry a chunk until all of it is confirmed, so whatever
    // reached the queue was confirmed in the end.
    let unexpected = handled.keys().filter(|id| !confirmed.contains(*id)).count();
    assert_eq!(unexpected, 0, "handled messages that were never pushed");
    Report {
        label: settings.label,
        restart_took,
        to_confirm,
        to_handle,
        confirmed: confirmed.len(),
        handled: handled.len(),
        handled_after_restart,
        duplicates: handled.values().map(|n| n - 1).sum(),
        push_errors,
        processed: worker_report.processed,
        settle_errors: worker_report.settle_errors,
    }
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
