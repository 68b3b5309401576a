//! [`HandleRegistry`]: the handles a harness opened, so it can reach the
//! backend's own type behind an `Arc<dyn QueueProvider>` (to break its
//! connection, to write with its client) without keeping it alive.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, Weak},
};

/// The handles a harness opened, by queue name, held weakly: a handle the
/// case dropped is gone from here too.
///
/// ```
/// use std::sync::Arc;
/// use flextide_queue_conformance::HandleRegistry;
///
/// let handles = HandleRegistry::<String>::default();
/// let q = Arc::new("a handle".to_owned());
/// handles.add("orders", &q);
/// assert_eq!(handles.live("orders").len(), 1);
/// drop(q);
/// assert!(handles.any("orders").is_none());
/// ```
pub struct HandleRegistry<T> {
    by_queue: Mutex<HashMap<String, Vec<Weak<T>>>>,
}

impl<T> Default for HandleRegistry<T> {
    fn default() -> Self {
        HandleRegistry {
            by_queue: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> fmt::Debug for HandleRegistry<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queues = self.by_queue.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("HandleRegistry")
            .field("queues", &queues)
            .finish()
    }
}

impl<T> HandleRegistry<T> {
    /// Records `handle` as one of queue `name`'s (and forgets the dropped ones).
    pub fn add(&self, name: &str, handle: &Arc<T>) {
        let mut map = self.by_queue.lock().unwrap();
        let list = map.entry(name.to_owned()).or_default();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(handle));
    }

    /// The handles of queue `name` that are still open.
    pub fn live(&self, name: &str) -> Vec<Arc<T>> {
        self.by_queue
            .lock()
            .unwrap()
            .get(name)
            .map(|l| l.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default()
    }

    /// One open handle of queue `name`, if any.
    pub fn any(&self, name: &str) -> Option<Arc<T>> {
        self.by_queue
            .lock()
            .unwrap()
            .get(name)
            .and_then(|l| l.iter().find_map(Weak::upgrade))
    }

    /// Forgets queue `name` (its cleanup).
    pub fn forget(&self, name: &str) {
        self.by_queue.lock().unwrap().remove(name);
    }
}
