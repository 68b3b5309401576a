//! The MySQL schema: `migrate` run twice and at once, a missing table
//! asking for it, rows other producers insert by hand, and an old schema
//! upgrading with its rows.
//!
//! Needs `FLEXTIDE_TEST_MYSQL_URL` (e.g. `mysql://root@127.0.0.1:3306/test`);
//! shown as ignored without it unless `FLEXTIDE_TEST_REQUIRE` names `mysql`.

mod common;

use std::time::Duration;

use common::{setup, unique};
use flextide_queue_conformance::integration_test;
use flextide_queue_mysql::{
    MySqlPoolOptions, MySqlQueue,
    core::{Message, QueueError, QueueOptions, QueueProvider},
    drop_queue, migrate, sqlx,
};

async fn migrate_twice_and_concurrently_is_harmless(url: String) {
    let pool = setup(&url).await;
    let other = MySqlPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap();
    let (a, b) = tokio::join!(migrate(&pool), migrate(&other));
    a.unwrap();
    b.unwrap();
    migrate(&pool).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM flextide_queue_schema ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        versions,
        (1..=flextide_queue_mysql::MIGRATIONS.len() as i64).collect::<Vec<_>>()
    );
    let sqlx_table: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'flextide_queue_schema'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(sqlx_table, 1);
}

async fn missing_tables_ask_for_migrate(url: String) {
    let admin = setup(&url).await;
    let db = unique("nodb");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{db}`")))
        .execute(&admin)
        .await
        .unwrap();
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap();
    let empty = MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{base}/{db}"))
        .await
        .unwrap();
    let q = MySqlQueue::from_pool(empty.clone(), "q", QueueOptions::default()).unwrap();
    let err = q.push(Message::new("x")).await.unwrap_err();
    empty.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE `{db}`")))
        .execute(&admin)
        .await
        .unwrap();
    assert!(matches!(err, QueueError::Configuration { .. }), "{err}");
    assert!(err.to_string().contains("migrate()"));
    assert!(!err.is_retryable());
}

/// Another producer's plain INSERT names `priority` but not `pri_inv` (the
/// claim index's column): the row must still be delivered in priority order.
async fn a_plain_insert_with_a_priority_is_claimed_in_priority_order(url: String) {
    let pool = setup(&url).await;
    let name = unique("pri");
    let q = MySqlQueue::from_pool(pool.clone(), &name, QueueOptions::default()).unwrap();
    let low = q.push(Message::new("low")).await.unwrap();
    sqlx::query(
        "INSERT INTO flextide_queue_messages (queue, id, payload, headers, priority, enqueued_at, visible_at)
         VALUES (?, 'urgent', 'urgent', '', 9, CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED), CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED))",
    )
    .bind(&name)
    .execute(&pool)
    .await
    .unwrap();
    let first = q.pop(Duration::from_secs(2)).await.unwrap().unwrap();
    let second = q.pop(Duration::from_secs(2)).await.unwrap().unwrap();
    assert_eq!(
        (first.message.id.as_str(), first.message.priority),
        ("urgent", 9)
    );
    assert_eq!(second.message.id, low);
    drop_queue(&pool, &name).await.unwrap();
}

/// A database at schema version 1 (where writers filled `pri_inv` in, and
/// another producer's rows kept its default) upgrades with its rows intact
/// and in priority order.
async fn an_old_schema_upgrades_with_its_rows(url: String) {
    let admin = setup(&url).await;
    let db = unique("old");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{db}`")))
        .execute(&admin)
        .await
        .unwrap();
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap();
    let old = MySqlPoolOptions::new()
        .max_connections(2)
        .connect(&format!("{base}/{db}"))
        .await
        .unwrap();
    let v1 = &flextide_queue_mysql::MIGRATIONS[0];
    sqlx::raw_sql(sqlx::AssertSqlSafe(v1.sql))
        .execute(&old)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE flextide_queue_schema (version BIGINT NOT NULL PRIMARY KEY, description VARCHAR(200) NOT NULL, applied_at BIGINT NOT NULL);
         INSERT INTO flextide_queue_schema VALUES (1, 'create queue tables', 0);
         INSERT INTO flextide_queue_messages (queue, id, payload, headers, priority, pri_inv, enqueued_at, visible_at)
         VALUES ('q', 'ours-low', 'a', '', 0, 255, 1, 1), ('q', 'ours-high', 'b', '', 5, 250, 2, 2);
         INSERT INTO flextide_queue_messages (queue, id, payload, headers, priority, enqueued_at, visible_at)
         VALUES ('q', 'theirs', 'c', '', 9, 3, 3);",
    )
    .execute(&old)
    .await
    .unwrap();
    migrate(&old).await.unwrap();
    migrate(&old).await.unwrap();
    // Each file applied again by hand changes nothing (a half-applied
    // migration is simply applied again).
    for m in flextide_queue_mysql::MIGRATIONS {
        sqlx::raw_sql(sqlx::AssertSqlSafe(m.sql))
            .execute(&old)
            .await
            .unwrap();
    }
    let q = MySqlQueue::from_pool(old.clone(), "q", QueueOptions::default()).unwrap();
    let popped = q.pop_batch(10, Duration::from_secs(2)).await.unwrap();
    let ids: Vec<String> = popped
        .iter()
        .map(|d| d.message.id.as_str().to_owned())
        .collect();
    // Version 3: unique pushes on the upgraded tables.
    let first = q.push(Message::new("u1").with_dedup_id("u")).await.unwrap();
    let again = q.push(Message::new("u2").with_dedup_id("u")).await.unwrap();
    old.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE `{db}`")))
        .execute(&admin)
        .await
        .unwrap();
    assert_eq!(ids, ["theirs", "ours-high", "ours-low"]);
    assert_eq!(again, first);
}

async fn connector_admin_operations(url: String) {
    flextide_queue_sql::test_support::check_admin_by_url(
        &flextide_queue_mysql::MySqlConnector,
        &url,
    )
    .await;
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run_integration(
        "mysql",
        "FLEXTIDE_TEST_MYSQL_URL",
        vec![
            integration_test!(connector_admin_operations),
            integration_test!(migrate_twice_and_concurrently_is_harmless),
            integration_test!(missing_tables_ask_for_migrate),
            integration_test!(a_plain_insert_with_a_priority_is_claimed_in_priority_order),
            integration_test!(an_old_schema_upgrades_with_its_rows),
        ],
    )
}
