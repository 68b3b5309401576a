//! Opening a PostgreSQL queue by URL, for the facade's registry.

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

flextide_queue_sql::connector! {
    PostgresConnector {
        name: crate::BACKEND,
        aliases: &["postgresql"],
        schemes: SCHEMES,
        default_url: None,
        example_url: "postgres://user:password@127.0.0.1:5432/app",
        // `connect` reports a URL it cannot parse without quoting it, and
        // driver errors carry no connection options: no password leaks.
        open(url, queue, options) => PostgresQueue::connect(url, queue, options),
        admin: crate::admin,
    }
}

#[cfg(test)]
mod tests {
    use flextide_queue_sql::test_support::{
        check_open_hides_password, check_refused_fast, check_schemes,
    };

    use super::*;

    #[test]
    fn schemes_are_the_crate_constant() {
        check_schemes(
            &PostgresConnector,
            SCHEMES,
            "POSTGRES://u@h/db",
            "sqlite::memory:",
        );
    }

    #[tokio::test]
    async fn errors_never_show_the_password() {
        let urls = [
            "postgres://app:s3cret-pw@127.0.0.1:1/app?sslmode=bogus",
            "postgres://app:s3cret-pw@[::1/app",
            "postgres://app:s3cret-pw@127.0.0.1:1/app",
        ];
        check_open_hides_password(&PostgresConnector, &urls).await;
    }

    #[tokio::test]
    async fn refused_connections_fail_at_once() {
        check_refused_fast(&PostgresConnector, |port| {
            format!("postgres://app@127.0.0.1:{port}/app")
        })
        .await;
    }
}
