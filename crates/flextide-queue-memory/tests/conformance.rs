//! The whole conformance suite against the in-memory backend.

use std::sync::Arc;

use flextide_queue_conformance::{
    Connect, Harness, async_trait,
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
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run("memory", || async {
        Connect::Ready(Memory(MemoryBroker::new()))
    })
}
