//! In-process wake-ups: a push through this process wakes the pops waiting
//! on the same queue at once, instead of at their next poll.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, PoisonError, Weak},
};

use tokio::sync::Notify;

/// The notifier shared by every handle of the queue `name` in this process.
///
/// Keyed by name only: two databases holding a queue of the same name share
/// it, which costs a spurious poll, never a missed message (pops poll anyway).
pub(crate) fn notifier(name: &str) -> Arc<Notify> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Weak<Notify>>>> = OnceLock::new();
    let mut map = REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(existing) = map.get(name).and_then(Weak::upgrade) {
        return existing;
    }
    if map.len() >= 1024 {
        map.retain(|_, weak| weak.strong_count() > 0);
    }
    let fresh = Arc::new(Notify::new());
    map.insert(name.to_owned(), Arc::downgrade(&fresh));
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_same_notifier() {
        let a = notifier("notify-test-a");
        let b = notifier("notify-test-a");
        let c = notifier("notify-test-c");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
