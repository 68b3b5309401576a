//! Opening SQLite pools with the settings a queue needs: WAL, a busy
//! timeout, `synchronous = NORMAL`, and one shared connection for in-memory
//! databases.

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use flextide_queue_core::{QueueError, Result};
use sqlx::{
    ConnectOptions, Connection,
    sqlite::{
        SqliteAutoVacuum, SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    },
};

use crate::{BACKEND, error};

/// How [`connect_pool_with`] opens a pool.
///
/// ```
/// # use std::time::Duration;
/// use flextide_queue_sqlite::PoolSettings;
/// let settings = PoolSettings::default().busy_timeout(Duration::from_secs(10)).max_connections(4);
/// assert_eq!(settings.max_connections, 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// How long a statement waits for another connection or process to
    /// release the write lock before failing with a retryable error.
    /// Default 5 s.
    pub busy_timeout: Duration,
    /// Largest number of connections of a file database's pool (an in-memory
    /// database always uses exactly one). Default 8.
    pub max_connections: u32,
    /// SQLite's `synchronous` setting for file databases. Default `Normal`:
    /// in WAL mode a committed push survives a crash of the process but the
    /// last commits before a power loss or OS crash may be lost. Choose
    /// `Full` to survive those too, at the cost of an fsync per commit.
    pub synchronous: SqliteSynchronous,
    /// How long to wait for a free pooled connection. Default 30 s.
    pub acquire_timeout: Duration,
    /// Page cache of each connection, in KiB (`PRAGMA cache_size = -N`).
    /// Default 2048 (SQLite's own default, set explicitly): the cache a
    /// process holds for a file database is at most this times
    /// `max_connections` (16 MiB by default), whatever the database's size.
    pub cache_size_kib: u32,
    /// Opens new database files with `auto_vacuum = INCREMENTAL`, so that
    /// the pages a drained queue freed go back to the file system: each
    /// handle runs a bounded `PRAGMA incremental_vacuum` when a pop finds
    /// its queue empty (at most every 30 s). Default `false`. The mode of
    /// an existing file only changes with a `VACUUM`
    /// (`sqlite3 FILE 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;'` while no
    /// process uses it); until then this setting logs a warning and does
    /// nothing. Handles of any file already in incremental mode vacuum
    /// whatever this setting.
    pub incremental_vacuum: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            busy_timeout: Duration::from_secs(5),
            max_connections: 8,
            synchronous: SqliteSynchronous::Normal,
            acquire_timeout: Duration::from_secs(30),
            cache_size_kib: 2048,
            incremental_vacuum: false,
        }
    }
}

impl PoolSettings {
    /// Sets [`PoolSettings::busy_timeout`].
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets [`PoolSettings::max_connections`] (at least 1).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Sets [`PoolSettings::synchronous`].
    pub fn synchronous(mut self, synchronous: SqliteSynchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Sets [`PoolSettings::cache_size_kib`] (at least 64).
    pub fn cache_size_kib(mut self, kib: u32) -> Self {
        self.cache_size_kib = kib.max(64);
        self
    }

    /// Sets [`PoolSettings::incremental_vacuum`].
    pub fn incremental_vacuum(mut self, on: bool) -> Self {
        self.incremental_vacuum = on;
        self
    }

    /// Sets [`PoolSettings::acquire_timeout`].
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }
}

/// Where a database lives, parsed from a URL or a path.
pub(crate) struct Target {
    options: SqliteConnectOptions,
    in_memory: bool,
}

impl fmt::Debug for Target {
    // A path can say more about a machine than needed in logs: keep it out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("in_memory", &self.in_memory)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Accepts `sqlite::memory:`, `sqlite://path/to/file.db` (sqlx's URL
    /// forms, with `?mode=` and the other SQLite URI parameters) or a plain
    /// file path. File databases are created when missing.
    /// The same database, never created when missing.
    pub(crate) fn existing_only(mut self) -> Self {
        self.options = self.options.create_if_missing(false);
        self
    }

    /// The file this target names, when it is a file that does not exist.
    pub(crate) fn missing_file(&self) -> Option<&std::path::Path> {
        let path = self.options.get_filename();
        (!self.in_memory && !path.exists()).then_some(path)
    }

    pub(crate) fn parse(url: &str) -> Result<Self> {
        let url = url.trim();
        if url.is_empty() {
            return Err(QueueError::configuration(
                BACKEND,
                "empty SQLite URL; use sqlite://path/to/file.db or sqlite::memory:",
            ));
        }
        let (database, params) = match url.strip_prefix("sqlite:") {
            Some(rest) => {
                let rest = rest.strip_prefix("//").unwrap_or(rest);
                match rest.split_once('?') {
                    Some((db, params)) => (db, Some(params)),
                    None => (rest, None),
                }
            }
            None => (url, None),
        };
        let wants_memory = database == ":memory:"
            || params.is_some_and(|p| p.split('&').any(|kv| kv == "mode=memory"));
        let explicit_mode = params.is_some_and(|p| p.split('&').any(|kv| kv.starts_with("mode=")));
        let options = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url).map_err(|e| {
                QueueError::configuration(
                    BACKEND,
                    format!("invalid SQLite URL (expected sqlite://path or sqlite::memory:): {e}"),
                )
            })?
        } else if url == ":memory:" {
            SqliteConnectOptions::from_str("sqlite::memory:").map_err(error::map)?
        } else {
            SqliteConnectOptions::new().filename(database)
        };
        let options = if explicit_mode {
            options
        } else {
            options.create_if_missing(true)
        };
        Ok(Target {
            options,
            in_memory: wants_memory,
        })
    }
}

/// Opens a pool on `url` with the default [`PoolSettings`]; see
/// [`connect_pool_with`].
pub async fn connect_pool(url: &str) -> Result<SqlitePool> {
    connect_pool_with(url, &PoolSettings::default()).await
}

/// Opens a pool on `url` (`sqlite://path/to/file.db`, a plain path, or
/// `sqlite::memory:`) set up for queues. It does not create the tables:
/// call [`migrate`](crate::migrate) (or [`SqliteQueue::connect`](crate::SqliteQueue::connect),
/// which does).
///
/// A file database is switched to WAL mode (a lasting property of the file),
/// and each connection gets `busy_timeout` and `synchronous` from
/// `settings`. An in-memory database lives as long as the pool and is
/// served by one connection, so every queue on the pool sees the same data;
/// each call opens a new, empty in-memory database.
pub async fn connect_pool_with(url: &str, settings: &PoolSettings) -> Result<SqlitePool> {
    let target = Target::parse(url)?;
    open_target(target, settings).await
}

pub(crate) async fn open_target(target: Target, settings: &PoolSettings) -> Result<SqlitePool> {
    let mut options = target
        .options
        .busy_timeout(settings.busy_timeout)
        .pragma("cache_size", format!("-{}", settings.cache_size_kib));
    if settings.incremental_vacuum && !target.in_memory {
        // Takes effect on a new file only (before its first table).
        options = options.auto_vacuum(SqliteAutoVacuum::Incremental);
    }
    if target.in_memory {
        // One connection that never closes: the database lives in it, and
        // every handle on the pool sees the same data.
        return SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(error::map);
    }
    enable_wal(&options, settings.busy_timeout).await?;
    let pool = SqlitePoolOptions::new()
        .max_connections(settings.max_connections.max(1))
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options.synchronous(settings.synchronous))
        .await
        .map_err(error::map)?;
    if settings.incremental_vacuum {
        warn_unless_incremental(&pool).await?;
    }
    Ok(pool)
}

/// An existing file keeps its `auto_vacuum` mode until a `VACUUM`: say so.
async fn warn_unless_incremental(pool: &SqlitePool) -> Result<()> {
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(pool)
        .await
        .map_err(error::map)?;
    let tables: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master")
        .fetch_one(pool)
        .await
        .map_err(error::map)?;
    // A file with no table yet takes the mode with its first table.
    if mode != 2 && tables > 0 {
        tracing::warn!(
            "sqlite: incremental_vacuum is on, but this database file was created without it, \
             so the space freed by acknowledged messages is not given back; run \
             `PRAGMA auto_vacuum = INCREMENTAL; VACUUM;` on it once while no process uses it"
        );
    }
    Ok(())
}

/// Switches the file to WAL once, on a connection of its own. Changing the
/// journal mode needs a lock SQLite's busy handler does not wait for, so
/// several processes starting at once retry here instead of failing.
async fn enable_wal(options: &SqliteConnectOptions, busy_timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + busy_timeout.max(Duration::from_secs(1));
    let mut pause = Duration::from_millis(5);
    loop {
        let attempt = async {
            let mut conn = options.clone().connect().await?;
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut conn)
                .await?;
            if !mode.eq_ignore_ascii_case("wal") {
                sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
                    .fetch_one(&mut conn)
                    .await?;
            }
            conn.close().await
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if error::is_busy(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Err(e) => return Err(error::map(e)),
        }
    }
}

/// The key under which handles of one database share their wake-ups: the
/// canonical file path, or sqlx's unique name of an in-memory database.
pub(crate) fn database_key(pool: &SqlitePool) -> PathBuf {
    let options = pool.connect_options();
    let file = options.get_filename();
    std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf())
}

/// Removes a database file and its `-wal` and `-shm` companions, ignoring
/// files that do not exist.
#[cfg(test)]
pub(crate) fn remove_database_files(path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_paths() {
        assert!(Target::parse("sqlite::memory:").unwrap().in_memory);
        assert!(Target::parse(":memory:").unwrap().in_memory);
        assert!(!Target::parse("sqlite://data/q.db").unwrap().in_memory);
        assert!(!Target::parse("/tmp/q.db").unwrap().in_memory);
        assert!(Target::parse("").is_err());
        assert!(matches!(
            Target::parse("sqlite://x.db?bogus=1"),
            Err(QueueError::Configuration { .. })
        ));
    }

    #[test]
    fn debug_hides_the_path() {
        let t = Target::parse("sqlite:///secret/place.db").unwrap();
        assert!(!format!("{t:?}").contains("secret"));
    }
}
