//! Helpers shared by this crate's test binaries.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

/// A database file under the system's temp dir that no other run uses,
/// removed (with its -wal and -shm files) when dropped.
pub struct TempDb {
    pub path: PathBuf,
}

impl TempDb {
    pub fn new(hint: &str) -> Self {
        let unique = flextide_queue_core::backend::new_token();
        let path = std::env::temp_dir().join(format!(
            "flextide-sqlite-{hint}-{}-{}.db",
            std::process::id(),
            &unique[..12]
        ));
        TempDb { path }
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        remove_db(&self.path);
    }
}

pub fn remove_db(path: &Path) {
    let _ = std::fs::remove_file(path);
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

/// Writes `entry` into queue `queue` with plain SQL, as another producer
/// would (contract clause 12): an empty id, no headers, its own clock.
pub async fn write_foreign(
    pool: &flextide_queue_sqlite::SqlitePool,
    queue: &str,
    entry: flextide_queue_conformance::ForeignEntry,
) -> Result<bool, flextide_queue_core::QueueError> {
    let Some((payload, headers)) = flextide_queue_sql::test_support::foreign_row(entry) else {
        return Ok(false);
    };
    let now = flextide_queue_core::backend::now_millis();
    flextide_queue_sqlite::sqlx::query(
        "INSERT INTO flextide_queue_messages (queue, id, payload, headers, enqueued_at, visible_at)
         VALUES (?1, '', ?2, ?3, ?4, ?4)",
    )
    .bind(queue)
    .bind(payload)
    .bind(headers.unwrap_or(""))
    .bind(now)
    .execute(pool)
    .await
    .map_err(|e| flextide_queue_core::QueueError::backend_error("sqlite", false, e))?;
    Ok(true)
}

/// The settings of a harness that implements [`write_foreign`].
pub fn settings() -> flextide_queue_conformance::HarnessSettings {
    flextide_queue_sql::test_support::harness_settings(false)
}
