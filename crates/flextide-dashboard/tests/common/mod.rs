//! The fixture of the router tests: two memory queues behind a dashboard,
//! and requests sent with `tower::ServiceExt::oneshot`.

#![allow(dead_code, unreachable_pub)]

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

pub const XSS: &str = "<script>alert(1)</script>";
pub const XSS_REASON: &str = "<img src=x onerror=alert(2)>";
pub const TOKEN: &str = "0123456789abcdef-secret-token";

pub struct Fixture {
    pub app: Router,
    pub orders: MemoryQueue,
    pub csrf: String,
}

/// A memory queue "orders": three dead letters (one reason with markup),
/// then waiting: the script payload, JSON and binary.
pub async fn orders() -> MemoryQueue {
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

pub async fn fixture(configure: impl FnOnce(DashboardBuilder) -> DashboardBuilder) -> Fixture {
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

pub fn get(uri: &str) -> axum::http::request::Builder {
    Request::get(uri).header(header::HOST, "127.0.0.1:8080")
}

pub fn post(uri: &str) -> axum::http::request::Builder {
    Request::post(uri).header(header::HOST, "127.0.0.1:8080")
}

/// A POST of an HTML form (the body is `application/x-www-form-urlencoded`).
pub fn form_post(uri: &str) -> axum::http::request::Builder {
    post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
}

/// Sends one request through `app`: its status, headers and body as text.
pub async fn send_to(
    app: &Router,
    req: axum::http::request::Builder,
    body: Body,
) -> (StatusCode, HeaderMap, String) {
    let response = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

impl Fixture {
    pub async fn send(&self, req: axum::http::request::Builder) -> (StatusCode, HeaderMap, String) {
        self.send_body(req, Body::empty()).await
    }

    pub async fn send_body(
        &self,
        req: axum::http::request::Builder,
        body: Body,
    ) -> (StatusCode, HeaderMap, String) {
        send_to(&self.app, req, body).await
    }

    pub async fn form(
        &self,
        uri: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send_body(form_post(uri), Body::from(body)).await
    }

    pub async fn api_post(
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

pub async fn dead_count(q: &MemoryQueue) -> u64 {
    q.stats().await.unwrap().dead_lettered
}
