//! Clause 8 (queue names): exactly the names `validate_queue_name` accepts
//! open; every other name fails with `InvalidQueueName`; queues with
//! different names never share messages.

use flextide_queue_core::{MAX_QUEUE_NAME_LEN, Message, QueueError, QueueOptions};

use crate::{
    Case, CaseResult, Ctx,
    cases::{
        case,
        support::{brief, fail, patience, pop_none, pop_some},
    },
    ensure, ensure_eq,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "names::invalid_names_are_refused",
            invalid_names_are_refused
        ),
        case!("names::longest_valid_name_works", longest_valid_name_works),
        case!("names::queues_are_isolated", queues_are_isolated),
        case!(
            "names::similar_names_are_isolated",
            similar_names_are_isolated
        ),
    ]
}

/// Clause 8: each invalid name (empty, too long, spaces, quotes, SQL and key
/// metacharacters, dots, path parts, non-ASCII, NUL) fails at open with
/// `InvalidQueueName`.
pub async fn invalid_names_are_refused(ctx: &Ctx) -> CaseResult {
    let too_long = "q".repeat(MAX_QUEUE_NAME_LEN + 1);
    let bad = [
        "",
        too_long.as_str(),
        "a b",
        "a'b",
        "a\"b",
        ";DROP TABLE x",
        "x'; DROP TABLE queue; --",
        "{x}",
        "a.b",
        "q.fifo",
        "*",
        "q*",
        "caf\u{e9}",
        "a\0b",
        "../x",
        "a/b",
        "a:b",
        "a\nb",
        "%",
        "$queue",
    ];
    let mut wrong = Vec::new();
    for name in bad {
        match ctx.open_raw(name).await {
            Err(QueueError::InvalidQueueName { .. }) => {}
            Err(e) => wrong.push(format!("{name:?}: {e}")),
            Ok(_) => wrong.push(format!("{name:?}: opened")),
        }
    }
    ensure!(
        wrong.is_empty(),
        "names that did not fail with InvalidQueueName: {}",
        wrong.join("; ")
    );
    Ok(())
}

/// Clause 8: a name of exactly 80 characters, mixing letters of both cases,
/// digits, `-` and `_`, works.
pub async fn longest_valid_name_works(ctx: &Ctx) -> CaseResult {
    let mut name = format!("Ft-{}_", uuid::Uuid::new_v4().simple());
    while name.len() < MAX_QUEUE_NAME_LEN {
        name.push(if name.len() % 2 == 0 { 'Z' } else { '9' });
    }
    flextide_queue_core::validate_queue_name(&name)?;
    let q = ctx.queue_named(&name, QueueOptions::default()).await?;
    ensure_eq!(q.queue_name(), name.as_str());
    let id = q.push(Message::new("long name")).await?;
    let d = pop_some(&q, patience(ctx), "the pushed message").await?;
    ensure_eq!(d.message.id, id);
    q.delete(&d.receipt).await?;
    Ok(())
}

/// Clause 8: two queues never see each other's messages.
pub async fn queues_are_isolated(ctx: &Ctx) -> CaseResult {
    let a = ctx.queue().await?;
    let b = ctx.queue().await?;
    let id = a.push(Message::new("for a")).await?;
    pop_none(&b, brief(ctx), "queue b must not see queue a's message").await?;
    let d = pop_some(&a, patience(ctx), "queue a's message").await?;
    ensure_eq!(d.message.id, id);
    a.delete(&d.receipt).await?;
    Ok(())
}

/// Clause 8: names that differ only in letter case, or by a suffix a backend
/// might use internally (`_dlq`, `-delayed`, …), are different queues: each
/// sees only its own messages and dead letters.
pub async fn similar_names_are_isolated(ctx: &Ctx) -> CaseResult {
    let base = ctx.fresh_name();
    let mut names = vec![base.clone(), base.to_ascii_uppercase()];
    for suffix in ["_1", "-dlq", "_dlq", "_dead", "-delayed", "_dl"] {
        names.push(format!("{base}{suffix}"));
    }
    let mut queues = Vec::new();
    for name in &names {
        let q = ctx.queue_named(name, QueueOptions::default()).await?;
        let id = q.push(Message::new(name.clone())).await?;
        queues.push((q, id));
    }
    let dead_letters = ctx.capabilities().dead_letters;
    for (q, id) in &queues {
        let d = pop_some(
            q,
            patience(ctx),
            &format!("the message of {}", q.queue_name()),
        )
        .await?;
        if &d.message.id != id {
            return Err(fail(format!(
                "queue {} delivered the message of queue {:?}",
                q.queue_name(),
                String::from_utf8_lossy(&d.message.payload)
            )));
        }
        if dead_letters {
            q.dead_letter(&d.receipt, q.queue_name()).await?;
        } else {
            q.delete(&d.receipt).await?;
        }
    }
    for (q, id) in &queues {
        pop_none(
            q,
            brief(ctx),
            &format!("queue {} has nothing left", q.queue_name()),
        )
        .await?;
        if dead_letters {
            let dead = q.dead_letters(10).await?;
            let ids: Vec<_> = dead.iter().map(|d| d.message.id.clone()).collect();
            ensure_eq!(ids, vec![id.clone()], "dead letters of {}", q.queue_name());
        }
    }
    Ok(())
}
