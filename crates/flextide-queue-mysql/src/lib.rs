//! MySQL 8 / MariaDB 10.6+ backend for Flextide Queue (sqlx): FOR UPDATE SKIP LOCKED claims, enqueue in your transaction.
