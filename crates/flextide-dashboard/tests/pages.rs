//! The pages through the router: overview, queue page, payload view,
//! replay forms, purge confirmations, assets, a nested base path, and a
//! backend without the optional operations.

mod common;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{StatusCode, header},
};
use bytes::Bytes;
use common::*;
use flextide_dashboard::Dashboard;
use flextide_queue_core::{Message, QueueOptions, QueueProvider};
use flextide_queue_memory::MemoryQueue;

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
    assert!(body.contains("Delete selected"), "{body}");
    assert!(
        body.contains(r#"formaction="/queues/orders/dead-letters/delete""#),
        "{body}"
    );
    assert!(
        body.contains("data-confirm=\"Delete dead letter "),
        "{body}"
    );
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
async fn form_deletes_one_and_selected() {
    let f = fixture(|b| b).await;
    let dead = f.orders.dead_letters(10).await.unwrap();
    let (id0, id1) = (dead[0].message.id.as_str(), dead[1].message.id.as_str());
    let uri = "/queues/orders/dead-letters/delete";
    let (status, _, body) = f.form(uri, &[("one", id0)]).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "needs the CSRF field: {body}"
    );
    let (status, headers, body) = f.form(uri, &[("csrf", &f.csrf), ("one", id0)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(
        headers[header::LOCATION],
        "/queues/orders?done=deleted&n=1&missing=0"
    );
    assert_eq!(dead_count(&f.orders).await, 2);

    let (status, _, _) = f.form(uri, &[("csrf", &f.csrf), ("selected", "1")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "nothing selected");
    let (_, headers, _) = f
        .form(
            uri,
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
        "/queues/orders?done=deleted&n=1&missing=1"
    );
    assert_eq!(dead_count(&f.orders).await, 1);
    assert_eq!(f.orders.stats().await.unwrap().depth, 3, "nothing replayed");

    let (_, _, body) = f
        .send(get("/queues/orders?done=deleted&n=1&missing=1"))
        .await;
    assert!(body.contains("Deleted 1 dead letter."), "{body}");
    assert!(
        body.contains("1 of the selected were no longer dead letters"),
        "{body}"
    );
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
    let (status, _, body) = send_to(&app, get("/admin/queues"), Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
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

/// A queue with everything memory has but deleting chosen dead letters.
#[derive(Debug)]
struct NoDelete(MemoryQueue);

#[async_trait::async_trait]
impl QueueProvider for NoDelete {
    fn queue_name(&self) -> &str {
        self.0.queue_name()
    }
    fn capabilities(&self) -> flextide_queue_core::Capabilities {
        flextide_queue_core::Capabilities {
            delete_dead_letters: false,
            ..self.0.capabilities()
        }
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
    async fn dead_letters(
        &self,
        limit: usize,
    ) -> flextide_queue_core::Result<Vec<flextide_queue_core::DeadLetter>> {
        self.0.dead_letters(limit).await
    }
    async fn stats(&self) -> flextide_queue_core::Result<flextide_queue_core::QueueStats> {
        self.0.stats().await
    }
    fn backend_name(&self) -> &'static str {
        "nodelete"
    }
}

#[tokio::test]
async fn delete_is_hidden_and_refused_without_the_capability() {
    let q = orders().await;
    let dashboard = Dashboard::builder()
        .queue("orders", Arc::new(NoDelete(q.clone())))
        .build()
        .unwrap();
    let mut f = Fixture {
        app: dashboard.router(),
        orders: q,
        csrf: String::new(),
    };
    let (_, _, body) = f.send(get("/api/csrf")).await;
    f.csrf = serde_json::from_str::<serde_json::Value>(&body).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, body) = f.send(get("/queues/orders")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Replay all"), "{body}");
    assert!(!body.contains("dead-letters/delete"), "{body}");
    let id = f.orders.dead_letters(1).await.unwrap()[0]
        .message
        .id
        .clone();
    let (status, _, body) = f
        .api_post(
            "/api/queues/orders/dead-letters/delete",
            &format!(r#"{{"ids":["{}"]}}"#, id.as_str()),
            Some(&f.csrf),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert!(body.contains("cannot delete chosen dead letters"), "{body}");
    let (status, _, _) = f
        .form(
            "/queues/orders/dead-letters/delete",
            &[("csrf", &f.csrf), ("one", id.as_str())],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(dead_count(&f.orders).await, 3);
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
