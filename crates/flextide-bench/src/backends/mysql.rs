//! MariaDB / MySQL beside raw sqlx running the library's statements (its
//! own texts, from `flextide_queue_mysql::raw_sql`) in the same
//! transactions, on a pool of the same size.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use flextide_queue_core::{
    QueueProvider,
    backend::{foreign_id, new_token},
};
use flextide_queue_mysql::{
    DEFAULT_MAX_PAYLOAD_BYTES, MySql, MySqlPool, MySqlPoolOptions, MySqlQueue, drop_queue, migrate,
    raw_sql::{
        CLAIM_SQL, INSERT_PREFIX, INSERT_ROW, SWEEP_PROBE_SQL, delete_seqs_sql, lease_sql,
        lock_for_delete_sql,
    },
    sqlx::{self, AssertSqlSafe, Row, Transaction},
};

use super::{Backend, env_or, options};
use crate::driver::{Driver, Handle, Popped, Res, expect_handles};

const URL_VAR: &str = "FLEXTIDE_TEST_MYSQL_URL";
const DEFAULT_URL: &str = "mysql://root@127.0.0.1:3306/test";
const POOL: u32 = 10;

/// One pool for the library, one of the same size for the raw client.
#[derive(Debug)]
pub(crate) struct My {
    pool: MySqlPool,
    raw_pool: MySqlPool,
}

impl My {
    pub(crate) async fn connect() -> Res<Self> {
        let url = env_or(URL_VAR, DEFAULT_URL);
        let pool = MySqlPoolOptions::new()
            .max_connections(POOL)
            .connect(&url)
            .await?;
        migrate(&pool).await?;
        let raw_pool = MySqlPoolOptions::new()
            .max_connections(POOL)
            .connect(&url)
            .await?;
        Ok(My { pool, raw_pool })
    }

    /// Fresh pools, nothing run on them yet (the tables exist).
    async fn fresh() -> Res<Self> {
        let url = env_or(URL_VAR, DEFAULT_URL);
        let pool = MySqlPoolOptions::new()
            .max_connections(POOL)
            .connect(&url)
            .await?;
        let raw_pool = MySqlPoolOptions::new()
            .max_connections(POOL)
            .connect(&url)
            .await?;
        Ok(My { pool, raw_pool })
    }
}

async fn begin(pool: &MySqlPool) -> Res<Transaction<'static, MySql>> {
    Ok(pool
        .begin_with("SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION")
        .await?)
}

/// Each transaction in a task of its own, as the library runs them: W3
/// aborts its consumers, and sqlx could otherwise hand a connection back to
/// the pool inside a transaction it does not know of.
async fn detach<T: Send + 'static>(
    transaction: impl std::future::Future<Output = Res<T>> + Send + 'static,
) -> Res<T> {
    tokio::spawn(transaction).await?
}
#[async_trait]
impl Backend for My {
    fn name(&self) -> &'static str {
        "mysql"
    }

    async fn commit_db(&self) -> Option<Res<Arc<dyn Backend>>> {
        Some(Self::fresh().await.map(|b| Arc::new(b) as Arc<dyn Backend>))
    }

    fn commit_counter_name(&self) -> String {
        "Com_commit, server-wide: other clients of this server add to it".into()
    }

    async fn commits(&self) -> Res<u64> {
        let row: (String, String) = sqlx::query_as("SHOW GLOBAL STATUS LIKE 'Com_commit'")
            .fetch_one(&self.raw_pool)
            .await?;
        Ok(row.1.parse()?)
    }

    async fn close(&self) {
        let close = async {
            self.pool.close().await;
            self.raw_pool.close().await;
        };
        if tokio::time::timeout(Duration::from_secs(10), close)
            .await
            .is_err()
        {
            eprintln!("  warning: closing the pools took over 10 s");
        }
    }

    async fn footprint(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (key, sql) in [
            (
                "table size (both, with indexes)",
                "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name IN ('flextide_queue_messages', 'flextide_queue_dead_letters')",
            ),
            (
                "rows of ftmq_ queues",
                "SELECT CAST((SELECT count(*) FROM flextide_queue_messages WHERE queue LIKE 'ftmq%') \
                 + (SELECT count(*) FROM flextide_queue_dead_letters WHERE queue LIKE 'ftmq%') AS SIGNED)",
            ),
        ] {
            let v: Result<i64, _> = sqlx::query_scalar(sql).fetch_one(&self.raw_pool).await;
            out.push((
                key.to_owned(),
                v.map_or_else(|e| format!("unknown ({e})"), |v| v.to_string()),
            ));
        }
        out
    }

    async fn info(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (key, sql) in [
            ("version", "SELECT CAST(VERSION() AS CHAR)"),
            (
                "innodb_flush_log_at_trx_commit",
                "SELECT CAST(@@innodb_flush_log_at_trx_commit AS CHAR)",
            ),
            ("sync_binlog", "SELECT CAST(@@sync_binlog AS CHAR)"),
            ("log_bin", "SELECT CAST(@@log_bin AS CHAR)"),
            (
                "innodb_buffer_pool_size",
                "SELECT CAST(@@innodb_buffer_pool_size AS CHAR)",
            ),
        ] {
            let v: Result<String, _> = sqlx::query_scalar(sql).fetch_one(&self.pool).await;
            out.push((
                key.to_owned(),
                v.unwrap_or_else(|e| format!("unknown ({e})")),
            ));
        }
        out.push((
            "pool".into(),
            format!("{POOL} connections (library and raw alike)"),
        ));
        out
    }

    async fn library(&self, queue: &str) -> Res<Arc<dyn QueueProvider>> {
        Ok(Arc::new(MySqlQueue::from_pool(
            self.pool.clone(),
            queue,
            options(),
        )?))
    }

    async fn drop_library(&self, queue: &str) -> Res<()> {
        drop_queue(&self.pool, queue).await?;
        Ok(())
    }

    async fn raw(&self, queue: &str) -> Res<Option<Arc<dyn Driver>>> {
        Ok(Some(Arc::new(RawMy {
            pool: self.raw_pool.clone(),
            queue: queue.to_owned(),
        })))
    }

    fn raw_waits(&self) -> bool {
        false
    }

    fn max_payload(&self) -> Option<usize> {
        Some(DEFAULT_MAX_PAYLOAD_BYTES)
    }
}

#[derive(Clone)]
struct RawMy {
    pool: MySqlPool,
    queue: String,
}

#[async_trait]
impl Driver for RawMy {
    async fn push(&self, batch: Vec<Bytes>) -> Res<()> {
        let mut sql = String::from(INSERT_PREFIX);
        sql.push_str(&vec![INSERT_ROW; batch.len()].join(", "));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for p in &batch {
            q = q
                .bind(&self.queue)
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(&p[..])
                .bind("")
                .bind(0u8)
                .bind(None::<&str>)
                .bind(0i64)
                .bind(None::<&str>);
        }
        let mut conn = self.pool.acquire().await?;
        q.execute(&mut *conn).await?;
        Ok(())
    }

    async fn pop(&self, max: usize, _wait: Duration) -> Res<Vec<Popped>> {
        let this = self.clone();
        detach(async move {
            let limit = options().max_attempts.unwrap_or(u32::MAX);
            let _probe: Vec<i64> = sqlx::query_scalar(SWEEP_PROBE_SQL)
                .bind(&this.queue)
                .bind(limit)
                .fetch_all(&this.pool)
                .await?;
            let mut tx = begin(&this.pool).await?;
            let rows = sqlx::query(CLAIM_SQL)
                .bind(&this.queue)
                .bind(max as u64)
                .fetch_all(&mut *tx)
                .await?;
            if rows.is_empty() {
                tx.commit().await?;
                return Ok(Vec::new());
            }
            let now: i64 = rows[0].try_get("now")?;
            let token: Arc<str> = new_token().into();
            let mut update = sqlx::query(AssertSqlSafe(lease_sql(rows.len())))
                .bind(&*token)
                .bind(now + options().lease.as_millis() as i64)
                .bind(
                    foreign_id(flextide_queue_mysql::BACKEND, "")
                        .as_str()
                        .to_owned(),
                );
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let seq: i64 = r.try_get("seq")?;
                update = update.bind(seq);
                let payload: Vec<u8> = r.try_get("payload")?;
                out.push(Popped {
                    payload: Bytes::from(payload),
                    handle: Handle::Row(seq, token.clone()),
                });
            }
            update.execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(out)
        })
        .await
    }

    async fn delete(&self, handles: Vec<Handle>) -> Res<()> {
        let this = self.clone();
        detach(async move {
            let rows = expect_handles(handles, |h| {
                if let Handle::Row(s, t) = h {
                    Some((s, t))
                } else {
                    None
                }
            })?;
            let mut tx = begin(&this.pool).await?;
            let mut select = sqlx::query(AssertSqlSafe(lock_for_delete_sql(rows.len())));
            for (seq, _) in &rows {
                select = select.bind(*seq);
            }
            let current: Vec<(i64, Option<String>)> = select
                .bind(&this.queue)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, sqlx::Error>>()?;
            let held: Vec<i64> = rows
                .iter()
                .filter(|(s, t)| {
                    current
                        .iter()
                        .any(|(cs, ct)| cs == s && ct.as_deref() == Some(&**t))
                })
                .map(|r| r.0)
                .collect();
            let mut delete = sqlx::query(AssertSqlSafe(delete_seqs_sql(held.len())));
            for seq in &held {
                delete = delete.bind(*seq);
            }
            delete.execute(&mut *tx).await?;
            tx.commit().await?;
            if held.len() != rows.len() {
                return Err(format!("raw delete removed {} of {}", held.len(), rows.len()).into());
            }
            Ok(())
        })
        .await
    }

    async fn cleanup(&self) -> Res<()> {
        drop_queue(&self.pool, &self.queue).await?;
        Ok(())
    }
}
