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
    /// NATS with JetStream (`nats://host:port`).
    Nats,
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

/// The label on every container the suite starts, so that containers a
/// killed run left behind can be found and removed
/// (`docker rm -f $(docker ps -aq --filter label=org.flextide.conformance)`);
/// a run that ends, pass or fail, removes its own.
pub const CONTAINER_LABEL: &str = "org.flextide.conformance";

/// How long a container may take to log that it is ready. Generous: a cold
/// RabbitMQ on a loaded 2-core machine takes over a minute.
#[cfg(feature = "testcontainers")]
const STARTUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(240);

#[cfg(feature = "testcontainers")]
async fn start(var: &str, server: Server) -> Result<Located, String> {
    use testcontainers::{ImageExt, runners::AsyncRunner};
    use testcontainers_modules::{
        mariadb::Mariadb,
        nats::{Nats, NatsServerCmd},
        postgres::Postgres,
        rabbitmq::RabbitMq,
        redis::Redis,
    };

    let fail = |e: testcontainers::TestcontainersError| {
        format!(
            "{var} is not set and starting a {server:?} container failed: {e} \
             (is a Docker engine running? DOCKER_HOST names it; or set {var} to a running server's URL)"
        )
    };
    macro_rules! run {
        ($image:expr, $port:expr, $fmt:literal) => {{
            let c = $image
                .with_label(CONTAINER_LABEL, std::process::id().to_string())
                .with_startup_timeout(STARTUP_TIMEOUT)
                .start()
                .await
                .map_err(fail)?;
            let host = c.get_host().await.map_err(fail)?;
            let port = host_port(&c, $port).await.map_err(fail)?;
            eprintln!(
                "flextide-conformance: {var} is unset: started a {server:?} container ({}), port {port}",
                &c.id()[..12]
            );
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
        Server::Nats => run!(
            Nats::default().with_cmd(&NatsServerCmd::default().with_jetstream()),
            4222,
            "nats://{}:{}"
        ),
    })
}

/// The host port the container's `port` is published on. testcontainers
/// reads it from bindings whose host address is an IP (`0.0.0.0`, as
/// Docker reports "every address"); podman 4.3 (Debian 12's) reports that
/// binding with an empty address through its Docker API, which
/// testcontainers skips ("does not expose port 5432/tcp"), so the binding
/// is then read here, an empty address taken as every address.
#[cfg(feature = "testcontainers")]
async fn host_port<I: testcontainers::Image>(
    container: &testcontainers::ContainerAsync<I>,
    port: u16,
) -> Result<u16, testcontainers::TestcontainersError> {
    use testcontainers::bollard::{Docker, query_parameters::InspectContainerOptions};

    let not_found = match container.get_host_port_ipv4(port).await {
        Ok(host_port) => return Ok(host_port),
        Err(e) => e,
    };
    let Ok(docker) = Docker::connect_with_defaults() else {
        return Err(not_found);
    };
    let Ok(inspected) = docker
        .inspect_container(container.id(), None::<InspectContainerOptions>)
        .await
    else {
        return Err(not_found);
    };
    inspected
        .network_settings
        .and_then(|settings| settings.ports)
        .and_then(|mut ports| ports.remove(&format!("{port}/tcp")))
        .flatten()
        .into_iter()
        .flatten()
        .filter(|binding| binding.host_ip.as_deref().is_none_or(str::is_empty))
        .find_map(|binding| binding.host_port?.parse().ok())
        .ok_or(not_found)
}

#[cfg(all(test, feature = "testcontainers"))]
mod tests {
    use testcontainers::Image;
    use testcontainers_modules::{
        mariadb::Mariadb, nats::Nats, postgres::Postgres, rabbitmq::RabbitMq, redis::Redis,
    };

    /// CI builds its images locally under the names in
    /// `.ci/containers/images`; a module that asks for another tag (after
    /// an upgrade) would make testcontainers try a pull, which fails there.
    #[test]
    fn ci_images_match_the_modules() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/containers/images");
        let listed = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let listed: Vec<(&str, &str)> = listed
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once(char::is_whitespace))
            .map(|(dir, image)| (dir, image.trim()))
            .collect();
        let image = |name: &str, tag: &str| format!("docker.io/library/{name}:{tag}");
        let wanted = [
            (
                "postgres",
                image(Postgres::default().name(), Postgres::default().tag()),
            ),
            (
                "redis",
                image(Redis::default().name(), Redis::default().tag()),
            ),
            (
                "mariadb",
                image(Mariadb::default().name(), Mariadb::default().tag()),
            ),
            (
                "rabbitmq",
                image(RabbitMq::default().name(), RabbitMq::default().tag()),
            ),
            ("nats", image(Nats::default().name(), Nats::default().tag())),
        ];
        for (dir, image) in &wanted {
            assert!(
                listed.contains(&(*dir, image.as_str())),
                "{path} must list `{dir} {image}` (what testcontainers-modules asks for); it has {listed:?}"
            );
        }
        assert_eq!(listed.len(), wanted.len(), "{listed:?}");
    }
}
