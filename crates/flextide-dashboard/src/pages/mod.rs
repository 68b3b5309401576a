//! The server-rendered pages (maud: every interpolation is escaped).

mod actions;
mod confirm;
mod login;
mod message;
mod overview;
mod queue;

pub(crate) use actions::{delete, purge, purge_dead_letters, replay};
pub(crate) use confirm::{confirm_purge, confirm_purge_dead_letters};
pub(crate) use login::{login, login_page};
pub(crate) use message::message;
pub(crate) use overview::overview;
pub(crate) use queue::queue;

use axum::{http::StatusCode, response::Html};
use maud::{DOCTYPE, Markup, html};

use crate::state::State;

/// The frame of every page.
pub(crate) fn layout(state: &State, title: &str, body: Markup) -> Html<String> {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Flextide" }
                link rel="stylesheet" href=(state.href("/static/app.css"));
                script src=(state.href("/static/app.js")) defer {}
            }
            body data-base=(state.base) {
                header.top {
                    a.brand href=(state.href("/")) { "Flextide" span.dim { " queues" } }
                    @if state.read_only { span.badge title="this dashboard changes nothing" { "read-only" } }
                }
                main { (body) }
            }
        }
    };
    Html(page.into_string())
}

pub(crate) fn error_page(state: &State, status: StatusCode, message: &str) -> Html<String> {
    layout(
        state,
        status.canonical_reason().unwrap_or("Error"),
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.error { (message) }
            p { a href=(state.href("/")) { "Back to the queues" } }
        },
    )
}

/// The hidden CSRF field of every form that changes something.
pub(crate) fn csrf_field(state: &State) -> Markup {
    html! { input type="hidden" name="csrf" value=(state.csrf); }
}

/// An age for people.
pub(crate) fn age(seconds: Option<f64>) -> String {
    match seconds {
        None => "–".into(),
        Some(s) if s < 120.0 => format!("{s:.0} s"),
        Some(s) if s < 7200.0 => format!("{:.0} min", s / 60.0),
        Some(s) if s < 172_800.0 => format!("{:.1} h", s / 3600.0),
        Some(s) => format!("{:.1} d", s / 86_400.0),
    }
}

/// A rate per minute for people.
pub(crate) fn rate(per_min: Option<f64>) -> String {
    match per_min {
        None => "–".into(),
        Some(r) if r >= 100.0 => format!("{r:.0}"),
        Some(r) => format!("{r:.1}"),
    }
}

pub(crate) fn queue_href(state: &State, name: &str) -> String {
    state.href(&format!("/queues/{name}"))
}

/// The link to a message's payload view (the id is form-encoded: ids are
/// the backends', any text).
pub(crate) fn message_href(state: &State, name: &str, kind: &str, id: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("kind", kind)
        .append_pair("id", id)
        .finish();
    state.href(&format!("/queues/{name}/message?{query}"))
}
