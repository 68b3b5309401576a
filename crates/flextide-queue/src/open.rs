//! Opening the configured backend.

use std::sync::Arc;

use flextide_queue_core::{QueueError, QueueProvider};

use crate::{Config, ProviderKind};

#[allow(dead_code, reason = "unused when every backend feature is on")]
const BACKEND: &str = "config";

/// Opens the queue the environment describes: `QUEUE_PROVIDER` plus the
/// chosen backend's usual variables (see [`Config::from_env`]).
pub async fn from_env() -> Result<Arc<dyn QueueProvider>, QueueError> {
    connect(&Config::from_env()?).await
}

/// Opens the queue `config` describes. A backend whose cargo feature is not
/// enabled fails with a `Configuration` error naming the feature.
pub async fn connect(config: &Config) -> Result<Arc<dyn QueueProvider>, QueueError> {
    tracing::debug!(?config, "opening queue");
    match config.provider {
        ProviderKind::Memory => memory(config),
        ProviderKind::Database => match config.database_engine()? {
            "sqlite" => sqlite(config).await,
            "postgres" => postgres(config).await,
            _ => mysql(config).await,
        },
        ProviderKind::Redis => redis(config).await,
        ProviderKind::RabbitMq => rabbitmq(config).await,
        ProviderKind::Sqs => sqs(config).await,
    }
}

#[allow(dead_code, reason = "unused when every backend feature is on")]
fn not_built(feature: &'static str) -> QueueError {
    QueueError::configuration(
        BACKEND,
        format!(
            "this program was built without the `{feature}` feature of flextide-queue; rebuild with `--features {feature}`"
        ),
    )
}

#[cfg(feature = "memory")]
fn memory(config: &Config) -> Result<Arc<dyn QueueProvider>, QueueError> {
    Ok(Arc::new(flextide_queue_memory::MemoryQueue::new(
        &config.queue_name,
        config.options.clone(),
    )?))
}
#[cfg(not(feature = "memory"))]
fn memory(_: &Config) -> Result<Arc<dyn QueueProvider>, QueueError> {
    Err(not_built("memory"))
}

#[cfg(not(feature = "sqlite"))]
async fn sqlite(_: &Config) -> Result<Arc<dyn QueueProvider>, QueueError> {
    Err(not_built("sqlite"))
}
#[cfg(not(feature = "postgres"))]
async fn postgres(_: &Config) -> Result<Arc<dyn QueueProvider>, QueueError> {
    Err(not_built("postgres"))
}
#[cfg(not(feature = "mysql"))]
async fn mysql(_: &Config) -> Result<Arc<dyn QueueProvider>, QueueError> {
    Err(not_built("mysql"))
}
#[cfg(not(feature = "redis"))]
async fn redis(_: &Config) -> Result<Arc<dyn QueueProvider>, QueueError> {
    Err(not_built("redis"))
}
#[cfg(not(feature = "rabbitmq"))]
async fn rabbitmq(_: &Config) -> Result<Arc<dyn QueueProvider>, QueueError> {
    Err(not_built("rabbitmq"))
}
#[cfg(not(feature = "sqs"))]
async fn sqs(_: &Config) -> Result<Arc<dyn QueueProvider>, QueueError> {
    Err(not_built("sqs"))
}

#[cfg(feature = "sqlite")]
async fn sqlite(config: &Config) -> Result<Arc<dyn QueueProvider>, QueueError> {
    let queue = flextide_queue_sqlite::SqliteQueue::connect(
        &config.database_url,
        &config.queue_name,
        config.options.clone(),
    )
    .await?;
    Ok(Arc::new(queue))
}

#[cfg(feature = "postgres")]
async fn postgres(config: &Config) -> Result<Arc<dyn QueueProvider>, QueueError> {
    let queue = flextide_queue_postgres::PostgresQueue::connect(
        &config.database_url,
        &config.queue_name,
        config.options.clone(),
    )
    .await?;
    Ok(Arc::new(queue))
}

#[cfg(feature = "mysql")]
async fn mysql(config: &Config) -> Result<Arc<dyn QueueProvider>, QueueError> {
    // sqlx speaks the MySQL protocol to MariaDB too; it knows only the mysql scheme.
    let url = match config.database_url.strip_prefix("mariadb:") {
        Some(rest) => format!("mysql:{rest}"),
        None => config.database_url.clone(),
    };
    let queue =
        flextide_queue_mysql::MySqlQueue::connect(&url, &config.queue_name, config.options.clone())
            .await?;
    Ok(Arc::new(queue))
}

#[cfg(feature = "sqs")]
async fn sqs(config: &Config) -> Result<Arc<dyn QueueProvider>, QueueError> {
    use flextide_queue_sqs::{QueueKind, SqsClient};
    // The standard AWS chain: region, credentials, AWS_ENDPOINT_URL.
    let client = SqsClient::from_env().await;
    let queue = match &config.sqs_queue_url {
        // A URL names FIFO queues too (they end in `.fifo`).
        Some(url) => client.open_url(url, config.options.clone()).await?,
        None => {
            client
                .open(
                    &config.queue_name,
                    QueueKind::Standard,
                    config.options.clone(),
                )
                .await?
        }
    };
    Ok(Arc::new(queue))
}

#[cfg(feature = "redis")]
async fn redis(config: &Config) -> Result<Arc<dyn QueueProvider>, QueueError> {
    use flextide_queue_redis::{RedisBackend, RedisConfig};
    let url = config.redis_url.as_deref().unwrap_or_default();
    let backend = RedisBackend::connect(RedisConfig::new(url)).await?;
    Ok(Arc::new(
        backend
            .open(&config.queue_name, config.options.clone())
            .await?,
    ))
}

#[cfg(feature = "rabbitmq")]
async fn rabbitmq(config: &Config) -> Result<Arc<dyn QueueProvider>, QueueError> {
    let url = config.amqp_url.as_deref().unwrap_or_default();
    let client = flextide_queue_rabbitmq::RabbitMq::new(url)?;
    Ok(Arc::new(
        client
            .open(&config.queue_name, config.options.clone())
            .await?,
    ))
}
