//! Where a backend's server is: the environment first, then (with the
//! `testcontainers` feature) a container started for this run.

/// A server the suite can start in a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Server {
    /// PostgreSQL (`postgres://postgres:postgres@host:port/postgres`).
    Postgres,
    /// MariaDB (`mysql://root@host:port/test`).
    MariaDb,
    /// Redis (`redis://host:port/`).
    Redis,
    /// RabbitMQ (`amqp://guest:guest@host:port/%2f`).
    RabbitMq,
}

/// A located server: its URL, and the container kept running while this
/// value lives (when one was started).
pub struct Located {
    /// The server's URL.
    pub url: String,
    /// Whether a container was started for it.
    pub started_container: bool,
    /// Keeps the container running until dropped.
    _guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Located")
            .field("started_container", &self.started_container)
            .finish_non_exhaustive()
    }
}

/// Finds the server of a backend under test: the URL in the environment
/// variable `var` when it is set; otherwise, when this crate is built with
/// the `testcontainers` feature, a fresh container of `server`; otherwise an
/// error saying what to set, which a harness turns into
/// [`Connect::NotConfigured`](crate::Connect::NotConfigured).
pub async fn locate(var: &str, server: Server) -> Result<Located, String> {
    if let Ok(url) = std::env::var(var)
        && !url.trim().is_empty()
    {
        return Ok(Located {
            url: url.trim().to_owned(),
            started_container: false,
            _guard: None,
        });
    }
    start(var, server).await
}

#[cfg(not(feature = "testcontainers"))]
async fn start(var: &str, server: Server) -> Result<Located, String> {
    Err(format!(
        "{var} is not set; set it to a {server:?} server's URL, or enable the `testcontainers` feature to start one in Docker"
    ))
}

#[cfg(feature = "testcontainers")]
async fn start(var: &str, server: Server) -> Result<Located, String> {
    use testcontainers::runners::AsyncRunner;
    use testcontainers_modules::{
        mariadb::Mariadb, postgres::Postgres, rabbitmq::RabbitMq, redis::Redis,
    };

    let fail = |e: testcontainers::TestcontainersError| {
        format!("{var} is not set and starting a {server:?} container failed: {e}")
    };
    macro_rules! run {
        ($image:expr, $port:expr, $fmt:literal) => {{
            let c = $image.start().await.map_err(fail)?;
            let host = c.get_host().await.map_err(fail)?;
            let port = c.get_host_port_ipv4($port).await.map_err(fail)?;
            Located {
                url: format!($fmt, host, port),
                started_container: true,
                _guard: Some(Box::new(c)),
            }
        }};
    }
    Ok(match server {
        Server::Postgres => run!(
            Postgres::default(),
            5432,
            "postgres://postgres:postgres@{}:{}/postgres"
        ),
        Server::MariaDb => run!(Mariadb::default(), 3306, "mysql://root@{}:{}/test"),
        Server::Redis => run!(Redis::default(), 6379, "redis://{}:{}/"),
        Server::RabbitMq => run!(RabbitMq::default(), 5672, "amqp://guest:guest@{}:{}/%2f"),
    })
}
