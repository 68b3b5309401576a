//! Opening a SQLite queue by URL, for the facade's registry.

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

flextide_queue_sql::connector! {
    SqliteConnector {
        name: crate::BACKEND,
        aliases: &[],
        schemes: SCHEMES,
        // A file in the working directory, created when missing.
        default_url: Some("sqlite://flextide.db?mode=rwc"),
        example_url: "sqlite://flextide.db?mode=rwc",
        open(url, queue, options) => SqliteQueue::connect(url, queue, options),
        admin: crate::admin,
    }
}

#[cfg(test)]
mod tests {
    use flextide_queue_core::{Connector, Message, QueueOptions};
    use flextide_queue_sql::test_support::check_schemes;

    use super::*;

    #[test]
    fn schemes_are_the_crate_constant() {
        let default = SqliteConnector.default_url().unwrap();
        check_schemes(&SqliteConnector, SCHEMES, default, "mysql://u@h/db");
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
