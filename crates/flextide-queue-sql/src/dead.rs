//! `delete_dead_letters`: chosen dead letters removed by id, the same way on
//! every engine. One `DELETE … WHERE queue = ? AND id IN (…)` per chunk of
//! ids; the placeholders are the engine's own (`QueryBuilder` writes `$n` or
//! `?`), so the statement is written once here.

use std::future::Future;

use flextide_queue_core::{MessageId, Result};
use sqlx::{Database, Encode, QueryBuilder, Type};

/// Ids bound per statement: well under every engine's limit on bound
/// parameters (SQLite 32766, MySQL and PostgreSQL 65535), and small enough
/// that one statement holds its row locks briefly.
pub const DELETE_DEAD_LETTERS_CHUNK: usize = 1000;

/// Deletes the dead letters of `queue` in `table` (the dead-letter table's
/// name as the engine should read it, schema prefix included) whose ids are
/// in `ids`, and returns how many rows went. `run` executes one built
/// statement and returns the rows it affected. Ids not found are ignored;
/// an id named twice counts once, since its row goes once.
pub async fn delete_dead_letters<DB, F, Fut>(
    table: &str,
    queue: &str,
    ids: &[MessageId],
    mut run: F,
) -> Result<u64>
where
    DB: Database,
    DB::Arguments: Default,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    F: FnMut(QueryBuilder<DB>) -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let mut deleted = 0;
    for chunk in ids.chunks(DELETE_DEAD_LETTERS_CHUNK) {
        deleted += run(statement(table, queue, chunk)).await?;
    }
    Ok(deleted)
}

fn statement<DB>(table: &str, queue: &str, ids: &[MessageId]) -> QueryBuilder<DB>
where
    DB: Database,
    DB::Arguments: Default,
    String: for<'t> Encode<'t, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(format!("DELETE FROM {table} WHERE queue = "));
    sql.push_bind(queue.to_owned()).push(" AND id IN (");
    let mut list = sql.separated(", ");
    for id in ids {
        list.push_bind(id.as_str().to_owned());
    }
    sql.push(")");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_statement_names_the_queue_and_every_id() {
        let ids = [MessageId::new("a"), MessageId::new("b")];
        let sql = statement::<sqlx::Sqlite>("flextide_queue_dead_letters", "q", &ids).into_string();
        assert_eq!(
            sql,
            "DELETE FROM flextide_queue_dead_letters WHERE queue = ? AND id IN (?, ?)"
        );
    }

    #[tokio::test]
    async fn ids_go_in_chunks_and_counts_add_up() {
        let ids: Vec<MessageId> = (0..DELETE_DEAD_LETTERS_CHUNK + 1)
            .map(|i| MessageId::new(i.to_string()))
            .collect();
        let mut statements = 0;
        let n = delete_dead_letters::<sqlx::Sqlite, _, _>("t", "q", &ids, |_| {
            statements += 1;
            async { Ok(2) }
        })
        .await
        .unwrap();
        assert_eq!((statements, n), (2, 4));
    }

    #[tokio::test]
    async fn no_ids_run_no_statement() {
        let n = delete_dead_letters::<sqlx::Sqlite, _, _>("t", "q", &[], |_| async {
            panic!("no statement for no ids")
        })
        .await
        .unwrap();
        assert_eq!(n, 0);
    }
}
