//! A lease row per schedule in PostgreSQL.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use flextide_worker::{BoxError, Lease, ScheduleLock};
use sqlx::{PgPool, Row};

use crate::{from_millis, millis};

/// Creates the table. The transaction-scoped advisory lock (key
/// "ftsched" in ASCII, as a 64-bit bit string) serialises concurrent
/// creations: two `CREATE TABLE IF NOT EXISTS` racing on a new database
/// fail with a duplicate key in `pg_type` (seen when two schedulers started
/// at once).
const CREATE: &str = "SELECT pg_advisory_xact_lock(x'0066747363686564'::bigint);
CREATE TABLE IF NOT EXISTS flextide_schedule_locks (
    key text PRIMARY KEY,
    holder text NOT NULL,
    until timestamptz NOT NULL,
    token bigint NOT NULL,
    handled_ms bigint
)";

// One statement: insert, take over an expired lease (new token), or renew
// one's own (same token); no row returned when another holder's lease
// is alive. Times are the server's, so host clocks do not matter.
const ACQUIRE: &str = "INSERT INTO flextide_schedule_locks AS l (key, holder, until, token)
VALUES ($1, $2, now() + $3 * interval '1 millisecond', 1)
ON CONFLICT (key) DO UPDATE SET
    token = CASE WHEN l.holder = EXCLUDED.holder AND l.until > now() THEN l.token ELSE l.token + 1 END,
    holder = EXCLUDED.holder,
    until = EXCLUDED.until
WHERE l.holder = EXCLUDED.holder OR l.until <= now()
RETURNING token, handled_ms";

const RECORD: &str = "UPDATE flextide_schedule_locks SET handled_ms = $3
WHERE key = $1 AND token = $2 AND until > now()";

const RELEASE: &str = "UPDATE flextide_schedule_locks SET until = now() - interval '1 millisecond'
WHERE key = $1 AND holder = $2";

/// A [`ScheduleLock`] on PostgreSQL: one row per schedule in
/// `flextide_schedule_locks` holding the holder, the lease's end (server
/// time), the fencing token and the handled moment.
///
/// A lease row rather than `pg_try_advisory_lock`: an advisory lock
/// belongs to one pooled connection and ends only when that connection
/// does, has no expiry of its own and no place for the fencing token or
/// the handled moment, which a new holder needs to continue.
#[derive(Debug, Clone)]
pub struct PostgresScheduleLock {
    pool: PgPool,
}

impl PostgresScheduleLock {
    /// A lock on `pool`, creating its table if it does not exist (safe
    /// from several processes at once).
    pub async fn new(pool: PgPool) -> Result<Self, BoxError> {
        // Both statements in one simple query, which PostgreSQL runs as
        // one implicit transaction to its end even if this future is
        // dropped half-way (an explicit BEGIN through sqlx is not
        // cancel-safe: it could leave a pooled connection in a
        // transaction sqlx does not know of).
        sqlx::raw_sql(CREATE).execute(&pool).await?;
        Ok(PostgresScheduleLock { pool })
    }

    /// Connects to `url` (a small pool of 2) and creates the table if needed.
    pub async fn connect(url: &str) -> Result<Self, BoxError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await?;
        Self::new(pool).await
    }
}

#[async_trait]
impl ScheduleLock for PostgresScheduleLock {
    async fn acquire(
        &self,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, BoxError> {
        let row = sqlx::query(ACQUIRE)
            .bind(key)
            .bind(holder)
            .bind(ttl.as_millis().min(i64::MAX as u128) as f64)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            None => None,
            Some(row) => Some(Lease {
                token: row.try_get::<i64, _>("token")? as u64,
                handled: row
                    .try_get::<Option<i64>, _>("handled_ms")?
                    .map(from_millis),
            }),
        })
    }

    async fn record(
        &self,
        key: &str,
        lease: &Lease,
        handled: SystemTime,
    ) -> Result<bool, BoxError> {
        let done = sqlx::query(RECORD)
            .bind(key)
            .bind(lease.token as i64)
            .bind(millis(handled))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, key: &str, holder: &str) -> Result<(), BoxError> {
        sqlx::query(RELEASE)
            .bind(key)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
