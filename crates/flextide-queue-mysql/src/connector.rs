//! Opening a MySQL or MariaDB queue by URL, for the facade's registry.

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

flextide_queue_sql::connector! {
    MySqlConnector {
        name: crate::BACKEND,
        aliases: &["mariadb"],
        schemes: SCHEMES,
        default_url: None,
        example_url: "mysql://user:password@127.0.0.1:3306/app",
        // `connect` never quotes the URL in its errors.
        open(url, queue, options) => MySqlQueue::connect(&mysql_url(url), queue, options),
        admin: crate::admin,
    }
}

/// `url` with the `mysql` scheme: sqlx speaks the MySQL protocol to MariaDB
/// too, but knows only that scheme.
fn mysql_url(url: &str) -> String {
    match crate::core::url_scheme(url) {
        Some(scheme) if scheme.eq_ignore_ascii_case("mariadb") => {
            format!("mysql{}", &url[scheme.len()..])
        }
        _ => url.to_owned(),
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
            &MySqlConnector,
            SCHEMES,
            "MySQL://u@h/db",
            "sqlite::memory:",
        );
    }

    #[tokio::test]
    async fn errors_never_show_the_password() {
        let urls = [
            "mariadb://app:s3cret-pw@127.0.0.1:1/app?ssl-mode=bogus",
            "mysql://app:s3cret-pw@[::1/app",
            "mariadb://app:s3cret-pw@127.0.0.1:1/app",
        ];
        check_open_hides_password(&MySqlConnector, &urls).await;
    }

    #[tokio::test]
    async fn refused_connections_fail_at_once() {
        check_refused_fast(&MySqlConnector, |port| {
            format!("mysql://root@127.0.0.1:{port}/test")
        })
        .await;
    }
}
