//! The conformance suite against the Redis at `FLEXTIDE_TEST_REDIS_URL`.
//!
//! Run with: `FLEXTIDE_TEST_REDIS_URL=redis://127.0.0.1:6379/ cargo test -p flextide-queue-redis --test conformance`

use std::{
    collections::HashMap,
    process::ExitCode,
    sync::{Arc, Mutex},
};

use flextide_queue_conformance::{Connect, ForeignEntry, Harness, HarnessSettings, async_trait};
use flextide_queue_core::{QueueError, QueueOptions, QueueProvider};
use flextide_queue_redis::{RedisBackend, RedisConfig};

const VAR: &str = "FLEXTIDE_TEST_REDIS_URL";

struct RedisHarness {
    /// The server: from the environment, or a container kept alive here.
    _server: flextide_queue_conformance::Located,
    url: String,
    /// Used for cleanup and for killing other connections.
    admin: RedisBackend,
    admin_conn: redis::aio::MultiplexedConnection,
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
        let mut conn = self.admin_conn.clone();
        let fail = |e: redis::RedisError| QueueError::connection("redis", e);
        for backend in backends {
            // A reconnect forgets the name: set it again before looking.
            backend.name_connections().await?;
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
        let _: String = cmd
            .query_async(&mut self.admin_conn.clone())
            .await
            .map_err(|e| QueueError::connection("redis", e))?;
        Ok(true)
    }

    /// Every key of the queue's hash tag, found with `SCAN` (queue names
    /// hold no glob characters).
    async fn leftovers(&self, name: &str) -> Result<Option<Vec<String>>, QueueError> {
        let pattern = format!("{}:{{{name}}}:*", self.admin.prefix());
        let mut conn = self.admin_conn.clone();
        let mut cursor = 0u64;
        let mut keys = Vec::new();
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

async fn connect() -> Connect<RedisHarness> {
    let located =
        match flextide_queue_conformance::locate(VAR, flextide_queue_conformance::Server::Redis)
            .await
        {
            Ok(located) => located,
            Err(why) => return Connect::NotConfigured(why),
        };
    let url = located.url.clone();
    let admin = match RedisBackend::connect(RedisConfig::new(url.clone())).await {
        Ok(a) => a,
        Err(e) => return Connect::Failed(e.to_string()),
    };
    let admin_conn = match redis::Client::open(url.as_str()) {
        Ok(c) => match c.get_multiplexed_async_connection().await {
            Ok(conn) => conn,
            Err(e) => return Connect::Failed(e.to_string()),
        },
        Err(_) => return Connect::Failed(format!("{VAR} is not a valid Redis URL")),
    };
    Connect::Ready(RedisHarness {
        _server: located,
        url,
        admin,
        admin_conn,
        opened: Mutex::new(HashMap::new()),
    })
}

fn main() -> ExitCode {
    flextide_queue_conformance::run("redis", connect)
}
