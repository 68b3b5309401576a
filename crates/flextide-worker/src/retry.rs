//! How long a failed message waits before its next attempt, and how many
//! attempts it gets.
//!
//! The delay is not slept in the worker: the message is nacked with it, so
//! the queue holds it back and the retry survives a restart of the process.

use std::time::Duration;

use rand::Rng;

/// How the computed backoff is randomised, so that messages that failed
/// together do not all come back at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Exactly the exponential delay.
    None,
    /// Uniform between zero and the exponential delay ("full jitter").
    #[default]
    Full,
    /// Half the exponential delay plus a uniform part up to the other half.
    Equal,
}

/// Exponential backoff with jitter and an attempt limit.
///
/// The delay after failed attempt `n` (1-based) is drawn from
/// `min(cap, base * factor^(n-1))` according to [`Jitter`]. After the
/// `max_attempts`th failed attempt the message is dead-lettered with the
/// reason `max attempts exceeded (max_attempts): <error chain>`.
///
/// ```
/// # use std::time::Duration;
/// # use flextide_worker::{RetryPolicy, Jitter};
/// let policy = RetryPolicy::default().base(Duration::from_millis(100)).max_attempts(3).jitter(Jitter::None);
/// assert_eq!(policy.delay(1), Duration::from_millis(100));
/// assert_eq!(policy.delay(2), Duration::from_millis(200));
/// assert!(policy.is_exhausted(3));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the first failure, before jitter. Default 1 s.
    pub base: Duration,
    /// Growth per attempt. Default 2.
    pub factor: f64,
    /// Largest delay, before jitter. Default 10 minutes.
    pub cap: Duration,
    /// Attempts (deliveries) before dead-lettering. Default 10, like
    /// `QueueOptions::max_attempts`. 1 means no retry.
    pub max_attempts: u32,
    /// Randomisation. Default [`Jitter::Full`].
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            factor: 2.0,
            cap: Duration::from_secs(600),
            max_attempts: 10,
            jitter: Jitter::Full,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries: every failure dead-letters.
    pub fn no_retry() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Sets [`RetryPolicy::base`].
    pub fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// Sets [`RetryPolicy::factor`] (values below 1 are treated as 1).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Sets [`RetryPolicy::cap`].
    pub fn cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// Sets [`RetryPolicy::max_attempts`] (at least 1).
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Sets [`RetryPolicy::jitter`].
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The delay before jitter after failed attempt `attempt`:
    /// `min(cap, base * factor^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(1024) as i32;
        let secs = self.base.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        let cap = self.cap.as_secs_f64();
        if !secs.is_finite() || secs >= cap {
            self.cap
        } else {
            Duration::from_secs_f64(secs.max(0.0))
        }
    }

    /// The delay to wait after failed attempt `attempt`, jitter applied.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => ceiling.mul_f64(rand::rng().random_range(0.0..=1.0)),
            Jitter::Equal => {
                ceiling / 2 + (ceiling / 2).mul_f64(rand::rng().random_range(0.0..=1.0))
            }
        }
    }

    /// Whether attempt `attempt` was the last one allowed.
    pub fn is_exhausted(&self, attempt: u32) -> bool {
        attempt >= self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_and_capped() {
        let p = RetryPolicy::default()
            .base(Duration::from_secs(1))
            .cap(Duration::from_secs(10))
            .jitter(Jitter::None);
        let delays: Vec<_> = (1..=6).map(|a| p.delay(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn full_jitter_stays_within_bounds_and_varies() {
        let p = RetryPolicy::default()
            .base(Duration::from_millis(100))
            .factor(3.0)
            .cap(Duration::from_secs(5));
        for attempt in 1..=8 {
            let ceiling = p.ceiling(attempt);
            let samples: Vec<_> = (0..200).map(|_| p.delay(attempt)).collect();
            assert!(samples.iter().all(|d| *d <= ceiling), "attempt {attempt}");
            let distinct: std::collections::HashSet<_> = samples.iter().collect();
            assert!(distinct.len() > 50, "jitter should spread the delays");
            // Full jitter uses the whole range, not just its top.
            assert!(
                samples.iter().any(|d| *d < ceiling / 2)
                    && samples.iter().any(|d| *d > ceiling / 2)
            );
        }
    }

    #[test]
    fn equal_jitter_keeps_half() {
        let p = RetryPolicy::default().jitter(Jitter::Equal);
        for _ in 0..200 {
            let d = p.delay(3);
            assert!(d >= p.ceiling(3) / 2 && d <= p.ceiling(3));
        }
    }

    #[test]
    fn attempts() {
        assert!(RetryPolicy::no_retry().is_exhausted(1));
        let p = RetryPolicy::default().max_attempts(3);
        assert!(!p.is_exhausted(2));
        assert!(p.is_exhausted(3));
        assert_eq!(RetryPolicy::default().max_attempts(0).max_attempts, 1);
    }
}
