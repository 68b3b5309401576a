//! Pushes: one XADD, a MULTI/EXEC of XADDs, or `push.lua` when some
//! messages of a batch are delayed.

use flextide_queue_core::{
    BatchFailure, Message, MessageId, Result,
    backend::{batch_result, new_token},
};
use redis::Value;

use super::{MAX_BATCH, RedisQueue, copy_error};
use crate::{
    BACKEND,
    codec::{Fields, fields, millis},
    scripts,
};

/// A message of a batch ready to send: its index, fields and delay in ms.
type Pending = (usize, Fields, u64);

impl RedisQueue {
    pub(super) async fn push_one(&self, message: Message) -> Result<MessageId> {
        let f = fields(&message, self.backend.config().max_payload())?;
        let delay = message.delay.map(millis).unwrap_or(0);
        if delay > 0 {
            self.push_chunk(&[(0, f, delay)]).await?;
        } else {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(&self.keys.stream).arg("*");
            for (k, v) in &f {
                cmd.arg(*k).arg(&v[..]);
            }
            let _: Value = cmd
                .query_async(&mut self.backend.conn())
                .await
                .map_err(|e| self.err("push", e))?;
        }
        Ok(message.id)
    }

    pub(super) async fn push_many(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        let max = self.backend.config().max_payload();
        let mut failures = Vec::new();
        let mut ready = Vec::with_capacity(messages.len());
        for (index, m) in messages.iter().enumerate() {
            match fields(m, max) {
                Ok(f) => ready.push((index, f, m.delay.map(millis).unwrap_or(0))),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        for chunk in ready.chunks(MAX_BATCH) {
            if let Err(e) = self.push_chunk(chunk).await {
                if failures.is_empty() && ready.len() == chunk.len() {
                    return Err(e);
                }
                for (index, _, _) in chunk {
                    failures.push(BatchFailure {
                        index: *index,
                        error: copy_error(&e),
                    });
                }
            }
        }
        batch_result(
            BACKEND,
            messages.into_iter().map(|m| m.id).collect(),
            failures,
        )
    }

    async fn push_chunk(&self, chunk: &[Pending]) -> Result<()> {
        if chunk.iter().all(|(_, _, delay)| *delay == 0) {
            // Plain XADDs in one MULTI/EXEC: no script overhead per message.
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (_, fields, _) in chunk {
                let cmd = pipe.cmd("XADD").arg(&self.keys.stream).arg("*");
                for (k, v) in fields {
                    cmd.arg(*k).arg(&v[..]);
                }
                cmd.ignore();
            }
            let pushed: redis::RedisResult<()> = pipe.query_async(&mut self.backend.conn()).await;
            if let Err(e) = pushed {
                return Err(self.transaction_err("push_batch", e).await);
            }
            return Ok(());
        }
        let mut inv = self.invocation(&scripts::PUSH);
        for (_, fields, delay) in chunk {
            inv.arg(*delay);
            if *delay > 0 {
                inv.arg(new_token())
            } else {
                inv.arg("")
            };
            inv.arg(fields.len() * 2);
            for (k, v) in fields {
                inv.arg(*k).arg(&v[..]);
            }
        }
        self.run("push_batch", &inv).await?;
        Ok(())
    }
}
