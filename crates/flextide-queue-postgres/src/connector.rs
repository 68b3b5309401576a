//! Opening a PostgreSQL queue by URL, for the facade's registry.

use std::sync::Arc;

use async_trait::async_trait;
use flextide_queue_core::{Connector, QueueOptions, QueueProvider, Result};

use crate::{PostgresQueue, SCHEMES};

/// Opens PostgreSQL queues from `postgres://` (or `postgresql://`) URLs,
/// each on its own pool with the default [`PostgresConfig`](crate::PostgresConfig).
/// The tables must exist: see [`migrate`](crate::migrate).
///
/// ```
/// use flextide_queue_core::Connector;
/// use flextide_queue_postgres::PostgresConnector;
///
/// assert!(PostgresConnector.accepts("postgresql://app@db/app"));
/// assert!(!PostgresConnector.accepts("mysql://app@db/app"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct PostgresConnector;

#[async_trait]
impl Connector for PostgresConnector {
    fn name(&self) -> &'static str {
        crate::BACKEND
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["postgresql"]
    }

    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    fn url_vars(&self) -> &'static [&'static str] {
        &["DATABASE_URL"]
    }

    fn example_url(&self) -> &'static str {
        "postgres://user:password@127.0.0.1:5432/app"
    }

    async fn open(
        &self,
        url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>> {
        // `connect` reports a URL it cannot parse without quoting it, and
        // driver errors carry no connection options: no password leaks.
        Ok(Arc::new(PostgresQueue::connect(url, queue, options).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_the_crate_constant() {
        assert_eq!(PostgresConnector.schemes(), SCHEMES);
        assert!(PostgresConnector.accepts("POSTGRES://u@h/db"));
        assert!(!PostgresConnector.accepts("sqlite::memory:"));
    }

    #[tokio::test]
    async fn errors_never_show_the_password() {
        for url in [
            "postgres://app:s3cret-pw@127.0.0.1:1/app?sslmode=bogus",
            "postgres://app:s3cret-pw@[::1/app",
            "postgres://app:s3cret-pw@127.0.0.1:1/app",
        ] {
            let e = PostgresConnector
                .open(url, "q", QueueOptions::default())
                .await
                .expect_err(url)
                .to_string();
            assert!(!e.contains("s3cret-pw"), "{url}: {e}");
        }
    }
}
