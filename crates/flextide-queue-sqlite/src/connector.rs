//! Opening a SQLite queue by URL, for the facade's registry.

use std::sync::Arc;

use async_trait::async_trait;
use flextide_queue_core::{Connector, QueueOptions, QueueProvider, Result};

use crate::{SCHEMES, SqliteQueue};

/// Opens SQLite queues from `sqlite:` URLs (`sqlite://jobs.db?mode=rwc`,
/// `sqlite::memory:`), each on a pool of its own, creating the tables when
/// missing (see [`SqliteQueue::connect`]).
///
/// ```
/// use flextide_queue_core::Connector;
/// use flextide_queue_sqlite::SqliteConnector;
///
/// assert!(SqliteConnector.accepts("sqlite::memory:"));
/// assert!(!SqliteConnector.accepts("postgres://app@db/app"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteConnector;

#[async_trait]
impl Connector for SqliteConnector {
    fn name(&self) -> &'static str {
        crate::BACKEND
    }

    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    fn url_vars(&self) -> &'static [&'static str] {
        &["DATABASE_URL"]
    }

    /// A file in the working directory, created when missing.
    fn default_url(&self) -> Option<&'static str> {
        Some("sqlite://flextide.db?mode=rwc")
    }

    fn example_url(&self) -> &'static str {
        "sqlite://flextide.db?mode=rwc"
    }

    async fn open(
        &self,
        url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>> {
        Ok(Arc::new(SqliteQueue::connect(url, queue, options).await?))
    }
}

#[cfg(test)]
mod tests {
    use flextide_queue_core::Message;

    use super::*;

    #[test]
    fn schemes_are_the_crate_constant() {
        assert_eq!(SqliteConnector.schemes(), SCHEMES);
        assert!(SqliteConnector.accepts(SqliteConnector.default_url().unwrap()));
        assert!(!SqliteConnector.accepts("mysql://u@h/db"));
    }

    #[tokio::test]
    async fn opens_an_in_memory_queue() {
        let q = SqliteConnector
            .open("sqlite::memory:", "connector", QueueOptions::default())
            .await
            .unwrap();
        q.push(Message::new("hi")).await.unwrap();
        assert_eq!(q.stats().await.unwrap().depth, 1);
    }
}
