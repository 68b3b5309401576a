//! What happens during a run: the scenario (the standard run or one of the
//! bad days) turned into a schedule of worker kills and server outages.

use std::time::Duration;

use clap::ValueEnum;
use serde::Serialize;

/// A kind of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Scenario {
    /// Workers SIGKILLed every few seconds; the server crashed twice and
    /// restarted after a few seconds.
    Standard,
    /// Workers and producers start while the server is down; it comes up
    /// 10 s later.
    StartDown,
    /// The server is down for 60 s in the middle of the run.
    LongOutage,
    /// The first attempt of 1 message in 50 hangs; the worker's handler
    /// timeout must hand it back for another try (worker kills go on).
    Hang,
}

/// One outage of the server: when it is crashed, counted from the start,
/// and how long it stays down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outage {
    pub at: Duration,
    pub down: Duration,
}

/// The schedule of one run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub scenario: Scenario,
    pub messages: u64,
    /// How long producers spread their pushes over.
    pub push_for: Duration,
    pub producers: u64,
    pub workers: usize,
    /// Handlers at once in each worker.
    pub concurrency: usize,
    /// A worker is SIGKILLed and replaced this often (while producing).
    pub kill_every: Option<Duration>,
    /// Server outages (ignored for a backend without a server).
    pub outages: Vec<Outage>,
    /// The server is down when the agents start, for this long.
    pub start_down: Option<Duration>,
    /// The first attempt of every id divisible by this hangs.
    pub hang_every: u64,
    pub lease: Duration,
    pub handler_timeout: Duration,
    /// The longest the final drain may take.
    pub drain_limit: Duration,
}

impl Plan {
    /// The schedule of `scenario` for `messages` over about `seconds`;
    /// on a `cluster`, each outage takes one node down.
    pub(crate) fn new(scenario: Scenario, messages: u64, seconds: u64, cluster: bool) -> Plan {
        let secs = Duration::from_secs(seconds.max(6));
        let third = secs / 3;
        let mut plan = Plan {
            scenario,
            messages,
            push_for: secs,
            producers: 2,
            workers: 3,
            concurrency: 8,
            kill_every: Some(Duration::from_secs(4)),
            outages: vec![
                Outage {
                    at: third,
                    down: Duration::from_secs(3),
                },
                Outage {
                    at: third * 2,
                    down: Duration::from_secs(3),
                },
            ],
            start_down: None,
            hang_every: 0,
            lease: Duration::from_secs(5),
            handler_timeout: Duration::from_secs(3),
            drain_limit: secs + Duration::from_secs(120),
        };
        if cluster {
            // A node stays down long enough for its clients to notice and
            // move to another node, and for the others to elect new
            // leaders; the run goes on meanwhile.
            for o in &mut plan.outages {
                o.down = Duration::from_secs(8);
            }
        }
        match scenario {
            Scenario::Standard => {}
            Scenario::StartDown => {
                plan.outages.clear();
                plan.start_down = Some(Duration::from_secs(10));
            }
            Scenario::LongOutage => {
                plan.outages = vec![Outage {
                    at: third,
                    down: Duration::from_secs(60),
                }];
                // Pushing goes on after the outage, so it is not all before it.
                plan.push_for = secs + Duration::from_secs(60);
            }
            Scenario::Hang => {
                plan.outages.clear();
                plan.hang_every = 50;
            }
        }
        plan
    }

    /// Pushes per second for each producer.
    pub(crate) fn rate_per_producer(&self) -> f64 {
        self.messages as f64 / self.producers as f64 / self.push_for.as_secs_f64()
    }

    /// How long each handling takes: workers together handle 70% of the
    /// push rate, so a backlog grows while producers push (crashes find
    /// messages waiting, not an empty queue) and drains afterwards.
    pub(crate) fn work(&self) -> Duration {
        let slots = (self.workers * self.concurrency) as f64;
        let rate = self.messages as f64 / self.push_for.as_secs_f64();
        Duration::from_secs_f64(slots / (0.7 * rate)).min(Duration::from_secs(1))
    }

    /// Ids per push_batch: about ten batches a second per producer.
    pub(crate) fn batch(&self) -> usize {
        ((self.rate_per_producer() / 10.0) as usize).clamp(1, 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_run_crashes_twice_within_the_pushing() {
        let p = Plan::new(Scenario::Standard, 3000, 30, false);
        assert_eq!(p.outages.len(), 2);
        assert!(p.outages.iter().all(|o| o.at + o.down < p.push_for));
        assert_eq!(p.rate_per_producer(), 50.0);
        assert_eq!(p.batch(), 5);
        // 24 handler slots at 70% of 100 pushes a second.
        assert_eq!(p.work().as_millis(), 342);
    }

    #[test]
    fn a_cluster_loses_a_node_for_longer_but_within_the_pushing() {
        let p = Plan::new(Scenario::Standard, 3000, 30, true);
        assert_eq!(p.outages.len(), 2);
        assert!(p.outages.iter().all(|o| o.down == Duration::from_secs(8)));
        assert!(p.outages.iter().all(|o| o.at + o.down <= p.push_for));
    }

    #[test]
    fn the_long_outage_lasts_a_minute_and_pushing_outlives_it() {
        let p = Plan::new(Scenario::LongOutage, 3000, 30, false);
        assert_eq!(
            p.outages,
            vec![Outage {
                at: Duration::from_secs(10),
                down: Duration::from_secs(60)
            }]
        );
        assert!(p.push_for > Duration::from_secs(70));
    }
}
