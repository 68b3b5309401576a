//! The whole conformance suite through the compressing wrapper over the
//! in-memory backend, with every payload compressed (threshold 0, even when
//! it grows): the wrapper keeps the contract of the queue underneath.

use std::sync::Arc;

use flextide_queue_compression::{Compressed, Compression};
use flextide_queue_conformance::{
    Connect, Harness, HarnessSettings, async_trait,
    core::{QueueError, QueueOptions, QueueProvider},
};
use flextide_queue_memory::MemoryBroker;

struct Wrapped(MemoryBroker);

#[async_trait]
impl Harness for Wrapped {
    async fn open(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>, QueueError> {
        let inner: Arc<dyn QueueProvider> = Arc::new(self.0.open(name, options)?);
        let every = Compression::default().threshold(0).only_if_smaller(false);
        Ok(Arc::new(Compressed::new(inner, every)))
    }

    async fn cleanup(&self, name: &str) -> Result<(), QueueError> {
        self.0.drop_queue(name);
        Ok(())
    }

    async fn leftovers(&self, name: &str) -> Result<Option<Vec<String>>, QueueError> {
        let held = self
            .0
            .held(name)
            .filter(|s| s.depth + s.in_flight + s.delayed + s.dead_lettered > 0);
        Ok(Some(
            held.map(|s| format!("queue {name}: {s:?}"))
                .into_iter()
                .collect(),
        ))
    }

    fn settings(&self) -> HarnessSettings {
        HarnessSettings {
            lists_leftovers: true,
            ..HarnessSettings::default()
        }
    }
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run("compressed-memory", || async {
        Connect::Ready(Wrapped(MemoryBroker::new()))
    })
}
