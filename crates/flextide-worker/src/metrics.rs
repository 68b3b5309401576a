//! Metrics through the `metrics` facade, named after the OpenTelemetry
//! messaging conventions. Handles are registered once per worker, so the hot
//! path never looks a metric up by name.
//!
//! | name | kind | meaning |
//! | --- | --- | --- |
//! | `messaging.process.duration` | histogram, seconds | handler run time |
//! | `messaging.push_to_start.duration` | histogram, seconds | from `enqueued_at` to the handler's start |
//! | `messaging.client.consumed.messages` | counter | deliveries fetched |
//! | `flextide.worker.processed` | counter | handled and acknowledged |
//! | `flextide.worker.failed` | counter | handler errors and panics |
//! | `flextide.worker.retried` | counter | failures nacked for a later attempt |
//! | `flextide.worker.dead_lettered` | counter | moved to the dead letters |
//! | `flextide.worker.panicked` | counter | handler panics |
//! | `flextide.worker.lease_lost` | counter | leases lost while handling |
//! | `flextide.worker.given_back_late` | counter | prefetched deliveries given back unstarted at half their lease |
//! | `flextide.worker.in_flight` | gauge | handlers running |
//! | `flextide.worker.utilization` | gauge, 0 to 1 | busy share of the concurrency slots |
//! | `flextide.worker.workers` | gauge | workers in a pool |
//! | `flextide.worker.circuit_breaker.state` | gauge | 0 closed, 1 open, 2 half-open |
//! | `flextide.queue.depth` | gauge | messages ready in the queue (`stats().depth`) |
//!
//! Every metric carries the labels `messaging.destination.name` (the queue)
//! and `messaging.system` (the backend).

use metrics::{Counter, Gauge, Histogram, Label, Unit};

#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub(crate) duration: Histogram,
    pub(crate) push_to_start: Histogram,
    pub(crate) consumed: Counter,
    pub(crate) processed: Counter,
    pub(crate) failed: Counter,
    pub(crate) retried: Counter,
    pub(crate) dead_lettered: Counter,
    pub(crate) panicked: Counter,
    pub(crate) lease_lost: Counter,
    pub(crate) given_back_late: Counter,
    pub(crate) in_flight: Gauge,
    pub(crate) utilization: Gauge,
    pub(crate) workers: Gauge,
    pub(crate) breaker: Gauge,
    pub(crate) depth: Gauge,
}

impl Metrics {
    pub(crate) fn new(queue: &str, backend: &'static str) -> Self {
        describe();
        let labels = [
            Label::new("messaging.destination.name", queue.to_owned()),
            Label::new("messaging.system", backend),
        ];
        Metrics {
            duration: metrics::histogram!("messaging.process.duration", labels.iter()),
            push_to_start: metrics::histogram!("messaging.push_to_start.duration", labels.iter()),
            consumed: metrics::counter!("messaging.client.consumed.messages", labels.iter()),
            processed: metrics::counter!("flextide.worker.processed", labels.iter()),
            failed: metrics::counter!("flextide.worker.failed", labels.iter()),
            retried: metrics::counter!("flextide.worker.retried", labels.iter()),
            dead_lettered: metrics::counter!("flextide.worker.dead_lettered", labels.iter()),
            panicked: metrics::counter!("flextide.worker.panicked", labels.iter()),
            lease_lost: metrics::counter!("flextide.worker.lease_lost", labels.iter()),
            given_back_late: metrics::counter!("flextide.worker.given_back_late", labels.iter()),
            in_flight: metrics::gauge!("flextide.worker.in_flight", labels.iter()),
            utilization: metrics::gauge!("flextide.worker.utilization", labels.iter()),
            workers: metrics::gauge!("flextide.worker.workers", labels.iter()),
            breaker: metrics::gauge!("flextide.worker.circuit_breaker.state", labels.iter()),
            depth: metrics::gauge!("flextide.queue.depth", labels.iter()),
        }
    }
}

fn describe() {
    metrics::describe_histogram!(
        "messaging.process.duration",
        Unit::Seconds,
        "Time a handler took for one message."
    );
    metrics::describe_histogram!(
        "messaging.push_to_start.duration",
        Unit::Seconds,
        "Time from the push of a message to the start of its handler."
    );
    metrics::describe_counter!(
        "messaging.client.consumed.messages",
        Unit::Count,
        "Deliveries fetched from the queue."
    );
    metrics::describe_counter!(
        "flextide.worker.processed",
        Unit::Count,
        "Messages handled and acknowledged."
    );
    metrics::describe_counter!(
        "flextide.worker.failed",
        Unit::Count,
        "Handler errors and panics."
    );
    metrics::describe_counter!(
        "flextide.worker.retried",
        Unit::Count,
        "Failures given back for a later attempt."
    );
    metrics::describe_counter!(
        "flextide.worker.dead_lettered",
        Unit::Count,
        "Messages moved to the dead letters."
    );
    metrics::describe_counter!("flextide.worker.panicked", Unit::Count, "Handler panics.");
    metrics::describe_counter!(
        "flextide.worker.lease_lost",
        Unit::Count,
        "Leases lost while a handler ran."
    );
    metrics::describe_counter!(
        "flextide.worker.given_back_late",
        Unit::Count,
        "Prefetched deliveries given back unstarted, half their lease gone without a free slot."
    );
    metrics::describe_gauge!(
        "flextide.worker.in_flight",
        Unit::Count,
        "Handlers running."
    );
    metrics::describe_gauge!(
        "flextide.worker.utilization",
        "Busy share of the concurrency slots, 0 to 1."
    );
    metrics::describe_gauge!(
        "flextide.worker.workers",
        Unit::Count,
        "Workers running in a pool."
    );
    metrics::describe_gauge!(
        "flextide.worker.circuit_breaker.state",
        "0 closed, 1 open, 2 half-open."
    );
    metrics::describe_gauge!(
        "flextide.queue.depth",
        Unit::Count,
        "Messages ready for delivery."
    );
}

/// Installs a global Prometheus recorder with an HTTP listener serving
/// `/metrics` on `addr`, with histogram buckets suited to message timings.
/// Call it once, inside a Tokio runtime, before building workers.
///
/// Metric names are rewritten the Prometheus way (`.` becomes `_`).
#[cfg(feature = "prometheus")]
pub fn install_prometheus(
    addr: std::net::SocketAddr,
) -> Result<(), metrics_exporter_prometheus::BuildError> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const BUCKETS: [f64; 14] = [
        0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
    ];
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("duration".into()), &BUCKETS)?
        .install()
}
