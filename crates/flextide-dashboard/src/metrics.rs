//! `/metrics`: every queue's counts as Prometheus gauges (OpenMetrics
//! text), read fresh at each scrape.

use std::sync::{Arc, atomic::AtomicU64};

use axum::{
    extract::State as AxState,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{api::summaries, state::State};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    queue: String,
    backend: String,
}

pub(crate) async fn metrics(AxState(state): AxState<Arc<State>>) -> Response {
    if !state.metrics {
        return (StatusCode::NOT_FOUND, "metrics are off in this dashboard").into_response();
    }
    let gauge = || Family::<Labels, Gauge>::default();
    let (up, ready, in_flight, delayed, dead) = (gauge(), gauge(), gauge(), gauge(), gauge());
    let oldest = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let mut registry = Registry::default();
    registry.register(
        "flextide_queue_up",
        "1 when the queue's counts could be read",
        up.clone(),
    );
    registry.register(
        "flextide_queue_ready",
        "Messages ready to be delivered",
        ready.clone(),
    );
    registry.register(
        "flextide_queue_in_flight",
        "Messages leased and not yet settled",
        in_flight.clone(),
    );
    registry.register(
        "flextide_queue_delayed",
        "Messages waiting for their delay",
        delayed.clone(),
    );
    registry.register(
        "flextide_queue_dead_letters",
        "Messages in the dead letters",
        dead.clone(),
    );
    registry.register(
        "flextide_queue_oldest_age_seconds",
        "Age of the oldest ready or in-flight message",
        oldest.clone(),
    );
    for s in summaries(&state).await {
        let labels = Labels {
            queue: s.name.clone(),
            backend: s.backend.to_owned(),
        };
        let Some(v) = s.stats else {
            up.get_or_create(&labels).set(0);
            continue;
        };
        up.get_or_create(&labels).set(1);
        let n = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        ready.get_or_create(&labels).set(n(v.ready));
        in_flight.get_or_create(&labels).set(n(v.in_flight));
        delayed.get_or_create(&labels).set(n(v.delayed));
        dead.get_or_create(&labels).set(n(v.dead_letters));
        if let Some(age) = v.oldest_seconds {
            oldest.get_or_create(&labels).set(age);
        }
    }
    let mut body = String::new();
    if let Err(e) = encode(&mut body, &registry) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the metrics failed: {e}"),
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
