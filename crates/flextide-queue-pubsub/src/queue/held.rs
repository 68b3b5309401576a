//! What a handle remembers of the deliveries it handed out: the message as
//! received, so that `dead_letter`, and a `nack` that uses up the last
//! attempt, can publish it to the dead-letter topic (a receipt is only an
//! ack id; Pub/Sub cannot hand a message's body to an ack id). Settled
//! deliveries are kept a while as such, so a second settle is known to be
//! stale. Entries end a lease after their lease did.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use flextide_queue_core::MessageId;
use gcloud_googleapis::pubsub::v1::PubsubMessage;
use tokio::time::Instant;

/// How long a settled delivery is remembered.
const SETTLED_FOR: Duration = Duration::from_secs(600);

/// Entries past which expired ones are swept on insert.
const SWEEP_ABOVE: usize = 1024;

#[derive(Debug, Clone)]
pub(super) enum Known {
    /// Handed out by this handle and not settled through it.
    Live {
        original: Arc<PubsubMessage>,
        id: MessageId,
    },
    /// Settled through this handle.
    Settled,
}

#[derive(Debug)]
struct Entry {
    known: Known,
    until: Instant,
}

#[derive(Debug, Default)]
pub(super) struct Held {
    map: Mutex<HashMap<String, Entry>>,
}

impl Held {
    pub(super) fn insert(
        &self,
        ack_id: &str,
        original: Arc<PubsubMessage>,
        id: MessageId,
        lease: Duration,
    ) {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap();
        if map.len() >= SWEEP_ABOVE {
            map.retain(|_, e| e.until > now);
        }
        map.insert(
            ack_id.to_owned(),
            Entry {
                known: Known::Live { original, id },
                until: now + lease * 2,
            },
        );
    }

    pub(super) fn get(&self, ack_id: &str) -> Option<Known> {
        self.map
            .lock()
            .unwrap()
            .get(ack_id)
            .map(|e| e.known.clone())
    }

    /// Marks a delivery settled through this handle.
    pub(super) fn settled(&self, ack_id: &str) {
        let until = Instant::now() + SETTLED_FOR;
        self.map.lock().unwrap().insert(
            ack_id.to_owned(),
            Entry {
                known: Known::Settled,
                until,
            },
        );
    }

    /// Forgets a delivery given back (its ack id may still be refused or
    /// accepted by the server; this handle no longer claims to know).
    pub(super) fn forget(&self, ack_id: &str) {
        self.map.lock().unwrap().remove(ack_id);
    }

    /// Keeps a live delivery's entry for `by` (and one more lease) from now.
    pub(super) fn extend(&self, ack_id: &str, by: Duration, lease: Duration) {
        if let Some(e) = self.map.lock().unwrap().get_mut(ack_id)
            && matches!(e.known, Known::Live { .. })
        {
            e.until = Instant::now() + by + lease;
        }
    }

    pub(super) fn clear(&self) {
        self.map.lock().unwrap().clear();
    }
}
