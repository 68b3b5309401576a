//! `/queues/{name}`: counts, charts of the last hour, waiting messages and
//! dead letters, with the replay, delete and purge actions.

use std::sync::Arc;

use axum::{
    extract::{Path, Query, State as AxState},
    response::{IntoResponse, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{age, csrf_field, layout, message_href, rate};
use crate::{
    api::{entry, summary},
    error::op,
    payload::preview,
    state::State,
};

/// How many waiting messages and dead letters the page lists.
const SHOWN: usize = 50;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Notice {
    done: Option<String>,
    n: Option<u64>,
    missing: Option<u64>,
}

impl Notice {
    fn render(&self) -> Option<Markup> {
        let n = self.n.unwrap_or_default();
        let text = match self.done.as_deref()? {
            "replayed" => format!("Replayed {n} dead letter{}.", plural(n)),
            "purged" => format!("Purged {n} waiting message{}.", plural(n)),
            "dlq-purged" => format!("Purged {n} dead letter{}.", plural(n)),
            "deleted" => format!("Deleted {n} dead letter{}.", plural(n)),
            _ => return None,
        };
        let missing = self.missing.unwrap_or_default();
        Some(html! {
            div.notice role="status" {
                (text)
                @if missing > 0 { " " (missing) " of the selected were no longer dead letters." }
            }
        })
    }
}

pub(crate) fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn time(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) async fn queue(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    Query(notice): Query<Notice>,
) -> Response {
    let e = match entry(&state, &name) {
        Ok(e) => e,
        Err(err) => return err.page(&state),
    };
    let (s, waiting, dead) = futures::join!(
        summary(e),
        op(flextide_admin::peek(&*e.queue, SHOWN)),
        op(async { Ok(e.queue.dead_letters(SHOWN).await?) }),
    );
    let caps = e.queue.capabilities();
    let base = super::queue_href(&state, &name);
    // Hidden, not disabled, where the backend cannot: nothing to explain per row.
    let can_delete = !state.read_only && caps.delete_dead_letters;
    let delete_action = format!("{base}/dead-letters/delete");
    let body = html! {
        p.crumbs { a href=(state.href("/")) { "Queues" } " / " (name) }
        h1 { (name) " " span.dim.small { (e.queue.backend_name()) } }
        @if let Some(n) = notice.render() { (n) }
        @if let Some(err) = &s.error { p.error { (err) } }
        @if let Some(v) = &s.stats {
            section.cards data-live="queue" data-queue=(name) {
                div.card { span.label { "Ready" } span.value data-field="ready" { (v.ready) } }
                div.card { span.label { "In flight" } span.value data-field="in_flight" { (v.in_flight) } }
                div.card { span.label { "Delayed" } span.value data-field="delayed" { (v.delayed) } }
                div.card.dead[v.dead_letters > 0] { span.label { "Dead letters" } span.value data-field="dead_letters" { (v.dead_letters) } }
                div.card { span.label { "Oldest" } span.value data-field="oldest_seconds" { (age(v.oldest_seconds)) } }
                div.card { span.label { "Processed/min" } span.value data-field="processed_per_min" { (rate(s.processed_per_min)) } }
                div.card { span.label { "Failed/min" } span.value data-field="failed_per_min" { (rate(s.failed_per_min)) } }
            }
        }
        section.charts {
            figure {
                figcaption { "Depth, last hour" }
                svg.chart data-chart="depth" data-queue=(name) viewBox="0 0 600 160" role="img" aria-label="queue depth over the last hour" {}
            }
            figure {
                figcaption { "Throughput per minute, last hour" }
                svg.chart data-chart="throughput" data-queue=(name) viewBox="0 0 600 160" role="img" aria-label="processed and failed per minute over the last hour" {}
            }
        }
        section #waiting {
            h2 { "Waiting messages" span.dim.small { " first " (SHOWN) ", peeked: no attempt spent" } }
            @match &waiting {
                Err(err) => p.muted { (err.message) },
                Ok(list) if list.is_empty() => p.muted { "No waiting message." },
                Ok(list) => table.grid {
                    thead { tr { th { "Id" } th { "Enqueued" } th.num { "Priority" } th { "Payload" } } }
                    tbody { @for m in list { tr {
                        td.mono { a href=(message_href(&state, &name, "waiting", m.id.as_str())) { (m.id.as_str()) } }
                        td.dim { (m.enqueued_at.map(time).unwrap_or_default()) }
                        td.num { (m.priority) }
                        td.payload.mono { (preview(&m.payload)) }
                    } } }
                },
            }
            @if !state.read_only && caps.purge {
                p { a.button.danger href=(format!("{base}/purge")) { "Purge waiting messages…" } }
            }
        }
        section #dead-letters {
            h2 { "Dead letters" span.dim.small { " oldest first, up to " (SHOWN) } }
            @match &dead {
                Err(err) => p.muted { (err.message) },
                Ok(list) if list.is_empty() => p.muted { "No dead letter." },
                Ok(list) => {
                    form #replay-form method="post" action=(format!("{base}/dead-letters/replay")) {
                        (csrf_field(&state))
                        table.grid {
                            thead { tr {
                                @if !state.read_only { th { input type="checkbox" #select-all title="select all"; } }
                                th { "Id" } th { "Reason" } th.num { "Attempts" } th { "Dead-lettered" } th { "Payload" }
                                @if !state.read_only { th {} }
                            } }
                            tbody { @for d in list { tr data-id=(d.message.id.as_str()) {
                                @if !state.read_only { td { input type="checkbox" name="id" value=(d.message.id.as_str()); } }
                                td.mono { a href=(message_href(&state, &name, "dead", d.message.id.as_str())) { (d.message.id.as_str()) } }
                                td.reason { (d.reason) }
                                td.num { (d.attempts) }
                                td.dim { (time(d.dead_lettered_at)) }
                                td.payload.mono { (preview(&d.message.payload)) }
                                @if !state.read_only {
                                    td.row-actions {
                                        button.small type="submit" name="one" value=(d.message.id.as_str()) { "Replay" }
                                        @if can_delete {
                                            " "
                                            button.small.danger type="submit" name="one" value=(d.message.id.as_str())
                                                formaction=(delete_action)
                                                data-confirm=(format!("Delete dead letter {} of {name} for good?", d.message.id.as_str())) { "Delete" }
                                        }
                                    }
                                }
                            } } }
                        }
                        @if !state.read_only {
                            p.actions {
                                button type="submit" name="selected" value="1" { "Replay selected" }
                                " "
                                button type="submit" name="all" value="1" { "Replay all" }
                                " "
                                @if can_delete {
                                    button.danger type="submit" name="selected" value="1"
                                        formaction=(delete_action)
                                        data-confirm=(format!("Delete the selected dead letters of {name} for good?")) { "Delete selected" }
                                    " "
                                }
                                a.button.danger href=(format!("{base}/dead-letters/purge")) { "Purge dead letters…" }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(&state, &name, body).into_response()
}
