//! `release`: a delivery given back at once without counting its attempt.

use flextide_queue_core::{Receipt, Result};

use crate::{BACKEND, MySqlQueue, error::map_err, sql::RELEASE_ONE_SQL};

pub(crate) async fn release(q: &MySqlQueue, receipt: &Receipt) -> Result<()> {
    flextide_queue_sql::release(BACKEND, receipt, &q.notify, |seq, token| async move {
        let done = sqlx::query(RELEASE_ONE_SQL)
            .bind(seq)
            .bind(&*q.name)
            .bind(token)
            .execute(&q.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    })
    .await
}
