//! The context a case runs in: its queues, the backend's capabilities.

use std::sync::{Arc, Mutex};

use flextide_queue_core::{Capabilities, QueueOptions, QueueProvider};

use crate::{CaseError, Harness, HarnessSettings, unique_queue_name};

/// What a case gets: fresh queues on the backend under test, its
/// capabilities and settings. Every queue opened here is cleaned up after
/// the case, pass or fail.
pub struct Ctx {
    harness: Arc<dyn Harness>,
    capabilities: Capabilities,
    settings: HarnessSettings,
    case: &'static str,
    opened: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("case", &self.case)
            .field("capabilities", &self.capabilities)
            .finish()
    }
}

impl Ctx {
    /// A context for one case; the runner builds these.
    pub fn new(harness: Arc<dyn Harness>, capabilities: Capabilities, case: &'static str) -> Self {
        let settings = harness.settings();
        Ctx {
            harness,
            capabilities,
            settings,
            case,
            opened: Mutex::new(Vec::new()),
        }
    }

    /// The capabilities the backend declared.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The harness's timing and limits.
    pub fn settings(&self) -> &HarnessSettings {
        &self.settings
    }

    /// A fresh queue with the default options (30 s lease, 10 attempts).
    pub async fn queue(&self) -> Result<Arc<dyn QueueProvider>, CaseError> {
        self.queue_with(QueueOptions::default()).await
    }

    /// A fresh queue with the harness's short lease and these max attempts.
    pub async fn short_lease_queue(
        &self,
        max_attempts: Option<u32>,
    ) -> Result<Arc<dyn QueueProvider>, CaseError> {
        self.queue_with(
            QueueOptions::default()
                .lease(self.settings.short_lease)
                .max_attempts(max_attempts),
        )
        .await
    }

    /// A fresh queue with these options.
    pub async fn queue_with(
        &self,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>, CaseError> {
        let name = unique_queue_name(self.case);
        self.opened.lock().unwrap().push(name.clone());
        Ok(self.harness.open(&name, options).await?)
    }

    /// A fresh name for this case (`ft_<case>_<random>`), for cases that
    /// build related names (a suffix, another letter case) themselves.
    pub fn fresh_name(&self) -> String {
        unique_queue_name(self.case)
    }

    /// Opens a queue by a name the case chose (valid, and unused by other
    /// runs: build it from [`Ctx::fresh_name`]); it is cleaned up like the
    /// others.
    pub async fn queue_named(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>, CaseError> {
        self.opened.lock().unwrap().push(name.to_owned());
        Ok(self.harness.open(name, options).await?)
    }

    /// A second handle on an existing queue (another consumer, with its own
    /// connection where the backend opens one per handle).
    pub async fn reopen(
        &self,
        queue: &Arc<dyn QueueProvider>,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>, CaseError> {
        Ok(self.harness.open(queue.queue_name(), options).await?)
    }

    /// Opens a queue by exact name (for the invalid-name cases); not cleaned
    /// up, since a valid name here is a bug in the case.
    pub async fn open_raw(
        &self,
        name: &str,
    ) -> Result<Arc<dyn QueueProvider>, flextide_queue_core::QueueError> {
        self.harness.open(name, QueueOptions::default()).await
    }

    /// Breaks the queue's connections (see [`Harness::disrupt`]).
    pub async fn disrupt(&self, queue: &Arc<dyn QueueProvider>) -> Result<bool, CaseError> {
        Ok(self.harness.disrupt(queue).await?)
    }

    /// Writes an entry into `queue` with the broker's own client (see
    /// [`Harness::write_foreign`]); fails the case if the harness cannot.
    pub async fn write_foreign(
        &self,
        queue: &Arc<dyn QueueProvider>,
        entry: crate::ForeignEntry,
    ) -> Result<(), CaseError> {
        if self.harness.write_foreign(queue, entry.clone()).await? {
            Ok(())
        } else {
            Err(CaseError(format!(
                "HarnessSettings says the harness writes {entry:?}, but Harness::write_foreign returned false"
            )))
        }
    }

    /// What the backend still holds for the queue `name` (see
    /// [`Harness::leftovers`]); fails the case if the harness cannot list it.
    pub async fn leftovers(&self, name: &str) -> Result<Vec<String>, CaseError> {
        match self.harness.leftovers(name).await? {
            Some(left) => Ok(left),
            None => Err(CaseError(
                "HarnessSettings::lists_leftovers is set, but Harness::leftovers returned None"
                    .into(),
            )),
        }
    }

    /// Removes every queue this case opened; the runner calls it.
    pub async fn cleanup(&self) -> Result<(), CaseError> {
        let names = std::mem::take(&mut *self.opened.lock().unwrap());
        let mut failed = Vec::new();
        for name in names {
            if let Err(e) = self.harness.cleanup(&name).await {
                failed.push(format!("{name}: {e}"));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(CaseError(format!("cleanup failed: {}", failed.join("; "))))
        }
    }
}
