//! One migrator for every engine: each supplies only its migration files,
//! its version table and its statement to record a version.

use flextide_queue_core::Result;
use sqlx::{AssertSqlSafe, Database, Encode, Executor, IntoArguments, Type};

use crate::Dialect;

/// One schema step: its version, a name, and the SQL (also shipped as a file
/// under the crate's `migrations/` for your own migration tooling).
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Increasing version number, recorded once applied.
    pub version: i64,
    /// Short description, recorded beside the version.
    pub name: &'static str,
    /// The statements, each idempotent.
    pub sql: &'static str,
}

/// What an engine supplies to [`migrate`].
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The engine's error vocabulary.
    pub dialect: &'static Dialect,
    /// Every migration, oldest first.
    pub migrations: &'static [Migration],
    /// Creates the version table if it is missing.
    pub create_version_table: &'static str,
    /// Lists the versions applied (one `BIGINT` column).
    pub applied: &'static str,
    /// Records a version: binds the version, then the name.
    pub record: &'static str,
    /// Whether a migration file is sent statement by statement (split on
    /// `;` after dropping `--` comment lines), for servers that take one
    /// statement per call.
    pub split: bool,
}

/// Applies the migrations of `plan` not yet recorded, on `conn`, oldest
/// first; returns the versions applied (empty when up to date). The caller
/// holds the engine's lock (and transaction, where DDL is transactional):
/// concurrent callers then wait, and find the work done.
pub async fn migrate<DB>(conn: &mut DB::Connection, plan: &Plan) -> Result<Vec<i64>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    i64: Type<DB> + for<'r> sqlx::Decode<'r, DB> + for<'q> Encode<'q, DB>,
    &'static str: Type<DB> + for<'q> Encode<'q, DB>,
{
    let map = |e| plan.dialect.map(e);
    sqlx::raw_sql(AssertSqlSafe(plan.create_version_table))
        .execute(&mut *conn)
        .await
        .map_err(map)?;
    let done: Vec<i64> = sqlx::query_scalar::<DB, i64>(AssertSqlSafe(plan.applied))
        .fetch_all(&mut *conn)
        .await
        .map_err(map)?;
    let mut applied = Vec::new();
    for m in plan
        .migrations
        .iter()
        .filter(|m| !done.contains(&m.version))
    {
        // Where DDL commits implicitly (MySQL) a migration cannot be one
        // transaction: its statements are idempotent instead, and a
        // half-applied one is simply applied again.
        let statements = if plan.split {
            statements(m.sql)
        } else {
            vec![m.sql.to_owned()]
        };
        for statement in statements {
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut *conn)
                .await
                .map_err(map)?;
        }
        sqlx::query::<DB>(AssertSqlSafe(plan.record))
            .bind(m.version)
            .bind(m.name)
            .execute(&mut *conn)
            .await
            .map_err(map)?;
        tracing::info!(
            backend = plan.dialect.backend,
            version = m.version,
            name = m.name,
            "flextide queue schema migrated"
        );
        applied.push(m.version);
    }
    Ok(applied)
}

/// Splits a migration file into statements: drops `--` comment lines, splits
/// on `;`. The files are written so that no statement contains a `;`.
fn statements(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .map(|line| format!("{line}\n"))
        .collect();
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use super::*;
    use crate::Class;

    const DIALECT: Dialect = Dialect {
        backend: "t",
        engine: "Test",
        migrate: "migrate()",
        classify: |_| Class::Other,
    };
    const PLAN: Plan = Plan {
        dialect: &DIALECT,
        migrations: &[
            Migration {
                version: 1,
                name: "one",
                sql: "-- a comment; with a semicolon\nCREATE TABLE IF NOT EXISTS a (x INTEGER);\nCREATE TABLE IF NOT EXISTS b (y INTEGER)",
            },
            Migration {
                version: 2,
                name: "two",
                sql: "CREATE INDEX IF NOT EXISTS a_x ON a (x)",
            },
        ],
        create_version_table: "CREATE TABLE IF NOT EXISTS v (version INTEGER PRIMARY KEY, name TEXT NOT NULL)",
        applied: "SELECT version FROM v",
        record: "INSERT INTO v (version, name) VALUES (?, ?)",
        split: true,
    };

    #[test]
    fn files_split_into_statements() {
        assert_eq!(statements(PLAN.migrations[0].sql).len(), 2);
    }

    #[tokio::test]
    async fn migrating_twice_is_harmless() {
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        assert_eq!(
            migrate::<sqlx::Sqlite>(&mut conn, &PLAN).await.unwrap(),
            [1, 2]
        );
        assert!(
            migrate::<sqlx::Sqlite>(&mut conn, &PLAN)
                .await
                .unwrap()
                .is_empty()
        );
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM v")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, 2);
    }
}
