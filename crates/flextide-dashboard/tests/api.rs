//! The JSON API and the metrics through the router: lists, history,
//! replay and purges with their CSRF token and confirmations.

mod common;

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::{StatusCode, header},
};
use common::*;
use flextide_dashboard::Dashboard;
use flextide_queue_core::QueueProvider;

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
    let (_, _, body) = send_to(
        &dashboard.router(),
        get("/api/queues/orders/history"),
        Body::empty(),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
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
async fn api_delete_needs_the_csrf_token_and_ids() {
    let f = fixture(|b| b).await;
    let dead = f.orders.dead_letters(10).await.unwrap();
    let id1 = dead[1].message.id.as_str();
    let uri = "/api/queues/orders/dead-letters/delete";
    let body = format!(r#"{{"ids":["{id1}","nope"]}}"#);
    let (status, _, text) = f.api_post(uri, &body, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("CSRF"), "{text}");
    let (status, _, _) = f.api_post(uri, &body, Some("wrong")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(dead_count(&f.orders).await, 3);

    for bad in [
        r#"{}"#,
        r#"{"ids":[]}"#,
        "not json",
        r#"{"ids":["a"],"all":true}"#,
    ] {
        let (status, _, text) = f.api_post(uri, bad, Some(&f.csrf)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {text}");
    }
    let (status, _, text) = f.api_post(uri, &body, Some(&f.csrf)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v["deleted"].as_u64(), v["not_found"].as_u64()),
        (Some(1), Some(1))
    );
    let left: Vec<_> = f
        .orders
        .dead_letters(10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.message.id)
        .collect();
    assert_eq!(
        left,
        vec![dead[0].message.id.clone(), dead[2].message.id.clone()]
    );

    let (status, _, text) = f
        .api_post(
            "/api/queues/nowhere/dead-letters/delete",
            r#"{"ids":["a"]}"#,
            Some(&f.csrf),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
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
