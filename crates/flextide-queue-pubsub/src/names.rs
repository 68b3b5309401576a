//! The names of a queue's topics and subscriptions.

use crate::config::PubSubConfig;

/// The fully qualified names of one queue's resources.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// `projects/P/topics/<prefix><queue>`.
    pub(crate) topic: String,
    /// `projects/P/subscriptions/<prefix><queue>`.
    pub(crate) subscription: String,
    /// `projects/P/topics/<prefix><queue>.dlq`.
    pub(crate) dl_topic: String,
    /// `projects/P/subscriptions/<prefix><queue>.dlq`.
    pub(crate) dl_subscription: String,
}

/// What dead-letter names end with. Queue names cannot hold a dot, so no
/// queue's own name ends this way.
pub(crate) const DLQ_SUFFIX: &str = ".dlq";

impl Names {
    pub(crate) fn new(config: &PubSubConfig, project: &str, queue: &str) -> Self {
        let base = format!("{}{queue}", config.prefix);
        Names {
            topic: format!("projects/{project}/topics/{base}"),
            subscription: format!("projects/{project}/subscriptions/{base}"),
            dl_topic: format!("projects/{project}/topics/{base}{DLQ_SUFFIX}"),
            dl_subscription: format!("projects/{project}/subscriptions/{base}{DLQ_SUFFIX}"),
        }
    }

    pub(crate) fn project_paths(project: &str) -> String {
        format!("projects/{project}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let n = Names::new(&PubSubConfig::default(), "p1", "emails");
        assert_eq!(n.topic, "projects/p1/topics/ftq-emails");
        assert_eq!(n.subscription, "projects/p1/subscriptions/ftq-emails");
        assert_eq!(n.dl_topic, "projects/p1/topics/ftq-emails.dlq");
        assert_eq!(
            n.dl_subscription,
            "projects/p1/subscriptions/ftq-emails.dlq"
        );
    }
}
