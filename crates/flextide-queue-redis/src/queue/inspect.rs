//! Looking at a queue without taking from it (`stats`, `peek`), and
//! `purge`.

use std::time::Duration;

use flextide_queue_core::{Message, QueueStats, Result};

use super::RedisQueue;
use crate::{
    codec::{Stored, array, bad_reply, int, text},
    scripts,
};

impl RedisQueue {
    pub(super) async fn count(&self) -> Result<QueueStats> {
        let inv = self.invocation_with_limit(&scripts::STATS);
        let r = array(self.run("stats", &inv).await?)?;
        if r.len() != 6 {
            return Err(bad_reply("stats"));
        }
        let n = |i: usize| -> Result<u64> { Ok(u64::try_from(int(&r[i])?).unwrap_or(0)) };
        let oldest = int(&r[4])?;
        let now = int(&r[5])?;
        Ok(QueueStats::default()
            .with_depth(n(0)?)
            .with_in_flight(n(1)?)
            .with_delayed(n(2)?)
            .with_dead_lettered(n(3)?)
            .with_oldest_age(
                (oldest >= 0)
                    .then(|| Duration::from_millis(u64::try_from(now - oldest).unwrap_or(0))),
            ))
    }

    /// Waiting messages in delivery order. An entry that does not decode is
    /// left out: it is never delivered (the next pop that meets it moves it
    /// to the dead letters).
    pub(super) async fn peek_waiting(&self, limit: usize) -> Result<Vec<Message>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut inv = self.invocation_with_limit(&scripts::PEEK);
        inv.arg(limit);
        let reply = array(self.run("peek", &inv).await?)?;
        let mut out = Vec::with_capacity(reply.len() / 2);
        let mut it = reply.into_iter();
        while let (Some(id), Some(fields)) = (it.next(), it.next()) {
            let id = text(&id)?;
            if let Ok(message) = Stored::parse(fields)?.message(&id) {
                out.push(message);
            }
        }
        Ok(out)
    }

    pub(super) async fn purge_waiting(&self) -> Result<u64> {
        let inv = self.invocation(&scripts::PURGE);
        Ok(u64::try_from(int(&self.run("purge", &inv).await?)?).unwrap_or(0))
    }
}
