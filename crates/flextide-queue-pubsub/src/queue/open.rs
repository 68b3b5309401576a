//! Opening a queue (nothing is created), creating its topics and
//! subscriptions on first use (`ensure`), and dropping them.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering},
};

use flextide_queue_core::{QueueError, QueueOptions, Result};
use gcloud_googleapis::pubsub::v1::{DeadLetterPolicy, Subscription};

use super::{MAX_ACK_SECONDS, MIN_ACK_SECONDS, PubSubQueue, held::Held};
use crate::{BACKEND, PubSubConfig, conn::Conn, error, names::Names};

/// Pub/Sub's bounds of a dead-letter policy's `max_delivery_attempts`.
pub(crate) const POLICY_MIN: u32 = 5;
pub(crate) const POLICY_MAX: u32 = 100;

/// The ack deadline for a lease: whole seconds, rounded up, within 10–600.
pub(crate) fn ack_seconds(lease: std::time::Duration) -> i32 {
    let secs = lease.as_secs() + u64::from(lease.subsec_nanos() > 0);
    secs.clamp(MIN_ACK_SECONDS as u64, MAX_ACK_SECONDS as u64) as i32
}

/// The dead-letter policy's `max_delivery_attempts` for a queue's
/// `max_attempts`: the same where Pub/Sub allows it (5–100); below 5 the
/// policy says 5 and the library moves the message itself after the
/// `max_attempts`-th delivery; with no limit, or one above 100, the policy
/// says 100 (a policy is needed for Pub/Sub to count deliveries at all).
pub(crate) fn policy_attempts(max_attempts: Option<u32>) -> u32 {
    match max_attempts {
        Some(n) => n.clamp(POLICY_MIN, POLICY_MAX),
        None => POLICY_MAX,
    }
}

impl PubSubQueue {
    pub(crate) async fn open(
        config: Arc<PubSubConfig>,
        name: &str,
        options: QueueOptions,
    ) -> Result<Self> {
        if options.max_attempts == Some(0) {
            return Err(QueueError::configuration(
                BACKEND,
                "max_attempts must be at least 1 (or None)",
            ));
        }
        let conn = Conn::open(&config).await?;
        let project = match (&config.project, &conn.project) {
            (Some(p), _) | (None, Some(p)) => p.clone(),
            (None, None) => config.project()?.to_owned(),
        };
        let names = Names::new(&config, &project, name);
        if options.lease.as_secs() < MIN_ACK_SECONDS as u64
            || options.lease.as_secs() > MAX_ACK_SECONDS as u64
        {
            tracing::debug!(queue = name, lease = ?options.lease, "Pub/Sub takes ack deadlines of 10 to 600 s; the lease is clamped");
        }
        Ok(PubSubQueue {
            lease_secs: AtomicI32::new(ack_seconds(options.lease)),
            exactly_once: AtomicBool::new(config.exactly_once),
            policy_max: AtomicU32::new(policy_attempts(options.max_attempts)),
            created: AtomicBool::new(false),
            creating: tokio::sync::Mutex::new(()),
            held: Held::default(),
            name: name.to_owned(),
            names,
            conn,
            options,
            config,
        })
    }

    /// Creates what the queue needs when this handle does not know it
    /// exists: the dead-letter topic and subscription, the topic, and the
    /// subscription (ack deadline = the lease, the dead-letter policy,
    /// exactly-once delivery as configured). What exists is kept, and the
    /// subscription's own settings are read from the server.
    pub(crate) async fn ensure(&self) -> Result<()> {
        if self.created.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one = self.creating.lock().await;
        if self.created.load(Ordering::Acquire) {
            return Ok(());
        }
        let n = &self.names;
        let failed = |s| error::map("create the queue", s);
        self.conn.create_topic(&n.dl_topic).await.map_err(failed)?;
        self.conn
            .create_subscription(Subscription {
                name: n.dl_subscription.clone(),
                topic: n.dl_topic.clone(),
                ack_deadline_seconds: 60,
                ..Default::default()
            })
            .await
            .map_err(failed)?;
        self.conn.create_topic(&n.topic).await.map_err(failed)?;
        let wanted = Subscription {
            name: n.subscription.clone(),
            topic: n.topic.clone(),
            ack_deadline_seconds: ack_seconds(self.options.lease),
            dead_letter_policy: Some(DeadLetterPolicy {
                dead_letter_topic: n.dl_topic.clone(),
                max_delivery_attempts: policy_attempts(self.options.max_attempts) as i32,
            }),
            enable_exactly_once_delivery: self.config.exactly_once,
            ..Default::default()
        };
        let made = self
            .conn
            .create_subscription(wanted.clone())
            .await
            .map_err(failed)?;
        let actual = if made {
            wanted
        } else {
            self.conn
                .get_subscription(&n.subscription)
                .await
                .map_err(failed)?
                .unwrap_or(wanted)
        };
        self.learn(&actual);
        self.created.store(true, Ordering::Release);
        Ok(())
    }

    /// Takes the subscription's settings as they are on the server.
    fn learn(&self, s: &Subscription) {
        if s.ack_deadline_seconds > 0 {
            self.lease_secs
                .store(s.ack_deadline_seconds, Ordering::Release);
        }
        self.exactly_once
            .store(s.enable_exactly_once_delivery, Ordering::Release);
        let policy = s
            .dead_letter_policy
            .as_ref()
            .map(|p| p.max_delivery_attempts.max(0) as u32)
            .unwrap_or(0);
        if policy == 0 {
            tracing::warn!(queue = %self.name, "the subscription has no dead-letter policy: Pub/Sub does not count deliveries, so every delivery reports attempt 1 and max_attempts is not enforced");
        }
        self.policy_max.store(policy, Ordering::Release);
    }

    /// After a call found the topic or subscription missing (another handle
    /// dropped the queue): forget that they exist, so the next `ensure`
    /// creates them again. Returns whether this handle thought they did.
    pub(super) fn forget_created(&self) -> bool {
        self.created.swap(false, Ordering::AcqRel)
    }

    /// `drop_queue`: the subscriptions, then the topics.
    pub(super) async fn drop_all(&self) -> Result<()> {
        let _one = self.creating.lock().await;
        self.created.store(false, Ordering::Release);
        self.held.clear();
        let n = &self.names;
        let failed = |s| error::map("drop the queue", s);
        self.conn
            .delete_subscription(&n.subscription)
            .await
            .map_err(failed)?;
        self.conn
            .delete_subscription(&n.dl_subscription)
            .await
            .map_err(failed)?;
        self.conn.delete_topic(&n.topic).await.map_err(failed)?;
        self.conn.delete_topic(&n.dl_topic).await.map_err(failed)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn leases_are_clamped() {
        assert_eq!(ack_seconds(Duration::from_millis(1)), 10);
        assert_eq!(ack_seconds(Duration::from_millis(30_001)), 31);
        assert_eq!(ack_seconds(Duration::from_secs(3600)), 600);
    }

    #[test]
    fn policies() {
        assert_eq!(policy_attempts(Some(2)), 5);
        assert_eq!(policy_attempts(Some(10)), 10);
        assert_eq!(policy_attempts(Some(1000)), 100);
        assert_eq!(policy_attempts(None), 100);
    }
}
