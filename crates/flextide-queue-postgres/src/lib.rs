//! PostgreSQL backend for Flextide Queue (sqlx): FOR UPDATE SKIP LOCKED claims, LISTEN/NOTIFY wake-ups, enqueue in your transaction.
