//! What the wrapper adds: compressed on the wire, decoded on the way out,
//! undecodable frames dead-lettered without stopping the pop.

use std::{sync::Arc, time::Duration};

use flextide_queue_compression::{CONTENT_ENCODING, Compressed, Compression, is_zstd};
use flextide_queue_core::{Message, QueueOptions, QueueProvider, backend::UNDECODABLE};
use flextide_queue_memory::MemoryBroker;

const WAIT: Duration = Duration::from_secs(5);

fn queue() -> (Arc<dyn QueueProvider>, Compressed) {
    let broker = MemoryBroker::new();
    let inner: Arc<dyn QueueProvider> =
        Arc::new(broker.open("q", QueueOptions::default()).unwrap());
    let wrapped = Compressed::new(inner.clone(), Compression::default());
    (inner, wrapped)
}

fn invoice_json(lines: usize) -> Vec<u8> {
    let items: Vec<String> = (0..lines)
        .map(|i| {
            format!(
                r#"{{"sku":"A-{i}","qty":{},"price":9.5,"note":"gift wrap"}}"#,
                i % 5
            )
        })
        .collect();
    format!(r#"{{"invoice":17,"lines":[{}]}}"#, items.join(",")).into_bytes()
}

#[tokio::test]
async fn large_payloads_travel_compressed_and_arrive_whole() {
    let (inner, q) = queue();
    let body = invoice_json(400);
    let id = q
        .push(Message::new(body.clone()).with_header("tenant", "9"))
        .await
        .unwrap();
    // What the backend stores is the frame, marked.
    let stored = inner.peek(1).await.unwrap().remove(0);
    assert!(is_zstd(&stored));
    assert!(
        stored.payload.len() * 4 < body.len(),
        "{} of {}",
        stored.payload.len(),
        body.len()
    );
    // Peek and pop through the wrapper show the payload as pushed.
    assert_eq!(q.peek(1).await.unwrap()[0].payload, body);
    let d = q.pop(WAIT).await.unwrap().expect("a delivery");
    assert_eq!(d.message.id, id);
    assert_eq!(d.message.payload, body);
    assert_eq!(
        d.message.headers.get("tenant").map(String::as_str),
        Some("9")
    );
    assert!(!d.message.headers.contains_key(CONTENT_ENCODING));
    // Dead letters are shown decoded too.
    q.dead_letter(&d.receipt, "handler failed").await.unwrap();
    assert_eq!(q.dead_letters(10).await.unwrap()[0].message.payload, body);
}

#[tokio::test]
async fn small_payloads_are_sent_as_they_are() {
    let (inner, q) = queue();
    q.push(Message::new("small")).await.unwrap();
    let stored = inner.peek(1).await.unwrap().remove(0);
    assert!(!is_zstd(&stored));
    assert_eq!(stored.payload, "small");
}

#[tokio::test]
async fn an_undecodable_frame_is_dead_lettered_and_the_pop_goes_on() {
    let (inner, q) = queue();
    // Another producer marked a payload as zstd that is not.
    inner
        .push(Message::new("garbage").with_header(CONTENT_ENCODING, "zstd"))
        .await
        .unwrap();
    let good = q.push(Message::new(invoice_json(100))).await.unwrap();
    let d = q.pop(WAIT).await.unwrap().expect("the good message");
    assert_eq!(d.message.id, good);
    q.delete(&d.receipt).await.unwrap();
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.starts_with(UNDECODABLE),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[0].message.payload, "garbage", "kept byte for byte");
    assert!(q.pop(Duration::from_millis(50)).await.unwrap().is_none());
}

#[tokio::test]
async fn an_undecodable_frame_alone_does_not_end_the_wait_early() {
    let (inner, q) = queue();
    inner
        .push(Message::new("garbage").with_header(CONTENT_ENCODING, "zstd"))
        .await
        .unwrap();
    let pusher = {
        let q = q.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            q.push(Message::new("later")).await.unwrap()
        })
    };
    // The pop moves the bad one aside and keeps waiting for the next.
    let d = q
        .pop(WAIT)
        .await
        .unwrap()
        .expect("the message pushed later");
    assert_eq!(d.message.id, pusher.await.unwrap());
}
