//! In-process wake-ups: a push wakes the pops waiting on the same queue of
//! the same database in this process at once, whatever pool or handle they
//! use. Other processes find new messages by polling.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, LazyLock, Mutex, Weak},
};

use tokio::sync::Notify;

type Key = (PathBuf, String);

static WAKERS: LazyLock<Mutex<HashMap<Key, Weak<Notify>>>> = LazyLock::new(Default::default);

/// The notifier shared by every handle on `queue` of the database `db`.
pub(crate) fn waker(db: PathBuf, queue: &str) -> Arc<Notify> {
    let mut map = WAKERS.lock().unwrap_or_else(|e| e.into_inner());
    let key = (db, queue.to_owned());
    if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
        return existing;
    }
    // Forget queues whose handles are all gone, so the map stays small.
    map.retain(|_, w| w.strong_count() > 0);
    let notify = Arc::new(Notify::new());
    map.insert(key, Arc::downgrade(&notify));
    notify
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_shares_one_notifier() {
        let a = waker(PathBuf::from("/x.db"), "q");
        let b = waker(PathBuf::from("/x.db"), "q");
        let c = waker(PathBuf::from("/x.db"), "other");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
