//! SQLite backend for Flextide Queue (sqlx): the embedded default, correct across processes sharing one file.
