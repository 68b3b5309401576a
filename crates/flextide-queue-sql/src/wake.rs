//! In-process wake-ups shared by every handle of one queue.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex, PoisonError, Weak},
};

use tokio::sync::Notify;

static WAKERS: LazyLock<Mutex<HashMap<String, Weak<Notify>>>> = LazyLock::new(Default::default);

/// The notifier shared by every handle whose `key` is the same in this
/// process (the queue's name, with the database where several can hold it).
/// A push wakes the pops waiting on it at once instead of at their next poll.
pub fn waker(key: &str) -> Arc<Notify> {
    let mut map = WAKERS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(existing) = map.get(key).and_then(Weak::upgrade) {
        return existing;
    }
    // Forget queues whose handles are all gone, so the map stays small.
    if map.len() >= 1024 {
        map.retain(|_, w| w.strong_count() > 0);
    }
    let notify = Arc::new(Notify::new());
    map.insert(key.to_owned(), Arc::downgrade(&notify));
    notify
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_shares_one_notifier() {
        let a = waker("wake-test-a");
        let b = waker("wake-test-a");
        let c = waker("wake-test-c");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
