//! Errors from SQS are readable sentences, never Rust `Debug` dumps, and
//! point at the fix. No server needed: these talk to nothing.

use std::time::Duration;

use flextide_queue_sqs::{
    QueueKind, SqsClient,
    aws_config::{self, BehaviorVersion, Region},
    core::{QueueError, QueueOptions},
};

/// A port nothing listens on.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("127.0.0.1:{}", addr.port())
}

fn text(e: &QueueError) -> String {
    let text = e.to_string();
    println!("{text}");
    assert!(!text.contains("DispatchFailure"), "{text}");
    assert!(!text.contains("{ "), "a Debug dump: {text}");
    text
}

#[tokio::test]
async fn connection_refused_names_the_address() {
    let addr = closed_port().await;
    let config = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://{addr}"))
        .credentials_provider(
            flextide_queue_sqs::aws_sdk_sqs::config::SharedCredentialsProvider::new(
                flextide_queue_sqs::aws_sdk_sqs::config::Credentials::new(
                    "test", "test", None, None, "test",
                ),
            ),
        )
        .build();
    let e = SqsClient::from_sdk_config(&config)
        .open("orders", QueueKind::Standard, QueueOptions::default())
        .await
        .unwrap_err();
    let text = text(&e);
    assert!(e.is_retryable(), "{text}");
    assert!(
        text.contains(&format!("connection refused at {addr}")),
        "{text}"
    );
}

#[tokio::test]
async fn missing_credentials_say_what_to_set() {
    let addr = closed_port().await;
    let config = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://{addr}"))
        .build();
    let e = tokio::time::timeout(
        Duration::from_secs(60),
        SqsClient::from_sdk_config(&config).open(
            "orders",
            QueueKind::Standard,
            QueueOptions::default(),
        ),
    )
    .await
    .unwrap()
    .unwrap_err();
    let text = text(&e);
    assert!(matches!(e, QueueError::Configuration { .. }), "{text}");
    assert!(text.contains("AWS_ACCESS_KEY_ID"), "{text}");
}
