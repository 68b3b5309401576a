//! `/queues/{name}/message?kind=waiting|dead&id=ID`: one message's
//! payload, headers and (for a dead letter) reason and attempts.

use std::sync::Arc;

use axum::{
    extract::{Path, Query, State as AxState},
    response::{IntoResponse, Response},
};
use flextide_queue_core::Message;
use maud::html;
use serde::Deserialize;

use super::{layout, queue_href};
use crate::{
    api::{MAX_LIST, entry},
    error::{AppError, op},
    payload::{VIEW_LIMIT, human_size, show},
    state::State,
};

#[derive(Debug, Deserialize)]
pub(crate) struct Which {
    kind: String,
    id: String,
}

pub(crate) async fn message(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    Query(which): Query<Which>,
) -> Response {
    match render(&state, &name, which).await {
        Ok(r) => r,
        Err(e) => e.page(&state),
    }
}

async fn render(state: &State, name: &str, which: Which) -> Result<Response, AppError> {
    let e = entry(state, name)?;
    let (message, dead): (Message, _) = match which.kind.as_str() {
        "waiting" => {
            let list = op(flextide_admin::peek(&*e.queue, MAX_LIST)).await?;
            let m = list
                .into_iter()
                .find(|m| m.id.as_str() == which.id)
                .ok_or_else(|| {
                    AppError::not_found(format!(
                        "no waiting message {} among the first {MAX_LIST} of {name} (it may have been delivered)",
                        which.id
                    ))
                })?;
            (m, None)
        }
        "dead" => {
            let list =
                op(async { Ok(e.queue.dead_letters(flextide_admin::MAX_LISTED).await?) }).await?;
            let d = list
                .into_iter()
                .find(|d| d.message.id.as_str() == which.id)
                .ok_or_else(|| {
                    AppError::not_found(format!(
                        "no dead letter {} in {name} (it may have been replayed or purged)",
                        which.id
                    ))
                })?;
            (d.message.clone(), Some(d))
        }
        other => {
            return Err(AppError::bad_request(format!(
                "kind must be waiting or dead, not {other:?}"
            )));
        }
    };
    let shown = show(&message.payload);
    let body = html! {
        p.crumbs { a href=(state.href("/")) { "Queues" } " / " a href=(queue_href(state, name)) { (name) } " / message" }
        h1 { "Message " span.mono { (message.id.as_str()) } }
        dl.facts {
            dt { "Queue" } dd { (name) }
            dt { "State" } dd { @if dead.is_some() { "dead letter" } @else { "waiting" } }
            dt { "Size" } dd { (human_size(shown.size)) " (" (shown.size) " bytes)" }
            dt { "Shown as" } dd data-field="kind" { (shown.kind) }
            dt { "Priority" } dd { (message.priority) }
            @if let Some(k) = &message.ordering_key { dt { "Ordering key" } dd { (k) } }
            @if let Some(d) = &dead {
                dt { "Reason" } dd.reason { (d.reason) }
                dt { "Attempts" } dd { (d.attempts) }
                dt { "Dead-lettered" } dd { (humantime::format_rfc3339_seconds(d.dead_lettered_at)) }
            }
        }
        @if !message.headers.is_empty() {
            h2 { "Headers" }
            table.grid { tbody { @for (k, v) in &message.headers { tr { td.mono { (k) } td.mono { (v) } } } } }
        }
        h2 { "Payload" }
        @if shown.truncated {
            p.warn { "Showing the first " (human_size(if shown.kind == "binary" { VIEW_LIMIT / 4 } else { VIEW_LIMIT })) " of " (human_size(shown.size)) "." }
        }
        pre #payload .payload data-kind=(shown.kind) { (shown.text) }
    };
    Ok(layout(state, &format!("Message {}", message.id.as_str()), body).into_response())
}
