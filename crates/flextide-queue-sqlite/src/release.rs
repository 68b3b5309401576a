//! `release`: a delivery given back at once without counting its attempt.

use flextide_queue_core::{Receipt, Result, backend};

use crate::{BACKEND, SqliteQueue, error, sql::RELEASE_ONE_SQL};

pub(crate) async fn release(q: &SqliteQueue, receipt: &Receipt) -> Result<()> {
    let inner = &q.inner;
    flextide_queue_sql::release(BACKEND, receipt, &inner.wake, |seq, token| async move {
        let done = sqlx::query(RELEASE_ONE_SQL)
            .bind(seq)
            .bind(inner.name.as_str())
            .bind(token)
            .bind(backend::now_millis())
            .execute(&inner.pool)
            .await
            .map_err(error::map)?;
        Ok(done.rows_affected())
    })
    .await
}
