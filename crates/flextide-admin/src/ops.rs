//! The operations that change or list a queue, with the checks and texts
//! both the command and the dashboard give.

use flextide_queue_core::{Message, MessageId, QueueProvider, Replay};

/// How many dead letters a replay by id looks through to find the ids.
pub const MAX_LISTED: usize = 100_000;

/// Up to `limit` waiting messages, without leasing them; a backend that
/// cannot peek gets an error that says what shows the counts instead.
pub async fn peek(queue: &dyn QueueProvider, limit: usize) -> Result<Vec<Message>, crate::Error> {
    if !queue.capabilities().peek {
        return Err(format!(
            "the {} backend cannot list waiting messages without leasing them; the stats show the counts",
            queue.backend_name()
        )
        .into());
    }
    Ok(queue.peek(limit).await?)
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ReplayOutcome {
    /// How many dead letters went back on the queue.
    pub replayed: u64,
    /// Asked-for ids that were not among the dead letters.
    pub missing: Vec<MessageId>,
}

/// Puts dead letters back on the queue with their attempts reset. For
/// [`Replay::Ids`], says which asked-for ids are not dead letters rather
/// than quietly replaying fewer.
pub async fn replay(
    queue: &dyn QueueProvider,
    which: Replay,
) -> Result<ReplayOutcome, crate::Error> {
    let missing: Vec<MessageId> = match &which {
        Replay::Ids(ids) => {
            let dead = queue.dead_letters(MAX_LISTED).await?;
            ids.iter()
                .filter(|id| !dead.iter().any(|d| &d.message.id == *id))
                .cloned()
                .collect()
        }
        _ => Vec::new(),
    };
    let which = match which {
        Replay::Ids(ids) => {
            Replay::Ids(ids.into_iter().filter(|id| !missing.contains(id)).collect())
        }
        other => other,
    };
    let replayed = match &which {
        Replay::Ids(ids) if ids.is_empty() => 0,
        _ => queue.replay_dead_letters(which).await?,
    };
    Ok(ReplayOutcome { replayed, missing })
}

/// What a delete of chosen dead letters did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DeleteOutcome {
    /// How many dead letters were deleted.
    pub deleted: u64,
    /// How many of the distinct ids asked for were not dead letters (or
    /// were gone by then). Not which: finding out would cost a second
    /// listing on the backends that delete by scanning.
    pub not_found: u64,
}

/// Deletes the dead letters with these ids for good. A backend without the
/// capability gets an error that names what it can do instead; an id asked
/// twice counts once.
pub async fn delete_dead_letters(
    queue: &dyn QueueProvider,
    ids: &[MessageId],
) -> Result<DeleteOutcome, crate::Error> {
    if !queue.capabilities().delete_dead_letters {
        return Err(format!(
            "the {} backend cannot delete chosen dead letters; replay them, or purge all of them",
            queue.backend_name()
        )
        .into());
    }
    let mut distinct: Vec<MessageId> = Vec::with_capacity(ids.len());
    for id in ids {
        if !distinct.contains(id) {
            distinct.push(id.clone());
        }
    }
    if distinct.is_empty() {
        return Ok(DeleteOutcome::default());
    }
    let deleted = queue.delete_dead_letters(&distinct).await?;
    Ok(DeleteOutcome {
        deleted,
        not_found: (distinct.len() as u64).saturating_sub(deleted),
    })
}

/// The question asked before [`QueueProvider::purge`]: names the queue and
/// what would be lost, from its current counts.
pub async fn purge_confirmation(queue: &dyn QueueProvider) -> Result<String, crate::Error> {
    let s = queue.stats().await?;
    Ok(format!(
        "this deletes every message of {} for good ({} ready, {} in flight, {} delayed; dead letters are kept)",
        queue.queue_name(),
        s.depth,
        s.in_flight,
        s.delayed
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use flextide_queue_core::QueueOptions;
    use flextide_queue_memory::MemoryQueue;

    use super::*;

    #[tokio::test]
    async fn replay_by_id_reports_the_missing() {
        let q = MemoryQueue::new("admin_replay", QueueOptions::default()).unwrap();
        q.push(Message::new(Bytes::from_static(b"a")))
            .await
            .unwrap();
        let d = q.pop(Duration::from_secs(1)).await.unwrap().unwrap();
        q.dead_letter(&d.receipt, "boom").await.unwrap();
        let out = replay(
            &q,
            Replay::Ids(vec![d.message.id.clone(), MessageId::new("nope")]),
        )
        .await
        .unwrap();
        assert_eq!(out.replayed, 1);
        assert_eq!(out.missing, vec![MessageId::new("nope")]);
        assert_eq!(q.stats().await.unwrap().depth, 1);
        let none = replay(&q, Replay::Ids(vec![MessageId::new("x")]))
            .await
            .unwrap();
        assert_eq!(none.replayed, 0);
    }

    #[tokio::test]
    async fn delete_counts_the_deleted_and_the_not_found() {
        let q = MemoryQueue::new("admin_delete", QueueOptions::default()).unwrap();
        q.push(Message::new(Bytes::from_static(b"a")))
            .await
            .unwrap();
        let d = q.pop(Duration::from_secs(1)).await.unwrap().unwrap();
        q.dead_letter(&d.receipt, "boom").await.unwrap();
        let id = d.message.id.clone();
        let out = delete_dead_letters(&q, &[id.clone(), id, MessageId::new("nope")])
            .await
            .unwrap();
        assert_eq!(
            out,
            DeleteOutcome {
                deleted: 1,
                not_found: 1
            }
        );
        assert!(q.dead_letters(10).await.unwrap().is_empty());
        assert_eq!(
            delete_dead_letters(&q, &[]).await.unwrap(),
            DeleteOutcome::default()
        );
    }

    /// A backend with no optional operation; only what the check reads.
    #[derive(Debug)]
    struct Bare;

    #[async_trait::async_trait]
    impl QueueProvider for Bare {
        fn queue_name(&self) -> &str {
            "bare"
        }
        fn capabilities(&self) -> flextide_queue_core::Capabilities {
            flextide_queue_core::Capabilities::default()
        }
        fn backend_name(&self) -> &'static str {
            "bare"
        }
        async fn push(&self, _: Message) -> flextide_queue_core::Result<MessageId> {
            unreachable!()
        }
        async fn pop_batch(
            &self,
            _: usize,
            _: Duration,
        ) -> flextide_queue_core::Result<Vec<flextide_queue_core::Delivery>> {
            unreachable!()
        }
        async fn delete(
            &self,
            _: &flextide_queue_core::Receipt,
        ) -> flextide_queue_core::Result<()> {
            unreachable!()
        }
        async fn nack(
            &self,
            _: &flextide_queue_core::Receipt,
            _: Duration,
        ) -> flextide_queue_core::Result<()> {
            unreachable!()
        }
        async fn stats(&self) -> flextide_queue_core::Result<flextide_queue_core::QueueStats> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn delete_without_the_capability_says_what_to_do() {
        let e = delete_dead_letters(&Bare, &[MessageId::new("x")])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bare backend cannot delete chosen dead letters"),
            "{e}"
        );
        assert!(e.contains("purge"), "{e}");
    }

    #[tokio::test]
    async fn purge_confirmation_names_queue_and_counts() {
        let q = MemoryQueue::new("admin_purge", QueueOptions::default()).unwrap();
        q.push(Message::new(Bytes::from_static(b"a")))
            .await
            .unwrap();
        let text = purge_confirmation(&q).await.unwrap();
        assert!(text.contains("admin_purge"), "{text}");
        assert!(text.contains("1 ready"), "{text}");
    }
}
