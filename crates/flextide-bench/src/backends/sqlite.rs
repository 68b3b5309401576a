//! SQLite (a file in the temp folder, WAL, the library's default pool
//! settings) beside raw sqlx running the library's statements (its own
//! texts, from `flextide_queue_sqlite::raw_sql`) on the same pool.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use flextide_queue_core::{
    QueueProvider,
    backend::{foreign_id, new_token, now_millis},
};
use flextide_queue_sqlite::{
    SqlitePool, SqliteQueue, connect_pool, drop_queue, migrate,
    raw_sql::{CLAIM_SQL, INSERT_HEAD, INSERT_SQL, SWEEP_CHECK_SQL, delete_batch},
    sqlx::{self, QueryBuilder, Row, Sqlite as Db},
};

use super::{Backend, options};
use crate::driver::{Driver, Handle, Popped, Res, expect_handles};

/// A fresh database file for the run, removed at the end.
#[derive(Debug)]
pub(crate) struct Sqlite {
    pool: SqlitePool,
    path: std::path::PathBuf,
}

impl Sqlite {
    pub(crate) async fn connect() -> Res<Self> {
        let path = std::env::temp_dir().join(format!(
            "flextide-bench-{}.db",
            uuid::Uuid::new_v4().simple()
        ));
        let pool = connect_pool(&format!("sqlite://{}", path.display())).await?;
        migrate(&pool).await?;
        Ok(Sqlite { pool, path })
    }
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", self.path.display()));
        }
    }
}

#[async_trait]
impl Backend for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn footprint(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (key, sql) in [
            ("pages", "PRAGMA page_count"),
            ("free pages", "PRAGMA freelist_count"),
            (
                "rows of ftmq_ queues",
                "SELECT (SELECT count(*) FROM flextide_queue_messages WHERE queue LIKE 'ftmq%') \
                 + (SELECT count(*) FROM flextide_queue_dead_letters WHERE queue LIKE 'ftmq%')",
            ),
        ] {
            let v: Result<i64, _> = sqlx::query_scalar(sql).fetch_one(&self.pool).await;
            out.push((
                key.to_owned(),
                v.map_or_else(|e| format!("unknown ({e})"), |v| v.to_string()),
            ));
        }
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        out.push((
            "file size".into(),
            format!("{:.1} MiB", size as f64 / 1024.0 / 1024.0),
        ));
        out
    }

    async fn info(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (key, sql) in [
            ("version", "SELECT sqlite_version()"),
            ("journal_mode", "PRAGMA journal_mode"),
            ("synchronous", "PRAGMA synchronous"),
        ] {
            let v: Result<String, _> = match key {
                "synchronous" => sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&self.pool)
                    .await
                    .map(|v| {
                        match v {
                            0 => "OFF",
                            1 => "NORMAL",
                            2 => "FULL",
                            _ => "EXTRA",
                        }
                        .to_owned()
                    }),
                _ => sqlx::query_scalar(sql).fetch_one(&self.pool).await,
            };
            out.push((
                key.to_owned(),
                v.unwrap_or_else(|e| format!("unknown ({e})")),
            ));
        }
        out.push((
            "pool".into(),
            "library defaults (8 connections), shared with the raw client".into(),
        ));
        out
    }

    async fn library(&self, queue: &str) -> Res<Arc<dyn QueueProvider>> {
        Ok(Arc::new(SqliteQueue::from_pool(
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
        Ok(Some(Arc::new(RawSqlite {
            pool: self.pool.clone(),
            queue: queue.to_owned(),
        })))
    }

    fn raw_waits(&self) -> bool {
        false
    }
}

struct RawSqlite {
    pool: SqlitePool,
    queue: String,
}

#[async_trait]
impl Driver for RawSqlite {
    async fn push(&self, batch: Vec<Bytes>) -> Res<()> {
        let now = now_millis();
        let ids: Vec<String> = batch
            .iter()
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        if batch.len() == 1 {
            sqlx::query(INSERT_SQL)
                .bind(&self.queue)
                .bind(&ids[0])
                .bind(&batch[0][..])
                .bind("")
                .bind(0i64)
                .bind(None::<&str>)
                .bind(now)
                .bind(now)
                .bind(None::<&str>)
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        let mut insert = QueryBuilder::<Db>::new(INSERT_HEAD);
        insert.push_values(batch.iter().zip(&ids), |mut row, (p, id)| {
            row.push_bind(self.queue.as_str())
                .push_bind(id.as_str())
                .push_bind(&p[..])
                .push_bind("")
                .push_bind(0i64)
                .push_bind(None::<&str>)
                .push_bind(now)
                .push_bind(now)
                .push_bind(None::<&str>);
        });
        insert.build().execute(&self.pool).await?;
        Ok(())
    }

    async fn pop(&self, max: usize, _wait: Duration) -> Res<Vec<Popped>> {
        let now = now_millis();
        let max_attempts = i64::from(options().max_attempts.unwrap_or(u32::MAX));
        let _needed: bool = sqlx::query_scalar(SWEEP_CHECK_SQL)
            .bind(&self.queue)
            .bind(now)
            .bind(max_attempts)
            .fetch_one(&self.pool)
            .await?;
        let token: Arc<str> = new_token().into();
        let rows = sqlx::query(CLAIM_SQL)
            .bind(&*token)
            .bind(now + options().lease.as_millis() as i64)
            .bind(&self.queue)
            .bind(now)
            .bind(max_attempts)
            .bind(max as i64)
            .bind(
                foreign_id(flextide_queue_sqlite::BACKEND, "")
                    .as_str()
                    .to_owned(),
            )
            .fetch_all(&self.pool)
            .await?;
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

    async fn delete(&self, handles: Vec<Handle>) -> Res<()> {
        let rows = expect_handles(handles, |h| {
            if let Handle::Row(s, t) = h {
                Some((s, t))
            } else {
                None
            }
        })?;
        let deleted = delete_batch(
            &self.queue,
            rows.iter().map(|(seq, token)| (*seq, &**token)),
        )
        .build()
        .fetch_all(&self.pool)
        .await?;
        if deleted.len() != rows.len() {
            return Err(format!("raw delete removed {} of {}", deleted.len(), rows.len()).into());
        }
        Ok(())
    }

    async fn cleanup(&self) -> Res<()> {
        drop_queue(&self.pool, &self.queue).await?;
        Ok(())
    }
}
