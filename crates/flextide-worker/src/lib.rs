//! The Flextide Queue worker runtime: tower handlers, pools, autoscaling, retries with backoff, dead letters, lease heartbeats, graceful shutdown, metrics.
