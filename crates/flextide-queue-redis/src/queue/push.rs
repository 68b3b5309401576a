//! Pushes: one XADD, a MULTI/EXEC of XADDs, or `push.lua` when some
//! messages of a batch are delayed or carry a dedup id.

use flextide_queue_core::{
    BatchFailure, Message, MessageId, Pushed, Result,
    backend::{batch_result, new_token},
};
use redis::Value;

use super::{MAX_BATCH, RedisQueue, copy_error};
use crate::{
    BACKEND,
    codec::{Fields, array, bad_reply, fields, millis, text},
    scripts,
};

/// The longest dedup window the scripts are given (100 years): window ends
/// stay whole milliseconds that Lua and Redis write without an exponent.
const MAX_WINDOW_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// A message of a batch ready to send.
struct Pending {
    /// Its index in the batch.
    index: usize,
    fields: Fields,
    /// Delay in ms (0: none).
    delay: u64,
    /// Its dedup id and its own id, when it has a dedup id.
    dedup: Option<(String, String)>,
}

impl Pending {
    fn new(index: usize, message: &Message, max_payload: usize) -> Result<Self> {
        Ok(Pending {
            index,
            fields: fields(message, max_payload)?,
            delay: message.delay.map(millis).unwrap_or(0),
            dedup: message
                .dedup_id
                .clone()
                .map(|d| (d, message.id.as_str().to_owned())),
        })
    }
}

impl RedisQueue {
    pub(super) async fn push_one(&self, message: Message) -> Result<Pushed> {
        let p = Pending::new(0, &message, self.backend.config().max_payload())?;
        if p.delay > 0 || p.dedup.is_some() {
            let mut first = self.push_chunk("push", &[p]).await?;
            return Ok(match first.pop().flatten() {
                Some(first) => Pushed::Duplicate(first),
                None => Pushed::Enqueued(message.id),
            });
        }
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.keys.stream).arg("*");
        for (k, v) in &p.fields {
            cmd.arg(*k).arg(&v[..]);
        }
        let _: Value = cmd
            .query_async(&mut self.backend.conn())
            .await
            .map_err(|e| self.err("push", e))?;
        Ok(Pushed::Enqueued(message.id))
    }

    pub(super) async fn push_many(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        let max = self.backend.config().max_payload();
        let mut failures = Vec::new();
        let mut ready = Vec::with_capacity(messages.len());
        for (index, m) in messages.iter().enumerate() {
            match Pending::new(index, m, max) {
                Ok(p) => ready.push(p),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        let mut ids: Vec<MessageId> = messages.into_iter().map(|m| m.id).collect();
        for chunk in ready.chunks(MAX_BATCH) {
            match self.push_chunk("push_batch", chunk).await {
                Ok(firsts) => {
                    // A duplicate's place holds the first push's id.
                    for (p, first) in chunk.iter().zip(firsts) {
                        if let Some(first) = first {
                            ids[p.index] = first;
                        }
                    }
                }
                Err(e) => {
                    if failures.is_empty() && ready.len() == chunk.len() {
                        return Err(e);
                    }
                    for p in chunk {
                        failures.push(BatchFailure {
                            index: p.index,
                            error: copy_error(&e),
                        });
                    }
                }
            }
        }
        batch_result(BACKEND, ids, failures)
    }

    /// Enqueues a chunk; per message, the first message's id when it was
    /// dropped as a duplicate.
    async fn push_chunk(
        &self,
        operation: &'static str,
        chunk: &[Pending],
    ) -> Result<Vec<Option<MessageId>>> {
        if chunk.iter().all(|p| p.delay == 0 && p.dedup.is_none()) {
            // Plain XADDs in one MULTI/EXEC: no script overhead per message.
            let mut pipe = redis::pipe();
            pipe.atomic();
            for p in chunk {
                let cmd = pipe.cmd("XADD").arg(&self.keys.stream).arg("*");
                for (k, v) in &p.fields {
                    cmd.arg(*k).arg(&v[..]);
                }
                cmd.ignore();
            }
            let pushed: redis::RedisResult<()> = pipe.query_async(&mut self.backend.conn()).await;
            if let Err(e) = pushed {
                return Err(self.transaction_err(operation, e).await);
            }
            return Ok(vec![None; chunk.len()]);
        }
        let mut inv = scripts::PUSH.prepare_invoke();
        for key in self.keys.push() {
            inv.key(key);
        }
        // A zero window would end where it starts: keep at least 1 ms.
        inv.arg(millis(self.options.dedup_window).clamp(1, MAX_WINDOW_MS));
        for p in chunk {
            inv.arg(p.delay);
            if p.delay > 0 {
                inv.arg(new_token())
            } else {
                inv.arg("")
            };
            match &p.dedup {
                Some((dedup, id)) => inv.arg(1).arg(dedup).arg(id),
                None => inv.arg(0),
            };
            inv.arg(p.fields.len() * 2);
            for (k, v) in &p.fields {
                inv.arg(*k).arg(&v[..]);
            }
        }
        let reply = self.run(operation, &inv).await?;
        let outcomes = array(reply)?;
        if outcomes.len() != chunk.len() {
            return Err(bad_reply("one outcome per pushed message"));
        }
        outcomes
            .iter()
            .map(|o| match o {
                Value::Int(0) => Ok(None),
                first => text(first).map(|id| Some(MessageId::new(id))),
            })
            .collect()
    }
}
