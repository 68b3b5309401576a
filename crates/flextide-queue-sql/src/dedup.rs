//! Unique pushes (contract clause 16) as every SQL backend makes them: a
//! row per (queue, dedup id) in `flextide_queue_dedup` holds the first
//! message's id and when the window ends. A push claims its dedup ids there
//! (an upsert, in the transaction or statement that inserts the message)
//! and the row says whether it won:
//!
//! - no row, or one whose window ended: the row is (re)written with this
//!   message's id, `duplicates` 0, and the message is inserted;
//! - a row still in its window: `duplicates` goes up by one, its message id
//!   stays, and the message is not inserted.
//!
//! So `duplicates = 0` after the upsert means "this push won", with no
//! second read of a table another transaction may have just written, and a
//! retry of the very same message (same id) is a duplicate too. Every
//! duplicate writes the row, which also means a locking engine serialises
//! concurrent pushes of one id on it. Each engine supplies its upsert; this
//! module holds what they share: the checks, the window, the batch
//! bookkeeping (a dedup id repeated inside one batch) and when to sweep
//! expired rows.

use std::{
    collections::HashMap,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use flextide_queue_core::{Message, MessageId, Pushed, QueueError, QueueOptions, Result};

use crate::{MAX_DELAY, millis};

/// Longest dedup id, in characters (the MySQL key column's size; the same
/// on every engine so that a producer can move between them).
pub const MAX_DEDUP_ID_CHARS: usize = 255;

/// Expired dedup rows one sweep deletes at most.
pub const SWEEP_LIMIT: i64 = 1000;

/// A handle sweeps expired dedup rows after this many unique pushes…
const SWEEP_EVERY_PUSHES: u32 = 100;

/// …or when this long has passed since its last sweep (and on its first
/// unique push).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Refuses a dedup id the tables cannot key: longer than
/// [`MAX_DEDUP_ID_CHARS`].
pub fn check_dedup_id(backend: &'static str, message: &Message) -> Result<()> {
    match &message.dedup_id {
        Some(id) if id.chars().count() > MAX_DEDUP_ID_CHARS => Err(QueueError::invalid_message(
            backend,
            format!("dedup id longer than {MAX_DEDUP_ID_CHARS} characters"),
        )),
        _ => Ok(()),
    }
}

/// The dedup window a queue opened with `options` applies: its
/// `dedup_window`, at most [`MAX_DELAY`] (100 years) so that an expiry time
/// never overflows.
pub fn dedup_window(options: &QueueOptions) -> Duration {
    options.dedup_window.min(MAX_DELAY)
}

/// [`dedup_window`] in milliseconds, for binding.
pub fn dedup_window_ms(options: &QueueOptions) -> i64 {
    millis(dedup_window(options))
}

/// The outcome of a claimed dedup row, as the upsert left it: the message
/// id it holds and its `duplicates` count.
pub fn claim_outcome(message_id: String, duplicates: i64) -> Pushed {
    if duplicates == 0 {
        Pushed::Enqueued(MessageId::from(message_id))
    } else {
        Pushed::Duplicate(MessageId::from(message_id))
    }
}

/// The bookkeeping of a push of several messages with dedup ids: which
/// dedup ids to claim (the first message of each, in the order of the ids,
/// so concurrent batches lock rows in one order), which messages to insert,
/// and the id each message's place returns.
#[derive(Debug)]
pub struct UniqueBatch {
    backend: &'static str,
    /// Each message's dedup id.
    keys: Vec<Option<String>>,
    /// For each message: the index of the earlier message of the batch
    /// with the same dedup id, if any.
    repeat_of: Vec<Option<usize>>,
    /// Dedup id → index of its first message.
    firsts: HashMap<String, usize>,
    /// The outcome of each claimed dedup id.
    outcomes: HashMap<String, Pushed>,
}

impl UniqueBatch {
    /// Sorts the messages of a batch out by their dedup ids, in batch order.
    pub fn new<'k>(backend: &'static str, keys: impl IntoIterator<Item = Option<&'k str>>) -> Self {
        let keys: Vec<Option<String>> = keys.into_iter().map(|k| k.map(str::to_owned)).collect();
        let mut firsts = HashMap::new();
        let repeat_of = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let key = key.as_ref()?;
                match firsts.get(key) {
                    Some(&first) => Some(first),
                    None => {
                        firsts.insert(key.clone(), i);
                        None
                    }
                }
            })
            .collect();
        UniqueBatch {
            backend,
            keys,
            repeat_of,
            firsts,
            outcomes: HashMap::new(),
        }
    }

    /// Whether any message has a dedup id.
    pub fn has_keys(&self) -> bool {
        !self.firsts.is_empty()
    }

    /// The dedup ids to claim, each with the index of its first message,
    /// sorted by dedup id.
    pub fn claims(&self) -> Vec<(&str, usize)> {
        let mut claims: Vec<(&str, usize)> =
            self.firsts.iter().map(|(k, &i)| (k.as_str(), i)).collect();
        claims.sort_unstable();
        claims
    }

    /// Whether message `index` repeats the dedup id of an earlier message of
    /// the batch: it is never sent to the database.
    pub fn is_repeat(&self, index: usize) -> bool {
        self.repeat_of[index].is_some()
    }

    /// Records what the claim of `dedup_id` found.
    pub fn claimed(&mut self, dedup_id: &str, outcome: Pushed) {
        self.outcomes.insert(dedup_id.to_owned(), outcome);
    }

    /// Whether message `index` is to be inserted: it has no dedup id, or it
    /// is the first of its dedup id and the claim was won.
    pub fn inserts(&self, index: usize) -> bool {
        if self.is_repeat(index) {
            return false;
        }
        match &self.keys[index] {
            None => true,
            Some(key) => matches!(self.outcomes.get(key), Some(Pushed::Enqueued(_))),
        }
    }

    /// What the push of message `index` (whose id is `own`) did: enqueued
    /// under its own id, or a duplicate of the message holding its dedup id
    /// (which may be an earlier message of this batch). Every claim must be
    /// recorded.
    pub fn outcome(&self, index: usize, own: &MessageId) -> Result<Pushed> {
        let Some(key) = &self.keys[index] else {
            return Ok(Pushed::Enqueued(own.clone()));
        };
        let claimed = self.outcomes.get(key).ok_or_else(|| {
            QueueError::backend_error(
                self.backend,
                false,
                format!("the claim of dedup id {key:?} returned nothing"),
            )
        })?;
        Ok(match (self.repeat_of[index], claimed) {
            (None, outcome) => outcome.clone(),
            (Some(_), outcome) => Pushed::Duplicate(outcome.id().clone()),
        })
    }
}

/// When a handle sweeps expired dedup rows: on its first unique push, then
/// after every 100 unique pushes or a minute, whichever comes first. Each
/// sweep deletes at most [`SWEEP_LIMIT`] rows (of any queue), so the table
/// holds about the ids of one window. Correctness never depends on it: an
/// expired row is taken over by the next push of its id.
#[derive(Debug, Default)]
pub struct ExpiredSweep {
    pushes: AtomicU32,
    last: Mutex<Option<Instant>>,
}

impl ExpiredSweep {
    /// Counts one unique push; true when this push should sweep.
    pub fn due(&self) -> bool {
        let pushes = self.pushes.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let due = pushes >= SWEEP_EVERY_PUSHES || last.is_none_or(|at| at.elapsed() >= SWEEP_EVERY);
        if due {
            *last = Some(Instant::now());
            self.pushes.store(0, Ordering::Relaxed);
        }
        due
    }

    /// Logs the outcome of a sweep; a failure is no error of the push.
    pub fn report(backend: &'static str, outcome: Result<u64>) {
        match outcome {
            Ok(n) => tracing::debug!(backend, deleted = n, "expired dedup rows swept"),
            Err(error) => {
                tracing::debug!(backend, %error, "could not sweep expired dedup rows; the next sweep will")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_repeats_name_their_first() {
        let (a, b, c, d) = (
            Message::new("a").with_dedup_id("k1"),
            Message::new("b").with_dedup_id("k1"),
            Message::new("c").with_dedup_id("k0"),
            Message::new("d"),
        );
        let messages = [a.clone(), b.clone(), c.clone(), d.clone()];
        let mut batch = UniqueBatch::new("t", messages.iter().map(|m| m.dedup_id.as_deref()));
        assert!(batch.has_keys());
        assert_eq!(batch.claims(), [("k0", 2), ("k1", 0)]);
        assert!(batch.is_repeat(1) && !batch.is_repeat(0));
        let earlier = MessageId::from("earlier");
        batch.claimed("k1", Pushed::Enqueued(a.id.clone()));
        batch.claimed("k0", Pushed::Duplicate(earlier.clone()));
        let inserted: Vec<bool> = messages
            .iter()
            .enumerate()
            .map(|(i, _)| batch.inserts(i))
            .collect();
        assert_eq!(inserted, [true, false, false, true]);
        let outcomes: Vec<Pushed> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| batch.outcome(i, &m.id).unwrap())
            .collect();
        assert_eq!(
            outcomes,
            [
                Pushed::Enqueued(a.id.clone()),
                Pushed::Duplicate(a.id.clone()),
                Pushed::Duplicate(earlier),
                Pushed::Enqueued(d.id.clone()),
            ]
        );
    }

    #[test]
    fn outcomes_windows_and_limits() {
        assert_eq!(claim_outcome("x".into(), 0), Pushed::Enqueued("x".into()));
        assert_eq!(claim_outcome("x".into(), 3), Pushed::Duplicate("x".into()));
        let forever = QueueOptions::default().dedup_window(Duration::MAX);
        assert_eq!(dedup_window(&forever), MAX_DELAY);
        assert_eq!(
            dedup_window_ms(&QueueOptions::default().dedup_window(Duration::from_secs(2))),
            2000
        );
        let long = Message::new("x").with_dedup_id("é".repeat(MAX_DEDUP_ID_CHARS + 1));
        assert!(check_dedup_id("t", &long).is_err());
        let ok = Message::new("x").with_dedup_id("é".repeat(MAX_DEDUP_ID_CHARS));
        assert!(check_dedup_id("t", &ok).is_ok());
    }

    #[test]
    fn sweeps_first_then_every_hundred_pushes() {
        let sweep = ExpiredSweep::default();
        assert!(sweep.due());
        let later: Vec<bool> = (0..SWEEP_EVERY_PUSHES).map(|_| sweep.due()).collect();
        assert_eq!(later.iter().filter(|d| **d).count(), 1);
        assert!(later[SWEEP_EVERY_PUSHES as usize - 1]);
    }
}
