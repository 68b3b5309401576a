//! The connections to one Redis server, from which queues are opened.

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use flextide_queue_core::{
    QueueError, QueueOptions, Result, backend::new_token, validate_queue_name,
};
use redis::RedisError;

use crate::{
    BACKEND, RedisConfig, RedisQueue,
    conn::{Clients, Conn},
    error,
    keys::Keys,
    scripts,
};

/// Idle blocking connections kept per backend.
const BLOCKING_POOL: usize = 16;

/// A connection to one Redis server, shared by every queue opened from it.
///
/// Commands go over one multiplexed connection (a
/// [`ConnectionManager`](redis::aio::ConnectionManager), or a cluster
/// connection for a Redis Cluster), which reconnects by itself after a
/// disconnect or a server restart. Blocking reads (`pop` waiting for a message) use separate pooled connections so they
/// never stall the shared one. Every connection is named with
/// [`RedisBackend::client_name`] (`CLIENT SETNAME`), so operators can find
/// them in `CLIENT LIST`. Cloning is cheap.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: Clients,
    conn: Conn,
    config: RedisConfig,
    /// `host:port` (or the socket path): named in connection errors; the
    /// URL's password never is.
    addr: String,
    client_name: String,
    blocking: Mutex<Vec<Conn>>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("config", &self.inner.config)
            .field("client_name", &self.inner.client_name)
            .finish()
    }
}

impl RedisBackend {
    /// Connects to the server, failing with a retryable `Connection` error when
    /// it cannot be reached and a `Configuration` error when the settings are
    /// wrong.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        config.check()?;
        // The driver's URL errors name the problem, never the URL itself.
        let (client, addr) = Clients::open(config.url()).map_err(|e| {
            QueueError::configuration(BACKEND, format!("the Redis URL is not usable: {e}"))
        })?;
        let conn = client
            .shared(&config)
            .await
            .map_err(|e| error::map("connect", config.connect_timeout(), &addr, e))?;
        let client_name = format!("flextide-{}", &new_token()[..12]);
        let backend = RedisBackend {
            inner: Arc::new(Inner {
                client,
                conn,
                config,
                addr,
                client_name,
                blocking: Mutex::new(Vec::new()),
            }),
        };
        backend.name_connections().await?;
        Ok(backend)
    }

    /// Opens the queue `name` (checked with `validate_queue_name`) with these
    /// options. Nothing is written: the stream appears with the first push,
    /// the consumer group with the first pop (as after a lost group), so
    /// `stats`, `peek` or `dead_letters` on a name never used leave no key.
    pub async fn open(&self, name: &str, options: QueueOptions) -> Result<RedisQueue> {
        validate_queue_name(name)?;
        if options.lease.is_zero() {
            return Err(QueueError::configuration(
                BACKEND,
                "the lease must be longer than zero",
            ));
        }
        let queue = RedisQueue::new(self.clone(), name, Keys::new(self.prefix(), name), options);
        let mut conn = self.conn();
        for script in scripts::all() {
            script
                .load_async(&mut conn)
                .await
                .map_err(|e| self.err("open", e))?;
        }
        Ok(queue)
    }

    /// Deletes every key of the queue `name`: messages (waiting, leased and
    /// delayed), dead letters and bookkeeping, in one `DEL`. Handles still
    /// open on it see an empty queue, and their receipts become stale; a
    /// push or pop through them creates the queue again. Dropping a queue
    /// that does not exist succeeds.
    pub async fn drop_queue(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        let keys = Keys::new(self.prefix(), name);
        let _: () = redis::cmd("DEL")
            .arg(&keys.all()[..])
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.err("drop_queue", e))?;
        Ok(())
    }

    /// Creates the stream and consumer group of queue `name` now, as its
    /// first pop would. Idempotent: an existing group is left as it is.
    pub async fn create_queue(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        let keys = Keys::new(self.prefix(), name);
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&keys.stream)
            .arg(crate::queue::GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn())
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other.map_err(|e| self.err("create_queue", e)),
        }
    }

    /// The key of the stream holding the messages of queue `name`. Another
    /// producer may `XADD` to it: an entry with the field `p` alone is
    /// delivered with that payload and the id `redis-<entry id>`; see the
    /// crate documentation.
    pub fn stream_key(&self, name: &str) -> Result<String> {
        validate_queue_name(name)?;
        Ok(Keys::new(self.prefix(), name).stream)
    }

    /// The name of this backend's connections in `CLIENT LIST`.
    pub fn client_name(&self) -> &str {
        &self.inner.client_name
    }

    /// Names the shared connection again with `CLIENT SETNAME` (a reconnect
    /// forgets the name; blocking connections are named when they open).
    pub async fn name_connections(&self) -> Result<()> {
        let _: () = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&self.inner.client_name)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.err("client_setname", e))?;
        Ok(())
    }

    /// The key prefix in use.
    pub fn prefix(&self) -> &str {
        self.inner.config.prefix()
    }

    pub(crate) fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    pub(crate) fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }

    pub(crate) fn err(&self, operation: &'static str, e: RedisError) -> QueueError {
        error::map(operation, self.inner.config.response(), &self.inner.addr, e)
    }

    pub(crate) async fn blocking_conn(&self) -> Result<Conn> {
        if let Some(c) = self.inner.blocking.lock().unwrap().pop() {
            return Ok(c);
        }
        let mut conn = self
            .inner
            .client
            .blocking(&self.inner.config)
            .await
            .map_err(|e| self.err("connect", e))?;
        let _: () = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&self.inner.client_name)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err("client_setname", e))?;
        Ok(conn)
    }

    /// Whether the URL named a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.client.is_cluster()
    }

    /// Connections for a `SCAN` of every key: one per master of a
    /// cluster, else the shared one.
    pub(crate) async fn scan_conns(&self) -> Result<Vec<Conn>> {
        self.inner
            .client
            .each_master(&self.inner.config)
            .await
            .map_err(|e| self.err("list_queues", e))
    }

    /// Takes back a blocking connection whose read finished (one dropped
    /// mid-read is never returned: its reply may still be on the way).
    pub(crate) fn return_blocking(&self, conn: Conn) {
        let mut pool = self.inner.blocking.lock().unwrap();
        if pool.len() < BLOCKING_POOL {
            pool.push(conn);
        }
    }
}
