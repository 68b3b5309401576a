//! The in-memory backend: the library only (there is no client to compare
//! with); it shows the cost of the library and the worker themselves.

use std::sync::Arc;

use async_trait::async_trait;
use flextide_queue_core::QueueProvider;
use flextide_queue_memory::MemoryBroker;

use super::{Backend, options};
use crate::driver::{Driver, Res};

/// One broker for the whole run.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    broker: MemoryBroker,
}

#[async_trait]
impl Backend for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn info(&self) -> Vec<(String, String)> {
        vec![("durability".into(), "none (process memory)".into())]
    }

    async fn library(&self, queue: &str) -> Res<Arc<dyn QueueProvider>> {
        Ok(Arc::new(self.broker.open(queue, options())?))
    }

    async fn drop_library(&self, queue: &str) -> Res<()> {
        self.broker.drop_queue(queue);
        Ok(())
    }

    async fn raw(&self, _queue: &str) -> Res<Option<Arc<dyn Driver>>> {
        Ok(None)
    }
}
