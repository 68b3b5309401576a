//! Opening a MySQL or MariaDB queue by URL, for the facade's registry.

use std::sync::Arc;

use async_trait::async_trait;
use flextide_queue_core::{Connector, QueueOptions, QueueProvider, Result};

use crate::{MySqlQueue, SCHEMES};

/// Opens MySQL and MariaDB queues from `mysql://` (or `mariadb://`) URLs,
/// each on a pool of its own. The tables must exist: see
/// [`migrate`](crate::migrate).
///
/// ```
/// use flextide_queue_core::Connector;
/// use flextide_queue_mysql::MySqlConnector;
///
/// assert!(MySqlConnector.accepts("mariadb://app@db:3306/app"));
/// assert!(!MySqlConnector.accepts("postgres://app@db/app"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MySqlConnector;

#[async_trait]
impl Connector for MySqlConnector {
    fn name(&self) -> &'static str {
        crate::BACKEND
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["mariadb"]
    }

    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    fn url_vars(&self) -> &'static [&'static str] {
        &["DATABASE_URL"]
    }

    fn example_url(&self) -> &'static str {
        "mysql://user:password@127.0.0.1:3306/app"
    }

    async fn open(
        &self,
        url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>> {
        // sqlx speaks the MySQL protocol to MariaDB too, but knows only the
        // mysql scheme.
        let url = match crate::core::url_scheme(url) {
            Some(scheme) if scheme.eq_ignore_ascii_case("mariadb") => {
                format!("mysql{}", &url[scheme.len()..])
            }
            _ => url.to_owned(),
        };
        // `connect` never quotes the URL in its errors.
        Ok(Arc::new(MySqlQueue::connect(&url, queue, options).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_the_crate_constant() {
        assert_eq!(MySqlConnector.schemes(), SCHEMES);
        assert!(MySqlConnector.accepts("MySQL://u@h/db"));
        assert!(!MySqlConnector.accepts("sqlite::memory:"));
    }

    #[tokio::test]
    async fn errors_never_show_the_password() {
        for url in [
            "mariadb://app:s3cret-pw@127.0.0.1:1/app?ssl-mode=bogus",
            "mysql://app:s3cret-pw@[::1/app",
            "mariadb://app:s3cret-pw@127.0.0.1:1/app",
        ] {
            let e = MySqlConnector
                .open(url, "q", QueueOptions::default())
                .await
                .expect_err(url)
                .to_string();
            assert!(!e.contains("s3cret-pw"), "{url}: {e}");
        }
    }
}
