//! The checker: from what producers had acknowledged, what handlers
//! recorded, what was dead-lettered and what was left in the queue, counts
//! lost, duplicate, unexpected and stuck messages and decides whether the
//! run passed. Pure functions over the logs' contents.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

/// Everything a run left behind, read from the agents' logs and the queue.
#[derive(Debug, Default, Clone)]
pub(crate) struct Evidence {
    /// Ids whose push returned Ok (a retried push may appear twice).
    pub acked: Vec<u64>,
    /// Ids a producer gave up on (never acknowledged; they may still have
    /// reached the queue, so a delivery of one is not unexpected).
    pub abandoned: Vec<u64>,
    /// Every line handlers recorded, one per successful handling.
    pub handled: Vec<String>,
    /// Payloads found in the dead letters.
    pub dead: Vec<String>,
    /// Messages ready, delayed or in flight after the drain.
    pub stuck: u64,
}

/// The counts of one run and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Outcome {
    /// Distinct ids acknowledged to producers.
    pub acked: u64,
    /// Distinct ids handled at least once.
    pub handled: u64,
    /// Handlings beyond the first, summed over ids.
    pub duplicates: u64,
    /// Most handlings of one id.
    pub max_per_id: u64,
    /// Acknowledged, never handled, not dead-lettered.
    pub lost: u64,
    /// Handled (or dead-lettered) but never pushed, or not a valid id.
    pub unexpected: u64,
    /// Left ready, delayed or in flight after the drain.
    pub stuck: u64,
    /// Distinct acknowledged ids found in the dead letters.
    pub dead_lettered: u64,
    /// A few lost ids, for looking them up.
    pub lost_sample: Vec<u64>,
    /// A few unexpected lines.
    pub unexpected_sample: Vec<String>,
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
    /// Loss that the backend's documented durability allows, with why.
    pub expected_loss: Option<String>,
}

impl Outcome {
    /// Whether every rule held.
    pub(crate) fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

const SAMPLE: usize = 10;

/// Counts and judges one run. `loss_allowed` is the reason a loss is
/// expected for this backend (Redis without persistence), if it is.
pub(crate) fn check(evidence: &Evidence, loss_allowed: Option<&str>) -> Outcome {
    let acked: HashSet<u64> = evidence.acked.iter().copied().collect();
    let pushed: HashSet<u64> = acked
        .iter()
        .chain(evidence.abandoned.iter())
        .copied()
        .collect();

    let mut counts: HashMap<u64, u64> = HashMap::new();
    let mut unexpected_sample = Vec::new();
    let mut unexpected = 0;
    let mut note_unexpected = |line: &str| {
        unexpected += 1;
        if unexpected_sample.len() < SAMPLE {
            unexpected_sample.push(line.to_owned());
        }
    };
    for line in &evidence.handled {
        match line.parse::<u64>() {
            Ok(id) if pushed.contains(&id) => *counts.entry(id).or_default() += 1,
            _ => note_unexpected(line),
        }
    }
    let mut dead = HashSet::new();
    for line in &evidence.dead {
        match line.parse::<u64>() {
            Ok(id) if pushed.contains(&id) => {
                dead.insert(id);
            }
            _ => note_unexpected(line),
        }
    }

    let mut lost: Vec<u64> = acked
        .iter()
        .filter(|id| !counts.contains_key(id) && !dead.contains(id))
        .copied()
        .collect();
    lost.sort_unstable();
    let duplicates = counts.values().map(|n| n - 1).sum();
    let max_per_id = counts.values().copied().max().unwrap_or(0);

    let mut failures = Vec::new();
    let mut expected_loss = None;
    if !lost.is_empty() {
        match loss_allowed {
            Some(reason) => expected_loss = Some(format!("{} lost: {reason}", lost.len())),
            None => failures.push(format!(
                "{} acknowledged messages were lost (never handled, not dead-lettered)",
                lost.len()
            )),
        }
    }
    if unexpected > 0 {
        failures.push(format!("{unexpected} handled messages were never pushed"));
    }
    if evidence.stuck > 0 {
        failures.push(format!(
            "{} messages were still ready, delayed or in flight after the drain",
            evidence.stuck
        ));
    }
    Outcome {
        acked: acked.len() as u64,
        handled: counts.len() as u64,
        duplicates,
        max_per_id,
        lost: lost.len() as u64,
        unexpected,
        stuck: evidence.stuck,
        dead_lettered: dead.iter().filter(|id| acked.contains(id)).count() as u64,
        lost_sample: lost.into_iter().take(SAMPLE).collect(),
        unexpected_sample,
        failures,
        expected_loss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_clean_run_passes() {
        let e = Evidence {
            acked: vec![1, 2, 3],
            handled: lines(&["1", "2", "3"]),
            ..Default::default()
        };
        let o = check(&e, None);
        assert!(o.passed(), "{o:?}");
        assert_eq!(
            (o.acked, o.handled, o.duplicates, o.max_per_id),
            (3, 3, 0, 1)
        );
        assert_eq!((o.lost, o.unexpected, o.stuck), (0, 0, 0));
    }

    #[test]
    fn duplicates_are_counted_not_failed() {
        let e = Evidence {
            acked: vec![1, 2, 2, 3],
            handled: lines(&["1", "2", "2", "2", "3", "3"]),
            ..Default::default()
        };
        let o = check(&e, None);
        assert!(o.passed(), "{o:?}");
        assert_eq!((o.acked, o.duplicates, o.max_per_id), (3, 3, 3));
    }

    #[test]
    fn an_acknowledged_message_never_handled_is_lost() {
        let e = Evidence {
            acked: vec![1, 2, 3],
            handled: lines(&["1"]),
            ..Default::default()
        };
        let o = check(&e, None);
        assert!(!o.passed());
        assert_eq!((o.lost, o.lost_sample.clone()), (2, vec![2, 3]));
    }

    #[test]
    fn a_dead_lettered_message_is_not_lost() {
        let e = Evidence {
            acked: vec![1, 2],
            handled: lines(&["1"]),
            dead: lines(&["2"]),
            ..Default::default()
        };
        let o = check(&e, None);
        assert!(o.passed(), "{o:?}");
        assert_eq!((o.lost, o.dead_lettered), (0, 1));
    }

    #[test]
    fn documented_loss_is_reported_as_expected() {
        let e = Evidence {
            acked: vec![1, 2],
            handled: lines(&["1"]),
            ..Default::default()
        };
        let o = check(&e, Some("no persistence"));
        assert!(o.passed(), "{o:?}");
        assert_eq!(o.lost, 1);
        assert_eq!(o.expected_loss.as_deref(), Some("1 lost: no persistence"));
    }

    #[test]
    fn documented_loss_still_fails_on_unexpected_or_stuck() {
        let e = Evidence {
            acked: vec![1],
            handled: lines(&["7"]),
            stuck: 2,
            ..Default::default()
        };
        let o = check(&e, Some("no persistence"));
        assert_eq!(o.failures.len(), 2, "{o:?}");
    }

    #[test]
    fn a_message_never_pushed_or_garbled_is_unexpected() {
        let e = Evidence {
            acked: vec![1],
            handled: lines(&["1", "9", "x1"]),
            dead: lines(&["8"]),
            ..Default::default()
        };
        let o = check(&e, None);
        assert!(!o.passed());
        assert_eq!(o.unexpected, 3);
        assert_eq!(o.unexpected_sample, lines(&["9", "x1", "8"]));
    }

    #[test]
    fn an_abandoned_push_may_still_be_delivered() {
        // The producer gave up on 2 after errors, but the server had it.
        let e = Evidence {
            acked: vec![1],
            abandoned: vec![2, 3],
            handled: lines(&["1", "2"]),
            ..Default::default()
        };
        let o = check(&e, None);
        assert!(o.passed(), "{o:?}");
        assert_eq!((o.acked, o.lost, o.unexpected), (1, 0, 0));
    }

    #[test]
    fn stuck_messages_fail() {
        let e = Evidence {
            acked: vec![1],
            handled: lines(&["1"]),
            stuck: 1,
            ..Default::default()
        };
        assert!(!check(&e, None).passed());
    }
}
