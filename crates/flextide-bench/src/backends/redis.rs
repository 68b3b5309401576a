//! Redis beside raw redis-rs on a stream of its own: pipelined XADD,
//! XREADGROUP COUNT n (BLOCK when waiting), XACK + XDEL in one pipeline.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use flextide_queue_core::QueueProvider;
use flextide_queue_redis::{RedisBackend, RedisConfig};
use redis::{AsyncConnectionConfig, Client, Value, aio::MultiplexedConnection};
use tokio::sync::Mutex;

use super::{Backend, env_or, options};
use crate::driver::{Driver, Handle, Popped, Res, expect_handles};

const URL_VAR: &str = "FLEXTIDE_TEST_REDIS_URL";
const DEFAULT_URL: &str = "redis://127.0.0.1:6379/";
const GROUP: &str = "g";

/// The library's backend and a raw client.
#[derive(Debug)]
pub(crate) struct Rd {
    backend: RedisBackend,
    client: Client,
    conn: MultiplexedConnection,
}

fn conn_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)))
}

impl Rd {
    pub(crate) async fn connect() -> Res<Self> {
        let url = env_or(URL_VAR, DEFAULT_URL);
        let backend = RedisBackend::connect(RedisConfig::new(url.clone())).await?;
        let client = Client::open(url)?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&conn_config())
            .await?;
        Ok(Rd {
            backend,
            client,
            conn,
        })
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

#[async_trait]
impl Backend for Rd {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn footprint(&self) -> Vec<(String, String)> {
        let mut conn = self.conn.clone();
        let memory: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        let used = memory
            .lines()
            .find_map(|l| l.strip_prefix("used_memory_human:"))
            .unwrap_or("unknown")
            .trim()
            .to_owned();
        let dbsize: i64 = redis::cmd("DBSIZE")
            .query_async(&mut conn)
            .await
            .unwrap_or(-1);
        // The keys of this scenario's queues (their names start `ftmq_`).
        let mut cursor = 0u64;
        let mut ours = 0usize;
        loop {
            let step: Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("flextide:{ftmq_*")
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await;
            let Ok((next, keys)) = step else { break };
            ours += keys.len();
            if next == 0 {
                break;
            }
            cursor = next;
        }
        vec![
            ("used_memory".into(), used),
            ("DBSIZE (all keys)".into(), dbsize.to_string()),
            ("keys of ftmq_ queues".into(), ours.to_string()),
        ]
    }

    async fn info(&self) -> Vec<(String, String)> {
        let mut conn = self.conn.clone();
        let mut out = Vec::new();
        let info: Result<String, _> = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await;
        let version = info
            .ok()
            .and_then(|i| {
                i.lines().find_map(|l| {
                    l.strip_prefix("redis_version:")
                        .map(|v| v.trim().to_owned())
                })
            })
            .unwrap_or_else(|| "unknown".into());
        out.push(("version".into(), version));
        for key in ["appendonly", "appendfsync", "save"] {
            let v: Result<Vec<String>, _> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(key)
                .query_async(&mut conn)
                .await;
            out.push((
                key.into(),
                v.ok()
                    .and_then(|v| v.get(1).cloned())
                    .unwrap_or_else(|| "unknown".into()),
            ));
        }
        out
    }

    async fn library(&self, queue: &str) -> Res<Arc<dyn QueueProvider>> {
        Ok(Arc::new(self.backend.open(queue, options()).await?))
    }

    async fn drop_library(&self, queue: &str) -> Res<()> {
        self.backend.drop_queue(queue).await?;
        Ok(())
    }

    async fn raw(&self, queue: &str) -> Res<Option<Arc<dyn Driver>>> {
        let key = format!("bench-raw:{{{queue}}}");
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await?;
        Ok(Some(Arc::new(RawRedis {
            client: self.client.clone(),
            conn,
            key,
            blocking: Mutex::new(Vec::new()),
        })))
    }

    fn max_payload(&self) -> Option<usize> {
        Some(RedisConfig::new(DEFAULT_URL).max_payload())
    }
}

struct RawRedis {
    client: Client,
    conn: MultiplexedConnection,
    key: String,
    /// Connections for blocking reads, which would stall a shared one.
    blocking: Mutex<Vec<MultiplexedConnection>>,
}

/// The entries of an XREADGROUP reply: (id, payload field `p`).
fn entries(reply: Value) -> Vec<(String, Bytes)> {
    let streams = match reply {
        Value::Array(s) => s,
        Value::Map(m) => m
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for s in streams {
        let Value::Array(mut pair) = s else { continue };
        let Some(Value::Array(items)) = pair.pop() else {
            continue;
        };
        for item in items {
            let Value::Array(mut e) = item else { continue };
            let fields = e.pop();
            let Some(id) = e.pop().as_ref().and_then(text) else {
                continue;
            };
            let mut payload = Bytes::new();
            if let Some(Value::Array(f)) = fields {
                for kv in f.chunks(2) {
                    if let [k, Value::BulkString(v)] = kv
                        && text(k).as_deref() == Some("p")
                    {
                        payload = Bytes::from(v.clone());
                    }
                }
            }
            out.push((id, payload));
        }
    }
    out
}

#[async_trait]
impl Driver for RawRedis {
    async fn push(&self, batch: Vec<Bytes>) -> Res<()> {
        let mut pipe = redis::pipe();
        for p in &batch {
            pipe.cmd("XADD")
                .arg(&self.key)
                .arg("*")
                .arg("i")
                .arg(uuid::Uuid::now_v7().to_string())
                .arg("p")
                .arg(&p[..])
                .ignore();
        }
        let _: () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn pop(&self, max: usize, wait: Duration) -> Res<Vec<Popped>> {
        let read = |block: Option<u128>| {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP").arg(GROUP).arg("c").arg("COUNT").arg(max);
            if let Some(ms) = block {
                cmd.arg("BLOCK").arg(ms as u64);
            }
            cmd.arg("STREAMS").arg(&self.key).arg(">");
            cmd
        };
        let reply: Value = read(None).query_async(&mut self.conn.clone()).await?;
        let mut got = entries(reply);
        if got.is_empty() && !wait.is_zero() {
            let conn = self.blocking.lock().await.pop();
            let mut conn = match conn {
                Some(c) => c,
                None => {
                    self.client
                        .get_multiplexed_async_connection_with_config(&conn_config())
                        .await?
                }
            };
            let reply: Value = read(Some(wait.as_millis().max(1)))
                .query_async(&mut conn)
                .await?;
            self.blocking.lock().await.push(conn);
            got = entries(reply);
        }
        Ok(got
            .into_iter()
            .map(|(id, payload)| Popped {
                payload,
                handle: Handle::Text(id),
            })
            .collect())
    }

    async fn delete(&self, handles: Vec<Handle>) -> Res<()> {
        let ids = expect_handles(handles, |h| {
            if let Handle::Text(t) = h {
                Some(t)
            } else {
                None
            }
        })?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("XACK")
            .arg(&self.key)
            .arg(GROUP)
            .arg(&ids)
            .ignore();
        pipe.cmd("XDEL").arg(&self.key).arg(&ids).ignore();
        let _: () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn cleanup(&self) -> Res<()> {
        let _: () = redis::cmd("DEL")
            .arg(&self.key)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
