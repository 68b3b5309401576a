//! Helpers shared by this crate's test binaries.
#![allow(dead_code, unreachable_pub)]

use flextide_queue_mysql::{MySqlPool, MySqlPoolOptions, migrate};

/// A queue name no other run uses.
pub fn unique(hint: &str) -> String {
    format!("ft_it_{hint}_{}", &uuid_like()[..12])
}

fn uuid_like() -> String {
    use std::hash::{BuildHasher, RandomState};
    let a = RandomState::new().hash_one(std::time::SystemTime::now());
    let b = RandomState::new().hash_one(std::thread::current().id());
    format!("{a:016x}{b:016x}")
}

/// A pool of 8 on the tables, migrated.
pub async fn setup(url: &str) -> MySqlPool {
    let pool = MySqlPoolOptions::new()
        .max_connections(8)
        .connect(url)
        .await
        .expect("connect");
    migrate(&pool).await.expect("migrate");
    pool
}
