//! [`MemoryConnector`]: opening in-memory queues by URL (`memory:`), for the
//! facade's registry.
//!
//! Queues opened through the connector live in one process-wide set: two
//! opens of the same name in one program (two `from_env()` calls, a
//! producer and a worker) share one queue for as long as a handle on it
//! lives. A [`MemoryBroker`](crate::MemoryBroker) keeps its own, separate set.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex, Weak},
};

use async_trait::async_trait;
use flextide_queue_core::{
    Connector, QueueError, QueueOptions, QueueProvider, Result, url_scheme, validate_queue_name,
};

use crate::{BACKEND, MemoryQueue, Shared};

/// The URL schemes [`MemoryConnector`] opens.
pub const SCHEMES: &[&str] = &["memory"];

/// Opens in-memory queues: `memory:` is the only URL.
///
/// ```
/// use flextide_queue_memory::{MemoryConnector, core::Connector};
/// assert!(MemoryConnector.accepts("memory:"));
/// assert_eq!(MemoryConnector.default_url(), Some("memory:"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryConnector;

/// The process-wide queues of the connector, by name. Weak, so a queue no
/// handle uses any more is freed.
static QUEUES: LazyLock<Mutex<HashMap<String, Weak<Shared>>>> = LazyLock::new(Mutex::default);

#[async_trait]
impl Connector for MemoryConnector {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    fn url_vars(&self) -> &'static [&'static str] {
        &[]
    }

    fn default_url(&self) -> Option<&'static str> {
        Some("memory:")
    }

    fn example_url(&self) -> &'static str {
        "memory:"
    }

    async fn open(
        &self,
        url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>> {
        let rest = match url_scheme(url) {
            Some(s) if s.eq_ignore_ascii_case("memory") => &url[s.len() + 1..],
            _ => "not memory",
        };
        if !rest.is_empty() && rest != "//" {
            return Err(QueueError::configuration(
                BACKEND,
                "the in-memory backend's only URL is `memory:`",
            ));
        }
        Ok(Arc::new(open_shared(queue, options)?))
    }
}

/// Opens the process-wide queue `name`, creating it if no handle on it lives.
pub(crate) fn open_shared(name: &str, options: QueueOptions) -> Result<MemoryQueue> {
    validate_queue_name(name)?;
    let mut queues = QUEUES.lock().unwrap_or_else(|p| p.into_inner());
    let shared = match queues.get(name).and_then(Weak::upgrade) {
        Some(shared) => shared,
        None => {
            queues.retain(|_, q| q.strong_count() > 0);
            let shared = Arc::new(Shared::new(options.clone()));
            queues.insert(name.to_owned(), Arc::downgrade(&shared));
            shared
        }
    };
    // The process-wide map holds weak references: a drop empties the
    // shared queue, and the entry goes with its last handle.
    Ok(MemoryQueue::from_shared(
        name,
        shared,
        options,
        std::sync::Weak::new(),
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flextide_queue_core::Message;

    use super::*;

    #[tokio::test]
    async fn opens_of_one_name_share_a_queue() {
        let c = MemoryConnector;
        assert!(c.accepts("memory:") && !c.accepts("redis://h"));
        let a = c
            .open("memory:", "shared-by-name", QueueOptions::default())
            .await
            .unwrap();
        let b = c
            .open("memory://", "shared-by-name", QueueOptions::default())
            .await
            .unwrap();
        let other = c
            .open("memory:", "another-name", QueueOptions::default())
            .await
            .unwrap();
        let id = a.push(Message::new("x")).await.unwrap();
        assert!(other.pop(Duration::ZERO).await.unwrap().is_none());
        let d = b.pop(Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(d.message.id, id);
        b.delete(&d.receipt).await.unwrap();
        // Once no handle lives, the name starts afresh.
        drop((a, b));
        let again = c
            .open("memory:", "shared-by-name", QueueOptions::default())
            .await
            .unwrap();
        assert_eq!(again.stats().await.unwrap().depth, 0);
        assert!(matches!(
            c.open("memory:x", "q", QueueOptions::default()).await,
            Err(QueueError::Configuration { .. })
        ));
        assert!(matches!(
            c.open("memory:", "bad name", QueueOptions::default()).await,
            Err(QueueError::InvalidQueueName { .. })
        ));
    }
}
