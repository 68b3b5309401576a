//! `MySqlQueue`: one named queue in the shared tables; its `QueueProvider`
//! implementation hands each operation to the file of its job.

use std::{fmt, sync::Arc};

use flextide_queue_core::{Capabilities, QueueError, QueueOptions, Result, validate_queue_name};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use tokio::sync::Notify;

use crate::{
    BACKEND,
    error::{DIALECT, map_err},
};

/// Most messages one `pop_batch` leases, and the largest chunk `push_batch`,
/// `delete_batch` and replays send in one statement (larger batches are split).
pub const MAX_BATCH: usize = 1000;

/// Default payload limit: 8 MiB, well under the default `max_allowed_packet`
/// of MySQL 8 (64 MiB) and MariaDB (16 MiB). Change it with
/// [`MySqlQueue::with_max_payload_bytes`] if your server allows more.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 8 * 1024 * 1024;

/// A queue stored in MySQL 8.0+ or MariaDB 10.6+ (see the crate docs).
///
/// Cheap to clone; every clone and every queue opened on the same pool share
/// its connections. Create the tables once with [`migrate`](crate::migrate).
#[derive(Clone)]
pub struct MySqlQueue {
    pub(crate) pool: MySqlPool,
    pub(crate) name: Arc<str>,
    pub(crate) options: QueueOptions,
    pub(crate) lease_ms: i64,
    pub(crate) max_payload: usize,
    pub(crate) notify: Arc<Notify>,
    /// When this handle's unique pushes sweep expired dedup rows.
    pub(crate) dedup_sweep: Arc<flextide_queue_sql::dedup::ExpiredSweep>,
}

impl fmt::Debug for MySqlQueue {
    // The pool's options hold the connection settings (and password): leave them out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MySqlQueue")
            .field("name", &self.name)
            .field("options", &self.options)
            .field("max_payload", &self.max_payload)
            .finish_non_exhaustive()
    }
}

impl MySqlQueue {
    /// Connects with a pool of its own (sqlx defaults, up to 10 connections)
    /// and opens the queue `name`. The URL is `mysql://user:pass@host:3306/db`;
    /// it never appears in errors. Run [`migrate`](crate::migrate) once first.
    /// To share connections between queues, build a pool and use
    /// [`MySqlQueue::from_pool`].
    pub async fn connect(url: &str, name: &str, options: QueueOptions) -> Result<Self> {
        validate_queue_name(name)?;
        Self::from_pool(connect_pool(url).await?, name, options)
    }

    /// Opens the queue `name` on an existing pool. Queues are rows keyed by
    /// name in shared tables, so opening one creates nothing; the name is
    /// validated and always sent as a bound parameter.
    pub fn from_pool(pool: MySqlPool, name: &str, options: QueueOptions) -> Result<Self> {
        validate_queue_name(name)?;
        let lease_ms = i64::try_from(options.lease.as_millis())
            .unwrap_or(i64::MAX / 4)
            .max(1);
        Ok(MySqlQueue {
            pool,
            name: name.into(),
            options,
            lease_ms,
            max_payload: DEFAULT_MAX_PAYLOAD_BYTES,
            notify: flextide_queue_sql::waker(name),
            dedup_sweep: Default::default(),
        })
    }

    /// Changes the largest payload accepted (default
    /// [`DEFAULT_MAX_PAYLOAD_BYTES`]). Keep it below the server's
    /// `max_allowed_packet`.
    pub fn with_max_payload_bytes(mut self, max: usize) -> Self {
        self.max_payload = max;
        self
    }

    /// The pool this queue uses.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// The options the queue was opened with.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// Removes every message and dead letter of this queue (tests, the CLI).
    /// Returns how many rows were deleted.
    pub async fn drop_queue(&self) -> Result<u64> {
        crate::drop_queue(&self.pool, &self.name).await
    }
}

flextide_queue_sql::queue_provider! {
    MySqlQueue in crate {
        backend: BACKEND,
        name: |q| &q.name,
        capabilities: |q| Capabilities {
            max_payload_bytes: Some(q.max_payload),
            max_batch: Some(MAX_BATCH),
            dedup_window: Some(flextide_queue_sql::dedup::dedup_window(&q.options)),
            ..flextide_queue_sql::CAPABILITIES
        },
    }
}

/// A pool of its own on `url` (sqlx defaults, up to 10 connections); the
/// URL never appears in errors.
pub(crate) async fn connect_pool(url: &str) -> Result<MySqlPool> {
    let connect: MySqlConnectOptions = url.parse().map_err(map_err)?;
    if connect.get_database().is_none() {
        return Err(QueueError::configuration(
            BACKEND,
            "the MySQL URL names no database: mysql://user:password@host:3306/DATABASE",
        ));
    }
    let target = format!("{}:{}", connect.get_host(), connect.get_port());
    flextide_queue_sql::open_pool(&DIALECT, &target, MySqlPoolOptions::new(), connect).await
}

#[cfg(test)]
mod tests {
    use flextide_queue_core::{Message, QueueProvider};

    use super::*;

    #[test]
    fn names_are_checked_before_anything_else() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let pool = MySqlPoolOptions::new()
                .connect_lazy("mysql://u:secret@127.0.0.1:1/db")
                .unwrap();
            assert!(matches!(
                MySqlQueue::from_pool(pool.clone(), "bad name", QueueOptions::default()),
                Err(QueueError::InvalidQueueName { .. })
            ));
            let q = MySqlQueue::from_pool(pool, "ok", QueueOptions::default()).unwrap();
            assert!(!format!("{q:?}").contains("secret"));
            let big = Message::new(vec![0u8; DEFAULT_MAX_PAYLOAD_BYTES + 1]);
            assert!(matches!(
                q.push(big).await,
                Err(QueueError::PayloadTooLarge { .. })
            ));
            assert!(matches!(
                q.push(Message::new("x").with_dedup_id("d".repeat(256)))
                    .await,
                Err(QueueError::InvalidMessage { .. })
            ));
        });
    }
}
