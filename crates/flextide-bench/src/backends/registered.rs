//! Any backend the facade's registry opens but this bench has no module
//! for: the library workloads only, no raw-client baseline. Its server is
//! the URL in `FLEXTIDE_TEST_<NAME>_URL`, as for the conformance suite, so
//! a new backend is measured without touching the bench.

use std::sync::Arc;

use async_trait::async_trait;
use flextide_queue::{Connector, QueueProvider};

use super::{Backend, options};
use crate::driver::{Driver, Res};

/// A registered backend reached through its connector.
#[derive(Debug)]
pub(crate) struct Registered {
    connector: Arc<dyn Connector>,
    url: String,
}

impl Registered {
    /// The backend `name` of the registry, at `FLEXTIDE_TEST_<NAME>_URL`.
    pub(crate) fn connect(name: &str) -> Res<Self> {
        let registry = flextide_queue::registry();
        let connector = registry.by_name(name).map_err(|_| "not built")?.clone();
        let var = format!("FLEXTIDE_TEST_{}_URL", name.to_ascii_uppercase());
        let url = std::env::var(&var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .or_else(|| connector.default_url().map(str::to_owned))
            .ok_or_else(|| format!("set {var} to measure {name}"))?;
        Ok(Registered { connector, url })
    }
}

#[async_trait]
impl Backend for Registered {
    fn name(&self) -> &'static str {
        self.connector.name()
    }

    async fn info(&self) -> Vec<(String, String)> {
        vec![("server".into(), flextide_queue::redact_url(&self.url))]
    }

    async fn library(&self, queue: &str) -> Res<Arc<dyn QueueProvider>> {
        Ok(self.connector.open(&self.url, queue, options()).await?)
    }

    async fn drop_library(&self, queue: &str) -> Res<()> {
        let q = self.library(queue).await?;
        q.purge().await?;
        if q.capabilities().dead_letters {
            q.purge_dead_letters().await?;
        }
        Ok(())
    }

    async fn raw(&self, _queue: &str) -> Res<Option<Arc<dyn Driver>>> {
        Ok(None)
    }
}
