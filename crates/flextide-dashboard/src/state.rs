//! What every handler shares: the queues with their sample history, and
//! the dashboard's secrets and switches.

use std::{
    fmt,
    sync::{Arc, Mutex, atomic::AtomicBool},
    time::Duration,
};

use flextide_queue_core::QueueProvider;

use crate::{builder::Counts, history::History};

pub(crate) struct State {
    pub(crate) queues: Vec<Entry>,
    /// The bearer token; `None`: no authentication of our own.
    pub(crate) token: Option<String>,
    /// The session cookie's value after a login (random per process, so a
    /// restart logs everyone out; the token itself is never stored in the
    /// browser).
    pub(crate) session: String,
    /// The CSRF token every state-changing request carries (random per
    /// process, only readable by pages of the dashboard's own origin).
    pub(crate) csrf: String,
    pub(crate) read_only: bool,
    pub(crate) metrics: bool,
    pub(crate) loopback_only: bool,
    /// Where the router is mounted, without a trailing slash ("" at the root).
    pub(crate) base: String,
    pub(crate) sample_every: Duration,
    pub(crate) sampler_started: AtomicBool,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("queues", &self.queues.len())
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl State {
    pub(crate) fn entry(&self, name: &str) -> Option<&Entry> {
        self.queues.iter().find(|e| e.name == name)
    }

    /// A link inside the dashboard. The overview of a dashboard mounted
    /// with `Router::nest` is at the base path itself (axum's nest does not
    /// route the base with a trailing slash).
    pub(crate) fn href(&self, path: &str) -> String {
        if path == "/" && !self.base.is_empty() {
            return self.base.clone();
        }
        format!("{}{path}", self.base)
    }
}

pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) queue: Arc<dyn QueueProvider>,
    pub(crate) counts: Option<Arc<dyn Fn() -> Counts + Send + Sync>>,
    pub(crate) history: Mutex<History>,
}

impl Entry {
    pub(crate) fn new(
        name: String,
        queue: Arc<dyn QueueProvider>,
        counts: Option<Arc<dyn Fn() -> Counts + Send + Sync>>,
    ) -> Self {
        Entry {
            name,
            queue,
            counts,
            history: Mutex::new(History::default()),
        }
    }
}

/// 32 random bytes as hex, from the operating system's generator.
pub(crate) fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
