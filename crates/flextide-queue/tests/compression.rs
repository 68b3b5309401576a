//! `QUEUE_COMPRESSION=zstd` through the facade: payloads are stored
//! compressed and delivered as pushed; without the `zstd` feature the
//! setting is refused rather than ignored.
#![cfg(feature = "sqlite")]

use std::collections::HashMap;

use flextide_queue::Config;

fn config(vars: &[(&str, &str)]) -> Config {
    let map: HashMap<&str, &str> = vars.iter().copied().collect();
    Config::from_lookup(|k| map.get(k).map(|v| v.to_string())).unwrap()
}

#[cfg(feature = "zstd")]
#[tokio::test]
async fn compressed_on_the_wire_whole_in_the_handler() {
    use flextide_queue::Message;
    use std::time::Duration;
    let dir = std::env::temp_dir().join(format!("ftq-zstd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("q.db").display());
    let body = serde_json::to_vec(&serde_json::json!({
        "lines": (0..500).map(|i| serde_json::json!({"sku": format!("A-{i}"), "qty": i % 4}))
            .collect::<Vec<_>>()
    }))
    .unwrap();

    let compressed = flextide_queue::connect(&config(&[
        ("QUEUE_URL", &url),
        ("QUEUE_NAME", "zstd"),
        ("QUEUE_COMPRESSION", "zstd"),
    ]))
    .await
    .unwrap();
    compressed.push(Message::new(body.clone())).await.unwrap();

    // A consumer without compression sees the marked frame.
    let plain = flextide_queue::connect(&config(&[("QUEUE_URL", &url), ("QUEUE_NAME", "zstd")]))
        .await
        .unwrap();
    let stored = plain.peek(1).await.unwrap().remove(0);
    assert_eq!(
        stored.headers.get("content-encoding").map(String::as_str),
        Some("zstd")
    );
    assert!(stored.payload.len() * 4 < body.len());

    let d = compressed
        .pop(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a delivery");
    assert_eq!(d.message.payload, body);
    compressed.delete(&d.receipt).await.unwrap();
    compressed.close().await.unwrap();
    plain.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(not(feature = "zstd"))]
#[tokio::test]
async fn asking_for_compression_without_the_feature_is_an_error() {
    let e = flextide_queue::connect(&config(&[
        ("QUEUE_URL", "sqlite::memory:"),
        ("QUEUE_COMPRESSION", "zstd"),
    ]))
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("`zstd` feature"), "{e}");
}
