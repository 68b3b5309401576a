//! The dead-letter store: a stream per queue (`:x`), listed, replayed and
//! deleted from by `dead.lua`.

use flextide_queue_core::{DeadLetter, MessageId, Replay, Result};

use super::{MAX_BATCH, RedisQueue};
use crate::{
    codec::{Stored, array, int, text},
    scripts,
};

impl RedisQueue {
    pub(super) async fn list_dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut inv = self.invocation_with_limit(&scripts::DEAD);
        inv.arg("list").arg(limit);
        let reply = array(self.run("dead_letters", &inv).await?)?;
        let mut out = Vec::with_capacity(reply.len() / 2);
        let mut it = reply.into_iter();
        while let (Some(id), Some(fields)) = (it.next(), it.next()) {
            let id = text(&id)?;
            out.push(Stored::parse(fields)?.dead_letter(&id));
        }
        Ok(out)
    }

    pub(super) async fn replay(&self, which: Replay) -> Result<u64> {
        match which {
            Replay::Ids(ids) => {
                let mut total = 0;
                for chunk in ids.chunks(MAX_BATCH) {
                    let args: Vec<String> = chunk.iter().map(|id| id.as_str().to_owned()).collect();
                    total += self.replay_chunk("ids", &args).await?;
                }
                Ok(total)
            }
            Replay::Oldest(n) => {
                let mut total = 0u64;
                let mut left = n;
                while left > 0 {
                    let take = left.min(MAX_BATCH);
                    let moved = self.replay_chunk("oldest", &[take.to_string()]).await?;
                    total += moved;
                    left -= take;
                    if moved < take as u64 {
                        break;
                    }
                }
                Ok(total)
            }
            Replay::All => {
                // Bounded by the count at the start, so dead letters added
                // meanwhile cannot keep it going for ever.
                let start = self.count().await?.dead_lettered;
                Box::pin(self.replay(Replay::Oldest(usize::try_from(start).unwrap_or(usize::MAX))))
                    .await
            }
        }
    }

    /// Deletes the dead letters with these message ids: each chunk is one
    /// script scanning the dead-letter stream, so a replay running at the
    /// same time sees an entry either whole or gone.
    pub(super) async fn delete_dead(&self, ids: &[MessageId]) -> Result<u64> {
        let mut total = 0;
        for chunk in ids.chunks(MAX_BATCH) {
            let args: Vec<String> = chunk.iter().map(|id| id.as_str().to_owned()).collect();
            total += self
                .dead_script("delete_dead_letters", "delete", &args)
                .await?;
        }
        Ok(total)
    }

    async fn replay_chunk(&self, op: &str, args: &[String]) -> Result<u64> {
        self.dead_script("replay_dead_letters", op, args).await
    }

    async fn dead_script(&self, what: &'static str, op: &str, args: &[String]) -> Result<u64> {
        let mut inv = self.invocation_with_limit(&scripts::DEAD);
        inv.arg(op);
        for a in args {
            inv.arg(a);
        }
        Ok(u64::try_from(int(&self.run(what, &inv).await?)?).unwrap_or(0))
    }

    pub(super) async fn purge_dead(&self) -> Result<u64> {
        let x = &self.keys.dead_letters;
        let purged: redis::RedisResult<(u64, i64)> = redis::pipe()
            .atomic()
            .cmd("XLEN")
            .arg(x)
            .cmd("DEL")
            .arg(x)
            .query_async(&mut self.backend.conn())
            .await;
        match purged {
            Ok((len, _)) => Ok(len),
            Err(e) => Err(self.transaction_err("purge_dead_letters", e).await),
        }
    }
}
