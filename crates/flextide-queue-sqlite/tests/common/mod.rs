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
