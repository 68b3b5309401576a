//! The gate every request passes: loopback `Host` check, token, and for
//! every state-changing request a same-origin check, read-only mode and
//! the CSRF token.

use std::sync::Arc;

use axum::{
    body::{Body, Bytes},
    extract::{Request, State as AxState},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use subtle::ConstantTimeEq;

use crate::{error::AppError, state::State};

/// The cookie a login sets.
pub(crate) const SESSION_COOKIE: &str = "flextide_dashboard_session";
/// Largest form body the gate reads to find the CSRF field.
const MAX_FORM: usize = 1 << 20;

pub(crate) fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path == "/api" || path == "/metrics"
}

fn refuse(state: &State, path: &str, status: StatusCode, message: String) -> Response {
    let e = AppError::new(status, message);
    if is_api(path) {
        e.json()
    } else {
        e.page(state)
    }
}

/// Whether `host` (a `Host` header: name and optional port) names this
/// machine's loopback.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(n, _)| n)
    };
    name.eq_ignore_ascii_case("localhost")
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether the request carries the token or the session cookie.
pub(crate) fn authenticated(state: &State, headers: &HeaderMap) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        && same(bearer.trim(), token)
    {
        return true;
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .flatten()
        .any(|c| c.name() == SESSION_COOKIE && same(c.value(), &state.session))
}

/// A state-changing request from another site: `Sec-Fetch-Site` says so,
/// or `Origin` names another host than `Host`.
fn cross_site(headers: &HeaderMap) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Some(format!("a {site} request cannot change anything here"));
    }
    let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or("null");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin.split_once("://").map(|(_, h)| h);
    if origin_host.is_some_and(|h| h.eq_ignore_ascii_case(host)) {
        None
    } else {
        Some("the request's Origin is not this dashboard".into())
    }
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(crate) async fn gate(
    AxState(state): AxState<Arc<State>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let headers = request.headers();
    if state.loopback_only {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !loopback_host(host) {
            return refuse(
                &state,
                &path,
                StatusCode::MISDIRECTED_REQUEST,
                "this dashboard answers only to 127.0.0.1, localhost or [::1]; to serve other names, set a token and listen on another address".into(),
            );
        }
    }
    let public = path == "/login" || path.starts_with("/static/");
    if !public && !authenticated(&state, headers) {
        if is_api(&path) {
            let mut r = refuse(
                &state,
                &path,
                StatusCode::UNAUTHORIZED,
                "send the dashboard's token as `Authorization: Bearer TOKEN`".into(),
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
            return r;
        }
        return Redirect::to(&state.href("/login")).into_response();
    }
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    if let Some(why) = cross_site(headers) {
        return refuse(&state, &path, StatusCode::FORBIDDEN, why);
    }
    if path == "/login" {
        return next.run(request).await;
    }
    if state.read_only {
        return refuse(
            &state,
            &path,
            StatusCode::FORBIDDEN,
            "this dashboard is read-only: it changes nothing".into(),
        );
    }
    let header_token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let (parts, body) = request.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_FORM).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(
                &state,
                &path,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {MAX_FORM} bytes"),
            );
        }
    };
    let token = header_token.or_else(|| is_form.then(|| form_field(&bytes, "csrf")).flatten());
    if !token.is_some_and(|t| same(&t, &state.csrf)) {
        return refuse(
            &state,
            &path,
            StatusCode::FORBIDDEN,
            "the CSRF token is missing or wrong: reload the page and try again (API: send the token of GET /api/csrf as x-csrf-token)".into(),
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "localhost:1",
            "[::1]:9",
            "LOCALHOST",
        ] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:80",
            "10.0.0.1:80",
            "localhost.evil:1",
            "[::2]:1",
        ] {
            assert!(!loopback_host(bad), "{bad}");
        }
    }
}
