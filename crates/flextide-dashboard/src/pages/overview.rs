//! `/`: every queue with its counts and rates, refreshed by the script.

use std::sync::Arc;

use axum::{extract::State as AxState, response::Html};
use maud::html;

use super::{age, layout, queue_href, rate};
use crate::{api::summaries, state::State};

pub(crate) async fn overview(AxState(state): AxState<Arc<State>>) -> Html<String> {
    let rows = summaries(&state).await;
    let estimated = rows.iter().any(|r| r.rates == "estimated");
    layout(
        &state,
        "Queues",
        html! {
            h1 { "Queues" }
            table #queues .grid data-live="overview" {
                thead { tr {
                    th { "Queue" } th { "Backend" }
                    th.num { "Ready" } th.num { "In flight" } th.num { "Delayed" }
                    th.num { "Dead letters" } th.num { "Oldest" }
                    th.num { "Processed/min" } th.num { "Failed/min" }
                } }
                tbody {
                    @for r in &rows {
                        tr data-queue=(r.name) {
                            td { a href=(queue_href(&state, &r.name)) { (r.name) } }
                            td.dim { (r.backend) }
                            @if let Some(s) = &r.stats {
                                td.num data-field="ready" { (s.ready) }
                                td.num data-field="in_flight" { (s.in_flight) }
                                td.num data-field="delayed" { (s.delayed) }
                                td.num.dead[s.dead_letters > 0] data-field="dead_letters" { (s.dead_letters) }
                                td.num data-field="oldest_seconds" { (age(s.oldest_seconds)) }
                            } @else {
                                td.error colspan="5" data-field="error" { (r.error.as_deref().unwrap_or("")) }
                            }
                            td.num data-field="processed_per_min" { (rate(r.processed_per_min)) }
                            td.num data-field="failed_per_min" { (rate(r.failed_per_min)) }
                        }
                    }
                }
            }
            p.note {
                "Refreshes every 5 s. "
                @if estimated {
                    "Rates are estimated from the counts between samples (processed: messages that left the queue other than into the dead letters, so pushes in the same interval hide some; failed: dead letters added)."
                }
            }
        },
    )
}
