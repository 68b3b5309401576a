//! The conformance harness of the Redis backend, shared by the suite's
//! targets: one server (`conformance.rs`) and a Redis Cluster
//! (`conformance_cluster.rs`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use flextide_queue_conformance::{Connect, ForeignEntry, Harness, HarnessSettings, async_trait};
use flextide_queue_core::{QueueError, QueueOptions, QueueProvider};
use flextide_queue_redis::{RedisBackend, RedisConfig};

pub(crate) struct RedisHarness {
    /// Keeps the server alive: a container, or a private cluster.
    _server: Box<dyn std::any::Any + Send + Sync>,
    url: String,
    /// Used for cleanup and for killing other connections.
    admin: RedisBackend,
    /// A connection to every node (one for a single server), for
    /// `CLIENT LIST`/`KILL` and `SCAN`, which see one node each.
    nodes: Vec<redis::aio::MultiplexedConnection>,
    /// Routes a key's command to its master (a cluster's, or the server).
    writer: Writer,
    /// Every backend opened per queue name, so `disrupt` can find its connections.
    opened: Mutex<HashMap<String, Vec<RedisBackend>>>,
}

#[async_trait]
impl Harness for RedisHarness {
    async fn open(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>, QueueError> {
        // Each handle gets its own connections, so disrupting one case's
        // queue never breaks another case running at the same time.
        let backend = RedisBackend::connect(RedisConfig::new(self.url.clone())).await?;
        let queue = backend.open(name, options).await?;
        self.opened
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .push(backend);
        Ok(Arc::new(queue))
    }

    async fn cleanup(&self, name: &str) -> Result<(), QueueError> {
        self.opened.lock().unwrap().remove(name);
        self.admin.drop_queue(name).await
    }

    async fn disrupt(&self, queue: &Arc<dyn QueueProvider>) -> Result<bool, QueueError> {
        let backends = self
            .opened
            .lock()
            .unwrap()
            .get(queue.queue_name())
            .cloned()
            .unwrap_or_default();
        let fail = |e: redis::RedisError| QueueError::connection("redis", e);
        for backend in backends {
            // A reconnect forgets the name: set it again before looking.
            backend.name_connections().await?;
            for mut conn in self.nodes.clone() {
                let list: String = redis::cmd("CLIENT")
                    .arg("LIST")
                    .query_async(&mut conn)
                    .await
                    .map_err(fail)?;
                for line in list.lines() {
                    let field = |k: &str| {
                        line.split(' ')
                            .find_map(|kv| kv.strip_prefix(k))
                            .map(str::to_owned)
                    };
                    if field("name=").as_deref() == Some(backend.client_name())
                        && let Some(id) = field("id=")
                    {
                        let _: redis::Value = redis::cmd("CLIENT")
                            .arg("KILL")
                            .arg("ID")
                            .arg(id)
                            .query_async(&mut conn)
                            .await
                            .map_err(fail)?;
                    }
                }
            }
        }
        Ok(true)
    }

    /// Clause 12: an `XADD` on the queue's stream with Redis's own client, as
    /// another producer would: `p <body>` alone for a plain body, and a
    /// field the backend does not know (no `p`) for an undecodable entry.
    async fn write_foreign(
        &self,
        queue: &Arc<dyn QueueProvider>,
        entry: ForeignEntry,
    ) -> Result<bool, QueueError> {
        let stream = self.admin.stream_key(queue.queue_name())?;
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&stream).arg("*");
        match entry {
            ForeignEntry::Plain(body) => cmd.arg("p").arg(&body[..]),
            ForeignEntry::Undecodable => cmd.arg("body").arg("not a flextide entry"),
            _ => return Ok(false),
        };
        let _: String = self
            .writer
            .query(&cmd)
            .await
            .map_err(|e| QueueError::connection("redis", e))?;
        Ok(true)
    }

    /// Every key of the queue's hash tag, found with `SCAN` (queue names
    /// hold no glob characters).
    async fn leftovers(&self, name: &str) -> Result<Option<Vec<String>>, QueueError> {
        let pattern = format!("{}:{{{name}}}:*", self.admin.prefix());
        let mut keys = Vec::new();
        for mut conn in self.nodes.clone() {
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| QueueError::connection("redis", e))?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        keys.sort();
        keys.dedup();
        Ok(Some(keys))
    }

    fn settings(&self) -> HarnessSettings {
        HarnessSettings {
            lists_leftovers: true,
            can_disrupt: true,
            foreign_plain: true,
            foreign_undecodable: true,
            ..HarnessSettings::default()
        }
    }
}

/// Connects the harness to the server (or cluster) at `url`; `server`
/// is kept alive with it.
pub(crate) async fn connect(
    url: String,
    server: Box<dyn std::any::Any + Send + Sync>,
) -> Connect<RedisHarness> {
    let admin = match RedisBackend::connect(RedisConfig::new(url.clone())).await {
        Ok(a) => a,
        Err(e) => return Connect::Failed(e.to_string()),
    };
    let mut nodes = Vec::new();
    for node in url.split(',') {
        match redis::Client::open(node) {
            Ok(c) => match c.get_multiplexed_async_connection().await {
                Ok(conn) => nodes.push(conn),
                Err(e) => return Connect::Failed(e.to_string()),
            },
            Err(_) => return Connect::Failed(format!("{url} is not a valid Redis URL")),
        }
    }
    let writer = if admin.is_cluster() {
        let client = match redis::cluster::ClusterClient::new(url.split(',').collect::<Vec<_>>()) {
            Ok(c) => c,
            Err(e) => return Connect::Failed(e.to_string()),
        };
        match client.get_async_connection().await {
            Ok(conn) => Writer::Cluster(conn),
            Err(e) => return Connect::Failed(e.to_string()),
        }
    } else {
        Writer::One(nodes[0].clone())
    };
    Connect::Ready(RedisHarness {
        _server: server,
        url,
        admin,
        nodes,
        writer,
        opened: Mutex::new(HashMap::new()),
    })
}

/// Where a command on one key goes.
enum Writer {
    One(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Writer {
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Writer::One(c) => cmd.query_async(&mut c.clone()).await,
            Writer::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }
}
