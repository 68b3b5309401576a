//! The router: which path each page, API call and asset is at.

use std::sync::Arc;

use axum::{
    Router,
    extract::Request,
    http::{HeaderValue, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};

use crate::{api, metrics, pages, security, state::State};

const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// No script, style, frame or form target but the dashboard's own: an
/// escaping mistake would still not run a payload's script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/queues/{name}", get(pages::queue))
        .route("/queues/{name}/message", get(pages::message))
        .route("/queues/{name}/dead-letters/replay", post(pages::replay))
        .route("/queues/{name}/dead-letters/delete", post(pages::delete))
        .route(
            "/queues/{name}/dead-letters/purge",
            get(pages::confirm_purge_dead_letters).post(pages::purge_dead_letters),
        )
        .route(
            "/queues/{name}/purge",
            get(pages::confirm_purge).post(pages::purge),
        )
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/api/csrf", get(api::csrf))
        .route("/api/queues", get(api::list_queues))
        .route("/api/queues/{name}", get(api::queue))
        .route("/api/queues/{name}/history", get(api::history))
        .route("/api/queues/{name}/messages", get(api::messages))
        .route("/api/queues/{name}/dead-letters", get(api::dead_letters))
        .route("/api/queues/{name}/dead-letters/replay", post(api::replay))
        .route(
            "/api/queues/{name}/dead-letters/delete",
            post(api::delete_dead_letters),
        )
        .route(
            "/api/queues/{name}/dead-letters/purge",
            post(api::purge_dead_letters),
        )
        .route("/api/queues/{name}/purge", post(api::purge))
        .route("/metrics", get(metrics::metrics))
        .route("/static/app.js", get(js))
        .route("/static/app.css", get(css))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security::gate,
        ))
        .layer(middleware::from_fn(headers))
        .with_state(state)
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS).into_response()
}

/// Headers on every answer: the content security policy, no sniffing, no
/// framing, no referrer to other sites (`no-referrer` would make browsers
/// send `Origin: null` with our own forms, which the gate refuses), no
/// caching of pages that show messages.
async fn headers(request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
