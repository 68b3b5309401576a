//! PostgreSQL: the library beside raw sqlx running the same statements
//! (the library's own texts, from `flextide_queue_postgres::raw_sql`) on
//! the same tables.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use flextide_queue_core::{
    QueueProvider,
    backend::{foreign_id, max_attempts_reason, new_token},
};
use flextide_queue_postgres::{
    PostgresBackend, PostgresConfig, raw_sql,
    sqlx::{
        self, AssertSqlSafe, PgPool, Row,
        postgres::{PgListener, PgPoolOptions},
    },
};
use tokio::{sync::Notify, time::Instant};

use super::{Backend, env_or, options};
use crate::driver::{Driver, Handle, Popped, Res, expect_handles};

const URL_VAR: &str = "FLEXTIDE_TEST_POSTGRES_URL";
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const CHANNEL: &str = "flextide_queue";
const POOL: u32 = 10;
/// The database whose commit counter only the bench's counted runs move:
/// other tests on this server use `test`.
const COMMIT_DB: &str = "flextide_bench_commits";

/// The library's backend and a pool of the same size for the raw baseline.
#[derive(Debug)]
pub(crate) struct Pg {
    backend: PostgresBackend,
    raw_pool: PgPool,
    /// Whether the commit database exists and is migrated (by this process).
    commit_db_ready: tokio::sync::OnceCell<()>,
}

impl Pg {
    pub(crate) async fn connect() -> Res<Self> {
        let url = env_or(URL_VAR, DEFAULT_URL);
        let backend =
            PostgresBackend::connect(&url, PostgresConfig::default().max_connections(POOL)).await?;
        backend.migrate().await?;
        let raw_pool = PgPoolOptions::new()
            .max_connections(POOL)
            .connect(&url)
            .await?;
        Ok(Pg {
            backend,
            raw_pool,
            commit_db_ready: tokio::sync::OnceCell::new(),
        })
    }

    /// Creates and migrates the commit database once.
    async fn ensure_commit_db(&self) -> Res<()> {
        self.commit_db_ready
            .get_or_try_init(|| async {
                let exists: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                        .bind(COMMIT_DB)
                        .fetch_optional(&self.raw_pool)
                        .await?;
                if exists.is_none() {
                    let created =
                        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {COMMIT_DB}")))
                            .execute(&self.raw_pool)
                            .await;
                    // Another run may have created it meanwhile.
                    if let Err(e) = created
                        && !e.to_string().contains("already exists")
                    {
                        return Err(Box::new(e) as crate::driver::BoxError);
                    }
                }
                let db = Self::on_commit_db().await?;
                db.backend.migrate().await?;
                db.close_pools().await;
                Ok::<(), crate::driver::BoxError>(())
            })
            .await
            .map(drop)
    }

    /// Fresh pools on the commit database (nothing run on them yet).
    async fn on_commit_db() -> Res<Self> {
        let url = env_or(URL_VAR, DEFAULT_URL);
        let options: sqlx::postgres::PgConnectOptions = url.parse()?;
        let options = options.database(COMMIT_DB);
        let pool = PgPoolOptions::new()
            .max_connections(POOL)
            .connect_with(options.clone())
            .await?;
        let backend =
            PostgresBackend::from_pool(pool, PostgresConfig::default().max_connections(POOL))?;
        let raw_pool = PgPoolOptions::new()
            .max_connections(POOL)
            .connect_with(options)
            .await?;
        Ok(Pg {
            backend,
            raw_pool,
            commit_db_ready: tokio::sync::OnceCell::new_with(Some(())),
        })
    }

    async fn close_pools(&self) {
        // Bounded: a connection still checked out would hold the close.
        let close = async {
            self.backend.pool().close().await;
            self.raw_pool.close().await;
        };
        if tokio::time::timeout(Duration::from_secs(10), close)
            .await
            .is_err()
        {
            eprintln!("  warning: closing the commit database's pools took over 10 s");
        }
    }
}

#[async_trait]
impl Backend for Pg {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn commit_db(&self) -> Option<Res<Arc<dyn Backend>>> {
        let db = async {
            self.ensure_commit_db().await?;
            Ok::<_, crate::driver::BoxError>(
                Arc::new(Self::on_commit_db().await?) as Arc<dyn Backend>
            )
        };
        Some(db.await)
    }

    fn commit_counter_name(&self) -> String {
        format!("pg_stat_database.xact_commit of the bench's own database {COMMIT_DB}")
    }

    async fn commits(&self) -> Res<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
                .bind(COMMIT_DB)
                .fetch_one(&self.raw_pool)
                .await?;
        Ok(n as u64)
    }

    async fn close(&self) {
        self.close_pools().await;
        // A server process reports its counts when it exits, which follows
        // the disconnect by a moment.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    async fn footprint(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (key, sql) in [
            (
                "table size (both, with indexes)",
                "SELECT pg_size_pretty(pg_total_relation_size('flextide_queue_messages') \
                 + pg_total_relation_size('flextide_queue_dead_letters'))",
            ),
            (
                "dead tuples",
                "SELECT coalesce((SELECT n_dead_tup::text FROM pg_stat_user_tables \
                 WHERE relname = 'flextide_queue_messages'), '0')",
            ),
            (
                "rows of ftmq_ queues",
                "SELECT ((SELECT count(*) FROM flextide_queue_messages WHERE queue LIKE 'ftmq\\_%') \
                 + (SELECT count(*) FROM flextide_queue_dead_letters WHERE queue LIKE 'ftmq\\_%'))::text",
            ),
        ] {
            let v: Result<String, _> = sqlx::query_scalar(sql).fetch_one(&self.raw_pool).await;
            out.push((
                key.to_owned(),
                v.unwrap_or_else(|e| format!("unknown ({e})")),
            ));
        }
        out
    }

    async fn info(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (key, sql) in [
            ("version", "SHOW server_version"),
            ("synchronous_commit", "SHOW synchronous_commit"),
            ("fsync", "SHOW fsync"),
            ("shared_buffers", "SHOW shared_buffers"),
            // Off here: dead rows of deleted messages then pile up in the
            // claim index and every claim walks them.
            ("autovacuum", "SHOW autovacuum"),
            (
                "dead tuples in flextide_queue_messages at start",
                "SELECT coalesce((SELECT n_dead_tup::text FROM pg_stat_user_tables WHERE relname = 'flextide_queue_messages'), '0')",
            ),
        ] {
            let v: Result<String, _> = sqlx::query_scalar(sql).fetch_one(&self.raw_pool).await;
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
        Ok(Arc::new(self.backend.queue(queue, options())?))
    }

    async fn drop_library(&self, queue: &str) -> Res<()> {
        self.backend.drop_queue(queue).await?;
        Ok(())
    }

    async fn maintain(&self) -> Res<()> {
        // Dead rows of consumed messages otherwise stay in the claim index
        // (autovacuum is off on the machine this was written on), and every
        // later run, library or raw, walks them on each claim.
        // No ANALYZE: the table is empty between runs, and statistics of an
        // empty table mislead the next run's cached plans (the raw client's
        // batch delete fell to a third of the library's after one).
        sqlx::query("VACUUM flextide_queue_messages, flextide_queue_dead_letters")
            .execute(&self.raw_pool)
            .await?;
        Ok(())
    }

    async fn raw(&self, queue: &str) -> Res<Option<Arc<dyn Driver>>> {
        let wake = Arc::new(Notify::new());
        let mut listener = PgListener::connect_with(&self.raw_pool).await?;
        listener.listen(CHANNEL).await?;
        let (w, q) = (wake.clone(), queue.to_owned());
        let task = tokio::spawn(async move {
            while let Ok(n) = listener.recv().await {
                if n.payload() == q {
                    w.notify_waiters();
                }
            }
        });
        Ok(Some(Arc::new(RawPg {
            pool: self.raw_pool.clone(),
            queue: queue.to_owned(),
            wake,
            listener: task,
            push: raw_sql::push(),
            push_batch: raw_sql::push_batch(),
            claim: raw_sql::claim(),
            delete_batch: raw_sql::delete_batch(),
            max_attempts: options().max_attempts.map_or(i32::MAX, |n| n as i32),
            reason: max_attempts_reason(options().max_attempts.unwrap_or(i32::MAX as u32)),
            foreign_ids: foreign_id(flextide_queue_postgres::BACKEND, "")
                .as_str()
                .to_owned(),
            lease_ms: options().lease.as_millis() as i64,
        })))
    }
}

/// Raw sqlx on the library's tables.
struct RawPg {
    pool: PgPool,
    queue: String,
    wake: Arc<Notify>,
    listener: tokio::task::JoinHandle<()>,
    push: String,
    push_batch: String,
    claim: String,
    delete_batch: String,
    max_attempts: i32,
    reason: String,
    /// What the claim prefixes a foreign row's seq with to make its id.
    foreign_ids: String,
    lease_ms: i64,
}

impl RawPg {
    async fn claim(&self, max: usize) -> Res<Vec<Popped>> {
        let token: Arc<str> = new_token().into();
        // In the library's transaction, prepared, as the library's claim is.
        let mut tx = self.pool.begin_with(raw_sql::claim_begin()).await?;
        let rows = sqlx::query(AssertSqlSafe(self.claim.clone()))
            .bind(&self.queue)
            .bind(self.max_attempts)
            .bind(&self.reason)
            .bind(max as i64)
            .bind(self.lease_ms)
            .bind(&*token)
            .bind(&self.foreign_ids)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.try_get("seq")?;
                let payload: Vec<u8> = r.try_get("payload")?;
                Ok(Popped {
                    payload: Bytes::from(payload),
                    handle: Handle::Row(seq, token.clone()),
                })
            })
            .collect()
    }
}

#[async_trait]
impl Driver for RawPg {
    async fn push(&self, batch: Vec<Bytes>) -> Res<()> {
        if batch.len() == 1 {
            sqlx::query(AssertSqlSafe(self.push.clone()))
                .bind(&self.queue)
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(&batch[0][..])
                .bind("")
                .bind(0i16)
                .bind(None::<&str>)
                .bind(0i64)
                .bind(CHANNEL)
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        let n = batch.len();
        let ids: Vec<String> = (0..n).map(|_| uuid::Uuid::now_v7().to_string()).collect();
        let payloads: Vec<&[u8]> = batch.iter().map(|b| &b[..]).collect();
        sqlx::query(AssertSqlSafe(self.push_batch.clone()))
            .bind(&self.queue)
            .bind(ids)
            .bind(payloads)
            .bind(vec![""; n])
            .bind(vec![0i16; n])
            .bind(vec![None::<&str>; n])
            .bind(vec![0i64; n])
            .bind(CHANNEL)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn pop(&self, max: usize, wait: Duration) -> Res<Vec<Popped>> {
        let deadline = Instant::now() + wait;
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let got = self.claim(max).await?;
            if !got.is_empty() || Instant::now() >= deadline {
                return Ok(got);
            }
            // Same fallback poll as the library's poll_max.
            let _ = tokio::time::timeout_at(
                deadline.min(Instant::now() + Duration::from_millis(500)),
                woken,
            )
            .await;
        }
    }

    async fn delete(&self, handles: Vec<Handle>) -> Res<()> {
        let rows = expect_handles(handles, |h| {
            if let Handle::Row(s, t) = h {
                Some((s, t))
            } else {
                None
            }
        })?;
        let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let tokens: Vec<&str> = rows.iter().map(|r| &*r.1).collect();
        let deleted = sqlx::query(AssertSqlSafe(self.delete_batch.clone()))
            .bind(seqs)
            .bind(tokens)
            .bind(&self.queue)
            .fetch_all(&self.pool)
            .await?;
        if deleted.len() != rows.len() {
            return Err(format!("raw delete removed {} of {}", deleted.len(), rows.len()).into());
        }
        Ok(())
    }

    async fn cleanup(&self) -> Res<()> {
        self.listener.abort();
        sqlx::query("DELETE FROM flextide_queue_messages WHERE queue = $1")
            .bind(&self.queue)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
