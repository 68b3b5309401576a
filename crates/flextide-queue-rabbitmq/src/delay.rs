//! Delays without a plugin: one holding queue per delay bucket.
//!
//! A delayed message is published to a holding queue of its bucket, a
//! durable queue with `x-message-ttl = <ms>` that dead-letters expired
//! messages back to `<queue>` through the default exchange, and `x-expires`
//! (see [`expires_ms`]) so a holding queue nobody publishes to vanishes by
//! itself. The message itself carries its exact delay as `expiration`, so it
//! leaves on time unless an earlier message of the same bucket with a longer
//! delay is ahead of it (RabbitMQ expires messages at the head only);
//! buckets are therefore narrow: a message is never early, and late by at
//! most the width of its bucket.
//!
//! The holding queues follow the main queue's type. Beside a quorum queue
//! they are quorum queues too, `<queue>.qhold.<ms>`, replicated like it and
//! dead-lettering **at least once** (`x-dead-letter-strategy =
//! at-least-once`, which needs `x-overflow = reject-publish`): a message
//! leaves the holding queue only once the main queue confirmed it, so a
//! delayed message (a retry's backoff) survives a node failure or a leader
//! election of the main queue on its way back. Classic queues dead-letter
//! at most once (the message is dropped if the target cannot take it at
//! that moment), which is why a classic holding queue is used only beside a
//! classic main queue, `<queue>.hold.<ms>`: a single-node setup.
//!
//! The buckets form a fixed ladder, so every holding queue of a queue can be
//! deleted by `drop_queue` without the management API. Which of them exist
//! is recorded in an index (`<queue>.qhold.index` or `<queue>.hold.index`),
//! a classic durable queue holding one message per declaration of a bucket,
//! which expires (per-message TTL) before the holding queue could: stats and
//! purge read it (and put it back) instead of probing the ladder with
//! passive declares, each miss of which would close a channel and make
//! lapin log an error. The index is bookkeeping only; no task passes
//! through it.
//!
//! Earlier versions held delayed messages of every queue in classic queues:
//! `<queue>.hold.<ms>` beside quorum queues too, and before `x-expires`
//! `<queue>.delay.<ms>` (index `<queue>.delay.index`). Those drain into the
//! queue by themselves, are neither counted by stats of a quorum queue nor
//! emptied by its purge, and are deleted by `drop_queue`.

use std::time::Duration;

use crate::QueueType;

/// Upper bounds of the buckets, in milliseconds.
pub(crate) const LADDER_MS: &[u64] = &[
    100,
    200,
    300,
    500,
    750,
    1_000,
    1_500,
    2_000,
    3_000,
    4_000,
    5_000,
    7_500,
    10_000,
    15_000,
    20_000,
    30_000,
    45_000,
    60_000,
    90_000,
    120_000,
    180_000,
    300_000,
    450_000,
    600_000,
    900_000,
    1_200_000,
    1_800_000,
    2_700_000,
    3_600_000,
    5_400_000,
    7_200_000,
    10_800_000,
    14_400_000,
    21_600_000,
    28_800_000,
    43_200_000,
    64_800_000,
    86_400_000,
    172_800_000,
    259_200_000,
    432_000_000,
    604_800_000,
];

/// The longest delay accepted: 7 days.
pub(crate) const MAX_DELAY: Duration = Duration::from_millis(604_800_000);

/// The bucket (its upper bound in ms) of a delay, and the delay in whole
/// milliseconds (rounded up, so never early).
pub(crate) fn bucket(delay: Duration) -> Option<(u64, u64)> {
    let ms = u64::try_from(delay.as_nanos().div_ceil(1_000_000))
        .ok()?
        .max(1);
    LADDER_MS.iter().find(|&&b| b >= ms).map(|&b| (b, ms))
}

/// The part of a holding queue's name after the queue's: holding queues
/// follow the main queue's type, and the two kinds never share a name (the
/// broker refuses to declare a queue again with another type).
pub(crate) fn holding_infix(queue_type: QueueType) -> &'static str {
    match queue_type {
        QueueType::Quorum => ".qhold.",
        QueueType::Classic => ".hold.",
    }
}

/// Name of the queue listing a queue's holding queues.
pub(crate) fn index_queue(queue: &str, queue_type: QueueType) -> String {
    format!("{queue}{}index", holding_infix(queue_type))
}

/// Name of a bucket's holding queue.
pub(crate) fn holding_queue(queue: &str, queue_type: QueueType, bucket_ms: u64) -> String {
    format!("{queue}{}{bucket_ms}", holding_infix(queue_type))
}

/// Names of every helper queue a queue may have, in both layouts and the
/// one before `x-expires` (`.delay.`), for `drop_queue`.
pub(crate) fn all_helper_queues(queue: &str) -> Vec<String> {
    let infixes = [
        holding_infix(QueueType::Quorum),
        holding_infix(QueueType::Classic),
        ".delay.",
    ];
    let mut names = Vec::with_capacity(infixes.len() * (LADDER_MS.len() + 1));
    for infix in infixes {
        names.extend(LADDER_MS.iter().map(|b| format!("{queue}{infix}{b}")));
        names.push(format!("{queue}{infix}index"));
    }
    names
}

/// Margin of [`expires_ms`]: how long before a holding queue could expire
/// its publishers declare it again, at the least.
const EXPIRY_MARGIN_MS: u64 = 10 * 60 * 1000;

/// `x-expires` of a bucket's holding queue: twice the bucket plus twice the
/// margin. A publisher declares the queue again when its last declaration
/// is older than half of this ([`redeclare_after`]), so a message
/// published at any time leaves (after at most the bucket) at least the
/// margin before the queue could expire with it.
pub(crate) fn expires_ms(bucket_ms: u64) -> u64 {
    2 * bucket_ms + 2 * EXPIRY_MARGIN_MS
}

/// How long a publisher's declaration of a holding queue stays good.
pub(crate) fn redeclare_after(bucket_ms: u64) -> Duration {
    Duration::from_millis(expires_ms(bucket_ms) / 2)
}

/// The TTL of an index entry written with a declaration: it expires before
/// the holding queue it names could.
pub(crate) fn index_entry_ttl_ms(bucket_ms: u64) -> u64 {
    expires_ms(bucket_ms) - EXPIRY_MARGIN_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_up_and_stop_at_the_maximum() {
        assert_eq!(bucket(Duration::from_micros(1)), Some((100, 1)));
        assert_eq!(bucket(Duration::from_millis(1000)), Some((1000, 1000)));
        assert_eq!(bucket(Duration::from_millis(1001)), Some((1500, 1001)));
        assert_eq!(bucket(MAX_DELAY), Some((604_800_000, 604_800_000)));
        assert_eq!(bucket(MAX_DELAY + Duration::from_millis(1)), None);
        assert!(LADDER_MS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn holding_queues_outlive_their_messages() {
        for &b in LADDER_MS {
            // Declared at 0, published to just before the redeclaration is
            // due: the message leaves by then + b, the queue expires at the
            // earliest at expires_ms(b).
            let last_publish = redeclare_after(b).as_millis() as u64;
            assert!(
                last_publish + b + EXPIRY_MARGIN_MS <= expires_ms(b),
                "bucket {b}"
            );
            assert!(index_entry_ttl_ms(b) < expires_ms(b));
        }
        let all = all_helper_queues("q");
        assert_eq!(all.len(), 3 * LADDER_MS.len() + 3);
        for t in [QueueType::Quorum, QueueType::Classic] {
            assert!(all.contains(&holding_queue("q", t, 100)));
            assert!(all.contains(&index_queue("q", t)));
        }
        assert_ne!(
            holding_queue("q", QueueType::Quorum, 100),
            holding_queue("q", QueueType::Classic, 100)
        );
    }
}
