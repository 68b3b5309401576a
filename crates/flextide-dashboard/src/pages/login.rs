//! `/login`: where a person types the token once; the answer is a session
//! cookie (the token itself never goes into the browser's storage).

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::State as AxState,
    http::{StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use maud::html;

use super::layout;
use crate::{
    security::{SESSION_COOKIE, same},
    state::State,
};

pub(crate) async fn login_page(AxState(state): AxState<Arc<State>>) -> Response {
    render(&state, None)
}

fn render(state: &State, mistake: Option<&str>) -> Response {
    if state.token.is_none() {
        return Redirect::to(&state.href("/")).into_response();
    }
    let page = layout(
        state,
        "Sign in",
        html! {
            h1 { "Sign in" }
            @if let Some(m) = mistake { p.error { (m) } }
            form.confirm method="post" action=(state.href("/login")) {
                label for="token" { "The dashboard's token:" }
                input #token type="password" name="token" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    );
    let status = if mistake.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    (status, page).into_response()
}

pub(crate) async fn login(AxState(state): AxState<Arc<State>>, body: Bytes) -> Response {
    let Some(token) = &state.token else {
        return Redirect::to(&state.href("/")).into_response();
    };
    let typed = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if !same(typed.trim(), token) {
        return render(&state, Some("That is not the token."));
    }
    let path = if state.base.is_empty() {
        "/"
    } else {
        state.base.as_str()
    };
    let cookie = cookie::Cookie::build((SESSION_COOKIE, state.session.clone()))
        .path(path.to_owned())
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .build();
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie.to_string()),
            (header::LOCATION, state.href("/")),
        ],
    )
        .into_response()
}
