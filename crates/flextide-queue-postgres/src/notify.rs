//! One LISTEN connection per backend, waking the `pop`s that wait on a queue.
//!
//! Pushes run `pg_notify(channel, queue_name)` in their own statement, so a
//! notification goes out when the push commits. The listener task routes it
//! to the [`Notify`] of that queue name. Notifications can be missed (while
//! the listener reconnects), so waiting pops poll as well.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::Notify;

/// Routes notifications to waiting pops; owns the listener task.
pub(crate) struct Notifier {
    pool: PgPool,
    channel: String,
    queues: Mutex<HashMap<String, Weak<Notify>>>,
    started: AtomicBool,
    shutdown: Arc<Notify>,
}

impl Notifier {
    /// A notifier whose listener (started on first use) takes its one
    /// connection from `pool`, a private pool of size 1.
    pub(crate) fn new(pool: PgPool, channel: String) -> Arc<Self> {
        Arc::new(Notifier {
            pool,
            channel,
            queues: Mutex::new(HashMap::new()),
            started: AtomicBool::new(false),
            shutdown: Arc::new(Notify::new()),
        })
    }

    /// The wake-up handle of queue `name`, shared by its handles here.
    pub(crate) fn handle(&self, name: &str) -> Arc<Notify> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = queues.get(name).and_then(Weak::upgrade) {
            return n;
        }
        // Forget queues nobody holds any more.
        queues.retain(|_, w| w.strong_count() > 0);
        let n = Arc::new(Notify::new());
        queues.insert(name.to_owned(), Arc::downgrade(&n));
        n
    }

    /// Starts the listener task if it is not running yet.
    pub(crate) fn ensure_started(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        let pool = self.pool.clone();
        let channel = self.channel.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.notified() => {}
                _ = listen(weak, pool.clone(), channel) => {}
            }
            pool.close().await;
        });
    }

    fn wake(&self, name: &str) {
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = queues.get(name).and_then(Weak::upgrade) {
            n.notify_waiters();
        }
    }

    fn wake_all(&self) {
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        for n in queues.values().filter_map(Weak::upgrade) {
            n.notify_waiters();
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        // notify_one stores a permit, so the task stops even if it is not
        // waiting yet.
        self.shutdown.notify_one();
    }
}

/// Listens until the notifier is dropped, reconnecting on failure.
async fn listen(notifier: Weak<Notifier>, pool: PgPool, channel: String) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listen_once(&notifier, &pool, &channel, &mut backoff).await {
            Ok(()) => return, // the notifier is gone
            Err(e) => {
                tracing::debug!(error = %e, "flextide-queue-postgres: listener failed; reconnecting")
            }
        }
        // Whatever was notified meanwhile is lost: let every waiter poll.
        match notifier.upgrade() {
            Some(n) => n.wake_all(),
            None => return,
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen_once(
    notifier: &Weak<Notifier>,
    pool: &PgPool,
    channel: &str,
    backoff: &mut Duration,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    *backoff = Duration::from_millis(100);
    // Notifications sent before LISTEN took effect were missed.
    match notifier.upgrade() {
        Some(n) => n.wake_all(),
        None => return Ok(()),
    }
    loop {
        let got = listener.try_recv().await?;
        let Some(n) = notifier.upgrade() else {
            return Ok(());
        };
        match got {
            Some(note) => n.wake(note.payload()),
            // The connection was lost and re-established: anything may have been missed.
            None => n.wake_all(),
        }
    }
}
