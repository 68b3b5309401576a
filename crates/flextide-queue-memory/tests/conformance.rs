//! The whole conformance suite against the in-memory backend.

use std::sync::Arc;

use flextide_queue_conformance::{
    Connect, Harness, HarnessSettings, async_trait,
    core::{QueueError, QueueOptions, QueueProvider},
};
use flextide_queue_memory::MemoryBroker;

struct Memory(MemoryBroker);

#[async_trait]
impl Harness for Memory {
    async fn open(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>, QueueError> {
        Ok(Arc::new(self.0.open(name, options)?))
    }

    async fn cleanup(&self, name: &str) -> Result<(), QueueError> {
        self.0.drop_queue(name);
        Ok(())
    }

    /// A queue with messages or dead letters; an empty one an open handle
    /// keeps is no leftover.
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
    flextide_queue_conformance::run("memory", || async {
        Connect::Ready(Memory(MemoryBroker::new()))
    })
}
