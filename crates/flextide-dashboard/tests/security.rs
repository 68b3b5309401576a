//! The gate: CSRF field and header, same-origin checks, read-only mode,
//! the token (bearer, login, session cookie), loopback-only Host names,
//! and the builder's refusals.

mod common;

use std::sync::Arc;

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use common::*;
use flextide_dashboard::{Dashboard, DashboardBuilder};
use flextide_queue_core::{QueueOptions, QueueProvider};
use flextide_queue_memory::MemoryQueue;

#[tokio::test]
async fn forms_need_the_csrf_field_and_the_same_origin() {
    let f = fixture(|b| b).await;
    let uri = "/queues/orders/dead-letters/replay";
    let (status, _, body) = f.form(uri, &[("all", "1")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("CSRF token is missing or wrong"), "{body}");
    let (status, _, _) = f.form(uri, &[("all", "1"), ("csrf", "0000")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(dead_count(&f.orders).await, 3);

    let form = |extra: (&'static str, &'static str)| form_post(uri).header(extra.0, extra.1);
    let body = format!("all=1&csrf={}", f.csrf);
    for extra in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let (status, _, text) = f.send_body(form(extra), Body::from(body.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{extra:?}: {text}");
    }
    assert_eq!(dead_count(&f.orders).await, 3);
    let (status, _, _) = f
        .send_body(
            form(("origin", "http://127.0.0.1:8080")),
            Body::from(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "same origin is let through");
    assert_eq!(dead_count(&f.orders).await, 0);
}

#[tokio::test]
async fn read_only_refuses_every_change_and_hides_the_forms() {
    let f = fixture(|b| b.read_only(true)).await;
    let (_, _, body) = f.send(get("/queues/orders")).await;
    assert!(!body.contains("Replay all"), "{body}");
    assert!(!body.contains("Purge"), "{body}");
    assert!(!body.contains("dead-letters/delete"), "{body}");
    assert!(body.contains("read-only"));
    let (status, _, body) = f
        .api_post(
            "/api/queues/orders/dead-letters/replay",
            r#"{"all":true}"#,
            Some(&f.csrf),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("read-only"), "{body}");
    let (status, _, _) = f
        .form(
            "/queues/orders/dead-letters/purge",
            &[("csrf", &f.csrf), ("confirm", "orders")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let id = f.orders.dead_letters(1).await.unwrap()[0]
        .message
        .id
        .clone();
    let (status, _, _) = f
        .form(
            "/queues/orders/dead-letters/delete",
            &[("csrf", &f.csrf), ("one", id.as_str())],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, body) = f
        .api_post(
            "/api/queues/orders/dead-letters/delete",
            &format!(r#"{{"ids":["{}"]}}"#, id.as_str()),
            Some(&f.csrf),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("read-only"), "{body}");
    let (status, _, _) = f
        .api_post(
            "/api/queues/orders/purge",
            r#"{"confirm":"orders"}"#,
            Some(&f.csrf),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(dead_count(&f.orders).await, 3);
    assert_eq!(f.orders.stats().await.unwrap().depth, 3);
    let (_, _, body) = f.send(get("/api/csrf")).await;
    assert!(body.contains(r#""read_only":true"#));
}

#[tokio::test]
async fn token_guards_pages_api_and_metrics() {
    let f = fixture(|b| b.token(TOKEN).metrics(true)).await;
    let (status, headers, _) = f.send(get("/")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/login");
    for uri in ["/api/queues", "/metrics", "/api/csrf"] {
        let (status, headers, _) = f.send(get(uri)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        let (status, _, _) = f
            .send(get(uri).header(header::AUTHORIZATION, "Bearer wrong-token-0123456"))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        let (status, _, _) = f
            .send(get(uri).header(header::AUTHORIZATION, format!("Bearer {TOKEN}")))
            .await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
    // A POST with the CSRF token but without the token is refused too.
    for (uri, json) in [
        ("/api/queues/orders/dead-letters/replay", r#"{"all":true}"#),
        ("/api/queues/orders/dead-letters/delete", r#"{"ids":["a"]}"#),
    ] {
        let (status, _, _) = f.api_post(uri, json, Some(&f.csrf)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    assert_eq!(dead_count(&f.orders).await, 3);

    let (status, _, body) = f.send(get("/login")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#"type="password""#));
    assert!(!body.contains(TOKEN));
    let (status, _, _) = f.send(get("/static/app.css")).await;
    assert_eq!(status, StatusCode::OK, "assets need no token");

    let (status, _, _) = f.form("/login", &[("token", "not-the-token")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, headers, _) = f.form("/login", &[("token", TOKEN)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(TOKEN),
        "the cookie is a session, not the token"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let (status, _, body) = f.send(get("/").header(header::COOKIE, &session)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains(TOKEN), "the token is never shown");
    let (status, _, _) = f
        .send(get("/").header(header::COOKIE, "flextide_dashboard_session=forged"))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // With the session, a form still needs the CSRF field.
    let (status, _, _) = f
        .send_body(
            form_post("/queues/orders/dead-letters/replay").header(header::COOKIE, &session),
            Body::from("all=1"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = f
        .send_body(
            form_post("/queues/orders/dead-letters/replay").header(header::COOKIE, &session),
            Body::from(format!("all=1&csrf={}", f.csrf)),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(dead_count(&f.orders).await, 0);
}

#[tokio::test]
async fn loopback_only_refuses_other_host_names() {
    let f = fixture(|b| b.loopback_only(true)).await;
    let (status, _, _) = f
        .send(Request::get("/").header(header::HOST, "rebind.evil.example:8080"))
        .await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    let (status, _, _) = f
        .send(Request::get("/api/queues").header(header::HOST, "rebind.evil.example"))
        .await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    let (status, _, _) = f
        .send(Request::get("/").header(header::HOST, "localhost:9"))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn builder_refuses_bad_input_and_debug_hides_the_token() {
    let q: Arc<dyn QueueProvider> =
        Arc::new(MemoryQueue::new("a", QueueOptions::default()).unwrap());
    let err = |b: DashboardBuilder| b.build().unwrap_err().to_string();
    assert!(err(Dashboard::builder()).contains("no queue"));
    assert!(err(Dashboard::builder().queue("bad name", q.clone())).contains("only ASCII"));
    assert!(
        err(Dashboard::builder()
            .queue("a", q.clone())
            .queue("a", q.clone()))
        .contains("twice")
    );
    assert!(
        err(Dashboard::builder().queue("a", q.clone()).token("short")).contains("16 characters")
    );
    assert!(
        err(Dashboard::builder()
            .queue("a", q.clone())
            .base_path("no-slash"))
        .contains("base path")
    );
    let d = Dashboard::builder()
        .queue("a", q)
        .token(TOKEN)
        .build()
        .unwrap();
    let debug = format!("{d:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(debug.contains("<redacted>"));
}
