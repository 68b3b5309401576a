//! The pop path: the wait loop, the fast pop (MULTI/EXEC of `fast.lua`,
//! XREADGROUP, `post.lua`), the all-Lua pop, and the blocking read between
//! looks. Entries that do not decode are dead-lettered here, each by
//! itself, and the pop goes on with the rest (contract clause 12).

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use flextide_queue_core::{Delivery, QueueError, Receipt, Result, backend::Decoded};
use redis::Value;
use tokio::time::Instant;

use super::{MAX_BATCH, RedisQueue, settle::Action};
use crate::{
    BACKEND,
    codec::{Stored, array, bad_reply, int, millis, receipt, stream_entries, text},
    scripts,
};

/// Longest single blocking read; a longer `pop` wait loops, so a consumer
/// never relies on one wake-up.
const MAX_BLOCK: Duration = Duration::from_secs(5);

/// The consumer group name (also in `lua/common.lua`).
pub(crate) const GROUP: &str = "flextide";

/// What one look at the queue found.
#[derive(Default)]
struct Found {
    deliveries: Vec<Delivery>,
    /// Entries it leased but could not decode (now dead-lettered): when
    /// there are no deliveries, look again at once rather than block.
    undecodable: usize,
    /// With no deliveries: how long to block at most (`None`: nothing is
    /// scheduled) and the last ids of the stream and the wake-up stream.
    hint: Option<Duration>,
    last_s: String,
    last_w: String,
}

/// An entry a pop leased: its delivery, or the receipt to dead-letter it
/// with and what kept it from decoding.
type Leased = std::result::Result<Delivery, (Receipt, String)>;

fn leased(id: &str, stored: &Stored, attempt: u32, receipt: Receipt, deadline: Instant) -> Leased {
    match stored.message(id) {
        Ok(message) => Ok(Delivery::new(message, receipt, attempt, deadline)),
        Err(what) => Err((receipt, what)),
    }
}

/// Deliveries a script returned as id, fields, attempt, delivery count.
fn from_script(
    mut it: impl ExactSizeIterator<Item = Value>,
    consumer: &str,
    deadline: Instant,
) -> Result<Vec<Leased>> {
    let mut out = Vec::with_capacity(it.len() / 4);
    while let (Some(id), Some(fields), Some(att), Some(count)) =
        (it.next(), it.next(), it.next(), it.next())
    {
        let id = text(&id)?;
        let attempt = u32::try_from(int(&att)?).unwrap_or(u32::MAX);
        let r = receipt(&id, int(&count)?, consumer);
        out.push(leased(&id, &Stored::parse(fields)?, attempt, r, deadline));
    }
    Ok(out)
}

impl RedisQueue {
    pub(super) async fn pop_wait(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let max = max.min(MAX_BATCH);
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        loop {
            let Found {
                deliveries,
                undecodable,
                hint,
                last_s,
                last_w,
            } = self.pop_once(max).await?;
            if !deliveries.is_empty() {
                return Ok(deliveries);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            if undecodable > 0 {
                // The look was spent on entries that went to the dead
                // letters; good ones may wait behind them.
                continue;
            }
            let mut block = (deadline - now).min(MAX_BLOCK);
            if let Some(hint) = hint {
                block = block.min(hint.max(Duration::from_millis(1)));
            }
            if block < Duration::from_millis(1) {
                return Ok(Vec::new());
            }
            if let Err(e) = self.block(block, &last_s, &last_w).await {
                // The blocking connection broke; the next pop script call shows
                // whether the server itself is reachable.
                tracing::debug!(queue = %self.name, error = %e, "blocking read failed; polling again");
                tokio::time::sleep(
                    Duration::from_millis(20)
                        .min(deadline.saturating_duration_since(Instant::now())),
                )
                .await;
            }
        }
    }

    /// One look at the queue: deliveries, or (when none) how long to block
    /// and the ids to block from.
    async fn pop_once(&self, max: usize) -> Result<Found> {
        if !self.slow.load(Ordering::Relaxed) {
            let deliveries = self.pop_fast(max).await?;
            if !deliveries.is_empty() {
                return Ok(Found {
                    deliveries,
                    ..Found::default()
                });
            }
        }
        // Redeliveries are due, or nothing was there: the all-Lua pop also
        // says how long to block.
        self.pop_lua(max).await
    }

    /// Splits what a pop leased into deliveries and entries that do not
    /// decode; moves the latter to the dead letters, each by itself, so
    /// neither the pop nor another message pays for them. Returns the
    /// deliveries and how many entries were undecodable.
    async fn sort(&self, leased: Vec<Leased>) -> (Vec<Delivery>, usize) {
        let Decoded { ok, undecodable } = Decoded::sort(leased);
        let n = undecodable.len();
        for (receipt, reason) in undecodable {
            tracing::warn!(queue = %self.name, receipt = %receipt.as_str(), %reason, "dead-lettering an entry that does not decode");
            // Should this fail, the entry stays leased and meets the same
            // fate after its lease; the pop still returns the good ones.
            if let Err(e) = self.settle(Action::Dead(&reason), &receipt).await {
                tracing::warn!(queue = %self.name, error = %e, "could not dead-letter an undecodable entry; it comes back after its lease");
            }
        }
        (ok, n)
    }

    /// A fast pop: one MULTI/EXEC of `fast.lua` (due work, redeliveries), a
    /// plain XREADGROUP and `post.lua` (the lease of what it read). Message
    /// bodies never pass through Lua, which would cost more than all the
    /// rest of the pop.
    async fn pop_fast(&self, max: usize) -> Result<Vec<Delivery>> {
        let want = self.consumer.lock().unwrap().clone();
        let lease = millis(self.options.lease);
        let (max_attempts, reason) = self.max_attempts();
        let sent = Instant::now();
        let mut pipe = redis::pipe();
        pipe.atomic().ignore_errors();
        pipe.cmd("EVAL")
            .arg(scripts::FAST.as_str())
            .arg(self.keys.fast().len())
            .arg(&self.keys.fast()[..])
            .arg(max_attempts)
            .arg(reason)
            .arg(max)
            .arg(lease);
        pipe.cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&*want)
            .arg("COUNT")
            .arg(max)
            .arg("STREAMS")
            .arg(&self.keys.stream)
            .arg(">");
        pipe.cmd("EVAL")
            .arg(scripts::POST.as_str())
            .arg(self.keys.post().len())
            .arg(&self.keys.post()[..])
            .arg(max)
            .arg(lease)
            .arg(&*want);
        let replies: Vec<Value> = match pipe.query_async(&mut self.backend.conn()).await {
            Ok(replies) => replies,
            Err(e) => return Err(self.transaction_err("pop", e).await),
        };
        let [first, read, post]: [Value; 3] = replies.try_into().map_err(|_| bad_reply("pop"))?;
        // A failed first half makes post.lua give back everything read, so
        // its error is the one to report; a failed XREADGROUP read nothing.
        let first = match first.extract_error() {
            Ok(first) => first,
            Err(e) => return Err(self.transaction_err("pop", e).await),
        };
        let post = array(post.extract_error().map_err(|e| self.err("pop", e))?)?;
        let (keep, gave_back) = match &post[..] {
            [keep, gave_back] => (int(keep)?, int(gave_back)?),
            _ => return Err(bad_reply("pop")),
        };
        let mut it = array(first)?.into_iter();
        let consumer: Arc<str> = Arc::from(text(&it.next().unwrap_or_default())?);
        let deadline = sent + self.options.lease;
        let mut out = from_script(it, &consumer, deadline)?;
        let redelivered = out.len();
        if keep > 0 {
            let read = read.extract_error().map_err(|e| self.err("pop", e))?;
            for entry in stream_entries(read)?
                .into_iter()
                .take(usize::try_from(keep).unwrap_or(0))
            {
                let (id, fields) = match array(entry)?.try_into() {
                    Ok::<[Value; 2], _>([id, fields]) => (text(&id)?, fields),
                    Err(_) => return Err(bad_reply("stream entry")),
                };
                let stored = Stored::parse(fields)?;
                let attempt = stored.base().saturating_add(1);
                out.push(leased(
                    &id,
                    &stored,
                    attempt,
                    receipt(&id, 1, &want),
                    deadline,
                ));
            }
        }
        *self.consumer.lock().unwrap() = consumer;
        self.slow
            .store(redelivered > 0 || gave_back > 0, Ordering::Relaxed);
        Ok(self.sort(out).await.0)
    }

    /// One run of `pop.lua`, which does the whole pop in Lua.
    async fn pop_lua(&self, max: usize) -> Result<Found> {
        let sent = Instant::now();
        let mut inv = self.invocation_with_limit(&scripts::POP);
        inv.arg(max).arg(millis(self.options.lease));
        let reply = array(self.run("pop", &inv).await?)?;
        if reply.len() < 5 || (reply.len() - 5) % 4 != 0 {
            return Err(bad_reply("pop"));
        }
        let mut it = reply.into_iter();
        let hint = int(&it.next().unwrap_or_default())?;
        let last_s = text(&it.next().unwrap_or_default()).unwrap_or_default();
        let last_w = text(&it.next().unwrap_or_default()).unwrap_or_default();
        let consumer: Arc<str> = Arc::from(text(&it.next().unwrap_or_default())?);
        let redelivered = int(&it.next().unwrap_or_default())?;
        let leased = from_script(it, &consumer, sent + self.options.lease)?;
        *self.consumer.lock().unwrap() = consumer;
        self.slow.store(redelivered > 0, Ordering::Relaxed);
        let (deliveries, undecodable) = self.sort(leased).await;
        Ok(Found {
            deliveries,
            undecodable,
            hint: u64::try_from(hint).ok().map(Duration::from_millis),
            last_s,
            last_w,
        })
    }

    /// Blocks on a dedicated connection until the stream or the wake-up
    /// stream gets an entry after the given ids, or `block` passes.
    async fn block(&self, block: Duration, last_s: &str, last_w: &str) -> Result<()> {
        let mut conn = self.backend.blocking_conn().await?;
        let ms = millis(block).max(1);
        let cmd = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(ms)
            .arg("STREAMS")
            .arg(&self.keys.stream)
            .arg(&self.keys.wake)
            .arg(if last_s.is_empty() { "$" } else { last_s })
            .arg(if last_w.is_empty() { "$" } else { last_w })
            .to_owned();
        let limit = block + self.backend.config().response();
        match tokio::time::timeout(limit, cmd.query_async::<Value>(&mut conn)).await {
            Ok(Ok(_)) => {
                self.backend.return_blocking(conn);
                Ok(())
            }
            Ok(Err(e)) => Err(self.err("pop", e)),
            Err(_) => Err(QueueError::Timeout {
                backend: BACKEND,
                operation: "pop",
                after: limit,
            }),
        }
    }
}
