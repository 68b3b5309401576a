//! The confirmation pages of the two purges: they name the queue and the
//! count, and ask for the queue's name to be typed.

use std::sync::Arc;

use axum::{
    extract::{Path, State as AxState},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use maud::{Markup, html};

use super::{csrf_field, layout, queue::plural, queue_href};
use crate::{
    api::{Purge, entry},
    error::{AppError, op},
    state::State,
};

pub(crate) async fn confirm_purge(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
) -> Response {
    page(&state, &name, Purge::Waiting, None).await
}

pub(crate) async fn confirm_purge_dead_letters(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
) -> Response {
    page(&state, &name, Purge::DeadLetters, None).await
}

/// The page, with `mistake` when a confirmation did not name the queue.
pub(crate) async fn page(
    state: &State,
    name: &str,
    what: Purge,
    mistake: Option<&str>,
) -> Response {
    match render(state, name, what, mistake).await {
        Ok(m) => {
            let status = if mistake.is_some() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            (status, layout(state, &format!("Purge {name}?"), m)).into_response()
        }
        Err(e) => e.page(state),
    }
}

async fn render(
    state: &State,
    name: &str,
    what: Purge,
    mistake: Option<&str>,
) -> Result<Markup, AppError> {
    let e = entry(state, name)?;
    let base = queue_href(state, name);
    let (title, question, button, action) = match what {
        Purge::Waiting => {
            let stats = op(flextide_admin::stats(&*e.queue)).await?;
            let n = stats.live();
            (
                format!("Purge the waiting messages of {name}?"),
                op(flextide_admin::purge_confirmation(&*e.queue)).await?,
                format!("Purge {n} message{} of {name}", plural(n)),
                format!("{base}/purge"),
            )
        }
        Purge::DeadLetters => {
            let n = op(flextide_admin::stats(&*e.queue)).await?.dead_letters;
            (
                format!("Purge the dead letters of {name}?"),
                format!(
                    "this deletes the {n} dead letter{} of {name} for good",
                    plural(n)
                ),
                format!("Purge {n} dead letter{} of {name}", plural(n)),
                format!("{base}/dead-letters/purge"),
            )
        }
    };
    Ok(html! {
        p.crumbs { a href=(state.href("/")) { "Queues" } " / " a href=(base) { (name) } " / purge" }
        h1 { (title) }
        p.warn #question { (capitalise(&question)) "." }
        @if let Some(m) = mistake { p.error { (m) } }
        form.confirm method="post" action=(action) {
            (csrf_field(state))
            label for="confirm" { "Type the queue's name, " strong { (name) } ", to confirm:" }
            input #confirm type="text" name="confirm" autocomplete="off" required;
            button.danger type="submit" { (button) }
            " "
            a href=(base) { "Cancel" }
        }
    })
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
