//! `release`: a delivery given back at once without counting its attempt.

use flextide_queue_core::{Receipt, Result};
use sqlx::{AssertSqlSafe, Row};

use crate::{BACKEND, PostgresQueue, error::map_err};

pub(crate) async fn release(q: &PostgresQueue, receipt: &Receipt) -> Result<()> {
    flextide_queue_sql::release(BACKEND, receipt, &q.wake, |seq, token| async move {
        let row = sqlx::query(AssertSqlSafe(q.sql().release.clone()))
            .bind(&[seq][..])
            .bind(token)
            .bind(&*q.name)
            .bind(q.channel())
            .fetch_one(q.pool())
            .await
            .map_err(map_err)?;
        let settled: i64 = row.try_get("settled").map_err(map_err)?;
        Ok(u64::try_from(settled).unwrap_or(0))
    })
    .await
}
