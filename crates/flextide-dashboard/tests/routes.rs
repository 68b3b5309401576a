//! Every route of the router, driven with `tower::ServiceExt::oneshot`:
//! status codes, escaping, the token, CSRF and same-origin refusals,
//! read-only mode, the confirmations, metrics and the JSON API.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use bytes::Bytes;
use flextide_dashboard::{Dashboard, DashboardBuilder};
use flextide_queue_core::{Message, QueueOptions, QueueProvider};
use flextide_queue_memory::MemoryQueue;
use http_body_util::BodyExt;
use tower::ServiceExt;

const XSS: &str = "<script>alert(1)</script>";
const XSS_REASON: &str = "<img src=x onerror=alert(2)>";
const TOKEN: &str = "0123456789abcdef-secret-token";

struct Fixture {
    app: Router,
    orders: MemoryQueue,
    csrf: String,
}

/// A memory queue "orders": three dead letters (one reason with markup),
/// then waiting: the script payload, JSON and binary.
async fn orders() -> MemoryQueue {
    let q = MemoryQueue::new("orders", QueueOptions::default()).unwrap();
    for reason in [XSS_REASON, "timeout", "max attempts exceeded"] {
        q.push(Message::new(Bytes::from_static(b"{\"dead\":true}")))
            .await
            .unwrap();
        let d = q.pop(Duration::from_secs(1)).await.unwrap().unwrap();
        q.dead_letter(&d.receipt, reason).await.unwrap();
    }
    q.push(Message::new(Bytes::from_static(XSS.as_bytes())))
        .await
        .unwrap();
    q.push(Message::new(Bytes::from_static(
        br#"{"step":"send-invoice"}"#,
    )))
    .await
    .unwrap();
    q.push(Message::new(Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef])))
        .await
        .unwrap();
    q
}

async fn fixture(configure: impl FnOnce(DashboardBuilder) -> DashboardBuilder) -> Fixture {
    let orders = orders().await;
    let emails = MemoryQueue::new("emails", QueueOptions::default()).unwrap();
    let dashboard = configure(
        Dashboard::builder()
            .queue("orders", Arc::new(orders.clone()))
            .queue("emails", Arc::new(emails)),
    )
    .build()
    .unwrap();
    let app = dashboard.router();
    let mut f = Fixture {
        app,
        orders,
        csrf: String::new(),
    };
    let (status, _, body) = f
        .send(get("/api/csrf").header(header::AUTHORIZATION, format!("Bearer {TOKEN}")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    f.csrf = v["csrf"].as_str().unwrap().to_owned();
    f
}

fn get(uri: &str) -> axum::http::request::Builder {
    Request::get(uri).header(header::HOST, "127.0.0.1:8080")
}

fn post(uri: &str) -> axum::http::request::Builder {
    Request::post(uri).header(header::HOST, "127.0.0.1:8080")
}

impl Fixture {
    async fn send(&self, req: axum::http::request::Builder) -> (StatusCode, HeaderMap, String) {
        self.send_body(req, Body::empty()).await
    }

    async fn send_body(
        &self,
        req: axum::http::request::Builder,
        body: Body,
    ) -> (StatusCode, HeaderMap, String) {
        let response = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    async fn form(&self, uri: &str, fields: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send_body(
            post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
            Body::from(body),
        )
        .await
    }

    async fn api_post(
        &self,
        uri: &str,
        json: &str,
        csrf: Option<&str>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = post(uri).header(header::CONTENT_TYPE, "application/json");
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        self.send_body(req, Body::from(json.to_owned())).await
    }
}

async fn dead_count(q: &MemoryQueue) -> u64 {
    q.stats().await.unwrap().dead_lettered
}

#[tokio::test]
async fn overview_lists_every_queue_with_its_counts() {
    let f = fixture(|b| b).await;
    let (status, headers, body) = f.send(get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#"<tr data-queue="orders">"#), "{body}");
    assert!(body.contains(r#"<tr data-queue="emails">"#));
    assert!(body.contains(r#"data-field="ready">3<"#), "{body}");
    assert!(body.contains(r#"data-field="dead_letters">3<"#), "{body}");
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
}

#[tokio::test]
async fn queue_page_shows_payloads_and_reasons_as_text() {
    let f = fixture(|b| b).await;
    let (status, _, body) = f.send(get("/queues/orders")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{body}"
    );
    assert!(!body.contains(XSS), "a payload was rendered as markup");
    assert!(body.contains("&lt;img src=x onerror=alert(2)&gt;"));
    assert!(
        !body.contains(XSS_REASON),
        "a reason was rendered as markup"
    );
    assert!(body.contains("Replay all"));
    assert!(body.contains(r#"name="csrf""#));
    assert!(body.contains("0xdeadbeef (binary)"));
    assert!(body.contains(r#"data-chart="depth""#));
}

#[tokio::test]
async fn unknown_queue_is_404_on_page_and_api() {
    let f = fixture(|b| b).await;
    for uri in [
        "/queues/nope",
        "/api/queues/nope",
        "/api/queues/nope/history",
        "/queues/nope/dead-letters/purge",
    ] {
        let (status, _, body) = f.send(get(uri)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(body.contains("no queue named nope"), "{uri}: {body}");
    }
    let (status, _, _) = f.send(get("/no/such/page")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn message_view_escapes_pretty_prints_and_dumps_hex() {
    let f = fixture(|b| b).await;
    let waiting = f.orders.peek(10).await.unwrap();
    let href = |kind: &str, id: &str| {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("kind", kind)
            .append_pair("id", id)
            .finish();
        format!("/queues/orders/message?{q}")
    };
    let (status, _, body) = f.send(get(&href("waiting", waiting[0].id.as_str()))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(r#"data-kind="text">&lt;script&gt;alert(1)&lt;/script&gt;</pre>"#),
        "{body}"
    );
    let (_, _, body) = f.send(get(&href("waiting", waiting[1].id.as_str()))).await;
    assert!(
        body.contains("{\n  &quot;step&quot;: &quot;send-invoice&quot;\n}"),
        "{body}"
    );
    let (_, _, body) = f.send(get(&href("waiting", waiting[2].id.as_str()))).await;
    assert!(body.contains("00000000  de ad be ef"), "{body}");
    let dead = f.orders.dead_letters(10).await.unwrap();
    let (status, _, body) = f
        .send(get(&href("dead", dead[0].message.id.as_str())))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("&lt;img src=x onerror=alert(2)&gt;"));
    assert!(body.contains("dead letter"));
    let (status, _, _) = f.send(get(&href("dead", "no-such-id"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = f.send(get(&href("other", "x"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn api_lists_counts_history_messages_and_dead_letters() {
    let f = fixture(|b| b).await;
    let (status, headers, body) = f.send(get("/api/queues")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let orders = &v["queues"][0];
    assert_eq!(orders["name"], "orders");
    assert_eq!(orders["backend"], "memory");
    assert_eq!(orders["ready"], 3);
    assert_eq!(orders["dead_letters"], 3);
    assert_eq!(orders["rates"], "estimated");

    let (_, _, body) = f.send(get("/api/queues/orders")).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["in_flight"], 0);

    let (status, _, body) = f.send(get("/api/queues/orders/history")).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["samples"].is_array());

    let (_, _, body) = f.send(get("/api/queues/orders/messages?limit=2")).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["messages"].as_array().unwrap().len(), 2);
    assert_eq!(v["messages"][0]["payload"], XSS);

    let (_, _, body) = f.send(get("/api/queues/orders/dead-letters")).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["dead_letters"].as_array().unwrap().len(), 3);
    assert_eq!(v["dead_letters"][0]["reason"], XSS_REASON);
    assert!(v["dead_letters"][0]["attempts"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn sampling_feeds_the_history() {
    let q = orders().await;
    let dashboard = Dashboard::builder()
        .queue("orders", Arc::new(q.clone()))
        .build()
        .unwrap();
    dashboard.sample_now().await;
    let d = q.pop(Duration::from_secs(1)).await.unwrap().unwrap();
    q.dead_letter(&d.receipt, "x").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    dashboard.sample_now().await;
    let app = dashboard.router();
    let response = app
        .oneshot(
            get("/api/queues/orders/history")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let samples = v["samples"].as_array().unwrap();
    assert!(samples.len() >= 2, "{v}");
    let last = &samples[samples.len() - 1];
    assert_eq!(last["dead_letters"], 4, "{v}");
    assert!(last["failed_per_min"].as_f64().unwrap() > 0.0, "{v}");
}

#[tokio::test]
async fn api_replay_needs_the_csrf_token() {
    let f = fixture(|b| b).await;
    let (status, _, body) = f
        .api_post(
            "/api/queues/orders/dead-letters/replay",
            r#"{"oldest":1}"#,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let (status, _, _) = f
        .api_post(
            "/api/queues/orders/dead-letters/replay",
            r#"{"oldest":1}"#,
            Some("wrong"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(dead_count(&f.orders).await, 3);

    let (status, _, body) = f
        .api_post(
            "/api/queues/orders/dead-letters/replay",
            r#"{"oldest":1}"#,
            Some(&f.csrf),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["replayed"],
        1
    );
    assert_eq!(dead_count(&f.orders).await, 2);

    let (status, _, body) = f
        .api_post(
            "/api/queues/orders/dead-letters/replay",
            r#"{"ids":["nope"]}"#,
            Some(&f.csrf),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["replayed"], 0);
    assert_eq!(v["missing"][0], "nope");

    for bad in [
        r#"{}"#,
        r#"{"all":true,"oldest":2}"#,
        "not json",
        r#"{"every":true}"#,
    ] {
        let (status, _, body) = f
            .api_post("/api/queues/orders/dead-letters/replay", bad, Some(&f.csrf))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, _, body) = f
        .api_post(
            "/api/queues/orders/dead-letters/replay",
            r#"{"all":true}"#,
            Some(&f.csrf),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(dead_count(&f.orders).await, 0);
}

#[tokio::test]
async fn api_purges_need_the_queue_name() {
    let f = fixture(|b| b).await;
    let (status, _, body) = f
        .api_post(
            "/api/queues/orders/dead-letters/purge",
            r#"{"confirm":"emails"}"#,
            Some(&f.csrf),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(dead_count(&f.orders).await, 3);
    let (status, _, body) = f
        .api_post(
            "/api/queues/orders/dead-letters/purge",
            r#"{"confirm":"orders"}"#,
            Some(&f.csrf),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["purged"],
        3
    );

    let (status, _, _) = f
        .api_post("/api/queues/orders/purge", r#"{"confirm":"orders"}"#, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, body) = f
        .api_post(
            "/api/queues/orders/purge",
            r#"{"confirm":"orders"}"#,
            Some(&f.csrf),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(f.orders.stats().await.unwrap().depth, 0);
}

#[tokio::test]
async fn form_replays_one_selected_and_all() {
    let f = fixture(|b| b).await;
    let dead = f.orders.dead_letters(10).await.unwrap();
    let id0 = dead[0].message.id.as_str();
    let (status, headers, body) = f
        .form(
            "/queues/orders/dead-letters/replay",
            &[("csrf", &f.csrf), ("one", id0)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(
        headers[header::LOCATION],
        "/queues/orders?done=replayed&n=1&missing=0"
    );
    assert_eq!(dead_count(&f.orders).await, 2);

    let (status, _, _) = f
        .form(
            "/queues/orders/dead-letters/replay",
            &[("csrf", &f.csrf), ("selected", "1")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "nothing selected");

    let id1 = dead[1].message.id.as_str();
    let (_, headers, _) = f
        .form(
            "/queues/orders/dead-letters/replay",
            &[
                ("csrf", &f.csrf),
                ("id", id1),
                ("id", id0),
                ("selected", "1"),
            ],
        )
        .await;
    assert_eq!(
        headers[header::LOCATION],
        "/queues/orders?done=replayed&n=1&missing=1"
    );
    assert_eq!(dead_count(&f.orders).await, 1);

    let (_, headers, _) = f
        .form(
            "/queues/orders/dead-letters/replay",
            &[("csrf", &f.csrf), ("all", "1")],
        )
        .await;
    assert_eq!(
        headers[header::LOCATION],
        "/queues/orders?done=replayed&n=1&missing=0"
    );
    assert_eq!(dead_count(&f.orders).await, 0);

    let (status, _, body) = f
        .send(get("/queues/orders?done=replayed&n=1&missing=1"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Replayed 1 dead letter."), "{body}");
    let (_, _, body) = f.send(get("/queues/orders?done=%3Cb%3Ehi")).await;
    assert!(
        !body.contains("<b>hi"),
        "a notice is never taken from the URL"
    );
}

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

    let form = |extra: (&'static str, &'static str)| {
        post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(extra.0, extra.1)
    };
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
async fn purge_pages_confirm_with_the_name_and_count() {
    let f = fixture(|b| b).await;
    let (status, _, body) = f.send(get("/queues/orders/dead-letters/purge")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("3 dead letters of orders"), "{body}");
    assert!(body.contains("Purge 3 dead letters of orders"), "{body}");

    let uri = "/queues/orders/dead-letters/purge";
    let (status, _, body) = f
        .form(uri, &[("csrf", &f.csrf), ("confirm", "emails")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("confirm with the queue"), "{body}");
    assert_eq!(dead_count(&f.orders).await, 3);
    let (status, headers, _) = f
        .form(uri, &[("csrf", &f.csrf), ("confirm", "orders")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers[header::LOCATION],
        "/queues/orders?done=dlq-purged&n=3"
    );
    assert_eq!(dead_count(&f.orders).await, 0);

    let (status, _, body) = f.send(get("/queues/orders/purge")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("every message of orders for good (3 ready"),
        "{body}"
    );
    let (status, _, _) = f.form("/queues/orders/purge", &[("csrf", &f.csrf)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, headers, _) = f
        .form(
            "/queues/orders/purge",
            &[("csrf", &f.csrf), ("confirm", "orders")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/queues/orders?done=purged&n=3");
    assert_eq!(f.orders.stats().await.unwrap().depth, 0);
}

#[tokio::test]
async fn read_only_refuses_every_change_and_hides_the_forms() {
    let f = fixture(|b| b.read_only(true)).await;
    let (_, _, body) = f.send(get("/queues/orders")).await;
    assert!(!body.contains("Replay all"), "{body}");
    assert!(!body.contains("Purge"), "{body}");
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
    let (status, _, _) = f
        .api_post(
            "/api/queues/orders/dead-letters/replay",
            r#"{"all":true}"#,
            Some(&f.csrf),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
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
            post("/queues/orders/dead-letters/replay")
                .header(header::COOKIE, &session)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
            Body::from("all=1"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = f
        .send_body(
            post("/queues/orders/dead-letters/replay")
                .header(header::COOKIE, &session)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
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

#[tokio::test]
async fn metrics_only_when_enabled() {
    let f = fixture(|b| b).await;
    let (status, _, _) = f.send(get("/metrics")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let f = fixture(|b| b.metrics(true)).await;
    let (status, headers, body) = f.send(get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(
        body.contains(r#"flextide_queue_ready{queue="orders",backend="memory"} 3"#),
        "{body}"
    );
    assert!(
        body.contains(r#"flextide_queue_dead_letters{queue="orders",backend="memory"} 3"#),
        "{body}"
    );
    assert!(
        body.contains(r#"flextide_queue_up{queue="emails",backend="memory"} 1"#),
        "{body}"
    );
    assert!(body.trim_end().ends_with("# EOF"));
}

#[tokio::test]
async fn static_assets_are_embedded() {
    let f = fixture(|b| b).await;
    let (status, headers, body) = f.send(get("/static/app.js")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(body.contains("textContent"));
    let (status, headers, _) = f.send(get("/static/app.css")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
}

#[tokio::test]
async fn mounted_under_a_base_path() {
    let q = orders().await;
    let dashboard = Dashboard::builder()
        .queue("orders", Arc::new(q))
        .base_path("/admin/queues/")
        .build()
        .unwrap();
    let app = Router::new().nest("/admin/queues", dashboard.router());
    let response = app
        .oneshot(get("/admin/queues").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&bytes);
    assert!(
        body.contains(r#"href="/admin/queues/queues/orders""#),
        "{body}"
    );
    assert!(
        body.contains(r#"src="/admin/queues/static/app.js""#),
        "{body}"
    );
    assert!(
        body.contains(r#"class="brand" href="/admin/queues""#),
        "{body}"
    );
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

/// A queue that lacks every optional operation (as RabbitMQ and SQS lack
/// peek): the pages say so, the API answers 501.
#[derive(Debug)]
struct Minimal(MemoryQueue);

#[async_trait::async_trait]
impl QueueProvider for Minimal {
    fn queue_name(&self) -> &str {
        self.0.queue_name()
    }
    fn capabilities(&self) -> flextide_queue_core::Capabilities {
        flextide_queue_core::Capabilities::default()
    }
    async fn push(
        &self,
        m: Message,
    ) -> flextide_queue_core::Result<flextide_queue_core::MessageId> {
        self.0.push(m).await
    }
    async fn pop_batch(
        &self,
        max: usize,
        wait: Duration,
    ) -> flextide_queue_core::Result<Vec<flextide_queue_core::Delivery>> {
        self.0.pop_batch(max, wait).await
    }
    async fn delete(&self, r: &flextide_queue_core::Receipt) -> flextide_queue_core::Result<()> {
        self.0.delete(r).await
    }
    async fn nack(
        &self,
        r: &flextide_queue_core::Receipt,
        d: Duration,
    ) -> flextide_queue_core::Result<()> {
        self.0.nack(r, d).await
    }
    async fn stats(&self) -> flextide_queue_core::Result<flextide_queue_core::QueueStats> {
        self.0.stats().await
    }
    fn backend_name(&self) -> &'static str {
        "minimal"
    }
}

#[tokio::test]
async fn a_backend_without_the_optional_operations_degrades() {
    let q = MemoryQueue::new("bare", QueueOptions::default()).unwrap();
    q.push(Message::new(Bytes::from_static(b"x")))
        .await
        .unwrap();
    let dashboard = Dashboard::builder()
        .queue("bare", Arc::new(Minimal(q)))
        .build()
        .unwrap();
    let f = Fixture {
        app: dashboard.router(),
        orders: MemoryQueue::new("unused", QueueOptions::default()).unwrap(),
        csrf: String::new(),
    };
    let (status, _, body) = f.send(get("/queues/bare")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("cannot list waiting messages"), "{body}");
    assert!(
        body.contains("does not support dead_letters") || body.contains("dead_letters"),
        "{body}"
    );
    assert!(!body.contains("Purge waiting messages"), "{body}");
    assert!(
        body.contains(r#"data-field="ready">1<"#),
        "the counts still show: {body}"
    );
    for uri in ["/api/queues/bare/messages", "/api/queues/bare/dead-letters"] {
        let (status, _, body) = f.send(get(uri)).await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{uri}: {body}");
    }
}
