//! SQS specifics that need a server (`FLEXTIDE_TEST_SQS_URL`, a moto or
//! LocalStack endpoint, with the AWS test credentials); ignored without one.

use flextide_queue_conformance::{integration_test, run_integration};
use flextide_queue_sqs::{
    QueueKind, SqsClient,
    core::{QueueError, QueueOptions},
};

fn text(e: &QueueError) -> String {
    let text = e.to_string();
    assert!(!text.contains("{ "), "a Debug dump: {text}");
    text
}

/// A queue without a dead-letter queue says so, and how to get one, when
/// asked for its dead letters (still `Unsupported`, as the contract says
/// for a missing capability).
async fn dead_letters_without_a_dead_letter_queue_say_how_to_get_one(endpoint: String) {
    let client = SqsClient::with_endpoint(&endpoint).await;
    let name = format!("no-dlq-{}", std::process::id());
    client
        .sdk()
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap();
    let queue = client
        .open(&name, QueueKind::Standard, QueueOptions::default())
        .await
        .unwrap();
    use flextide_queue_sqs::core::QueueProvider;
    assert!(!queue.capabilities().dead_letters);
    let e = queue.dead_letters(10).await.unwrap_err();
    client
        .delete_queue(&name, QueueKind::Standard)
        .await
        .unwrap();
    let text = text(&e);
    assert!(matches!(e, QueueError::Unsupported { .. }), "{text}");
    assert!(
        text.contains(&name) && text.contains("no dead-letter queue"),
        "{text}"
    );
    assert!(text.contains("RedrivePolicy"), "{text}");
}

fn main() -> std::process::ExitCode {
    run_integration(
        "sqs",
        "FLEXTIDE_TEST_SQS_URL",
        vec![integration_test!(
            dead_letters_without_a_dead_letter_queue_say_how_to_get_one
        )],
    )
}
