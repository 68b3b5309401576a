//! Unique pushes on PostgreSQL beyond the conformance group `dedup::`:
//! transactions holding a dedup id, pools racing, the sweep of expired rows.

use std::{sync::Arc, time::Duration};

use flextide_queue_conformance::unique_queue_name;
use flextide_queue_core::{Message, Pushed, QueueError, QueueOptions, QueueProvider};
use flextide_queue_postgres::{PostgresConfig, sqlx};
use flextide_queue_sql::test_support::{
    check_next_is, check_nothing_ready, check_unique_pushes_race,
};

use crate::{Cleanup, backend, open};

/// A dedup id claimed in a transaction holds off a push of it from another
/// pool until the transaction ends: a rollback lets that push win, a commit
/// makes it a duplicate. A retried push of the very same message is a
/// duplicate too, and a fresh backend's first unique push sweeps expired rows.
pub(crate) async fn unique_pushes_follow_transactions_across_pools(url: String) {
    let b = backend(&url, PostgresConfig::default()).await;
    let other = backend(&url, PostgresConfig::default()).await;
    let (q, _c) = open(&b, &url, "pg_dedup", QueueOptions::default());
    let q2 = other
        .queue(q.queue_name(), QueueOptions::default())
        .unwrap();
    for commit in [false, true] {
        let key = format!("k-{commit}");
        let mut tx = b.pool().begin().await.unwrap();
        let mine = Message::new("in tx").with_dedup_id(key.as_str());
        assert_eq!(
            q.push_unique_in_tx(&mut tx, mine.clone()).await.unwrap(),
            Pushed::Enqueued(mine.id.clone())
        );
        let theirs = Message::new("other pool").with_dedup_id(key.as_str());
        let racer = tokio::spawn({
            let (q2, theirs) = (q2.clone(), theirs.clone());
            async move { q2.push_unique(theirs).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !racer.is_finished(),
            "the other push must wait for the transaction"
        );
        let (outcome, winner) = if commit {
            tx.commit().await.unwrap();
            (Pushed::Duplicate(mine.id.clone()), mine.id)
        } else {
            tx.rollback().await.unwrap();
            (Pushed::Enqueued(theirs.id.clone()), theirs.id)
        };
        assert_eq!(racer.await.unwrap().unwrap(), outcome);
        check_next_is(&q, &winner).await;
    }
    let retried = Message::new("retried").with_dedup_id("r");
    assert!(!q.push_unique(retried.clone()).await.unwrap().is_duplicate());
    assert_eq!(
        q.push_unique(retried.clone()).await.unwrap(),
        Pushed::Duplicate(retried.id.clone())
    );
    check_next_is(&q, &retried.id).await;
    // A refused message keeps its index; the others' dedup ids still hold.
    let (b1, b2) = (Message::new("b1"), Message::new("b2"));
    let err = q
        .push_batch(vec![
            Message::new("long").with_dedup_id("x".repeat(256)),
            b1.clone().with_dedup_id("b"),
            b2.with_dedup_id("b"),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, QueueError::PartialBatch { failures, .. } if failures.len() == 1 && failures[0].index == 0),
        "{err:?}"
    );
    assert_eq!(
        q.push(Message::new("b3").with_dedup_id("b")).await.unwrap(),
        b1.id
    );
    check_next_is(&q, &b1.id).await;
    check_nothing_ready(&q).await;
    // A fresh backend's first unique push sweeps expired rows. Other tests'
    // sweeps run at the same time and skip the rows one holds (SKIP LOCKED),
    // so one push may find the row held by a sweep not yet committed: the
    // row must be gone after a few fresh backends, each sweeping first.
    sqlx::query(
        "INSERT INTO flextide_queue_dedup (queue, dedup_id, message_id, expires_at) VALUES ($1, 'old', 'x', 0)",
    )
    .bind(q.queue_name())
    .execute(b.pool())
    .await
    .unwrap();
    let mut old: i64 = 1;
    for round in 0..20 {
        let fresh = backend(&url, PostgresConfig::default()).await;
        let q3 = fresh
            .queue(q.queue_name(), QueueOptions::default())
            .unwrap();
        let id = q3
            .push(Message::new("s").with_dedup_id(format!("s{round}")))
            .await
            .unwrap();
        check_next_is(&q, &id).await;
        old = sqlx::query_scalar(
            "SELECT count(*) FROM flextide_queue_dedup WHERE queue = $1 AND dedup_id = 'old'",
        )
        .bind(q.queue_name())
        .fetch_one(b.pool())
        .await
        .unwrap();
        if old == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        old, 0,
        "the expired row was swept by fresh backends' first pushes"
    );
}

/// Unique pushes of ten ids from four backends (four pools), singles racing
/// batches, enqueue one message per id.
pub(crate) async fn unique_pushes_race_over_four_pools(url: String) {
    let mut handles: Vec<Arc<dyn QueueProvider>> = Vec::new();
    let name = unique_queue_name("pg_dedup_race");
    let _c = Cleanup(url.clone(), name.clone());
    for _ in 0..4 {
        let b = backend(&url, PostgresConfig::default()).await;
        handles.push(Arc::new(b.queue(&name, QueueOptions::default()).unwrap()));
    }
    check_unique_pushes_race(&handles).await;
}
