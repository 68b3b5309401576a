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
