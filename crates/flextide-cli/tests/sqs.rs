//! The program against an SQS server (`FLEXTIDE_TEST_SQS_URL`, e.g. a local
//! `moto_server`, with `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! `AWS_REGION` set). Built only with the `sqs` feature:
//! `cargo test -p flextide-cli --features sqs --test sqs`.

mod common;

use std::time::{Duration, Instant};

use common::Scratch;

/// The server's URL, or `None` (the test says it skipped) unless
/// `FLEXTIDE_TEST_REQUIRE` asks for SQS, in which case it fails.
fn server() -> Option<String> {
    match std::env::var("FLEXTIDE_TEST_SQS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let required = std::env::var("FLEXTIDE_TEST_REQUIRE").unwrap_or_default();
            assert!(
                !(required == "all" || required.split(',').any(|b| b.trim() == "sqs")),
                "FLEXTIDE_TEST_REQUIRE asks for SQS but FLEXTIDE_TEST_SQS_URL is not set"
            );
            eprintln!("skipped: FLEXTIDE_TEST_SQS_URL is not set");
            None
        }
    }
}

fn sqs(s: &Scratch, url: &str, args: &[&str]) -> std::process::Output {
    s.flextide(args)
        .env("QUEUE_PROVIDER", "sqs")
        .env("AWS_ENDPOINT_URL", url)
        .output()
        .unwrap()
}

/// A queue made without Flextide (no redrive policy, no dead-letter queue)
/// has no dead letters: a message that fails for good is parked (hidden
/// for 15 minutes), which SQS counts as in flight, and after that it fails
/// and is parked again. `work --until-idle` must stop all the same.
#[test]
fn until_idle_stops_on_a_queue_without_dead_letters() {
    let Some(url) = server() else { return };
    let s = Scratch::new("sqs-idle");
    let name = unique("cli-idle");
    create_plain_queue(&url, &name);
    for payload in ["good", "bad"] {
        let out = sqs(&s, &url, &["push", "--queue", &name, payload]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let started = Instant::now();
    let mut child = s
        .flextide(&[
            "work",
            "--queue",
            &name,
            "--exec",
            r#"[ "$(cat)" = good ] || exit 65"#,
            "--until-idle",
            "1",
        ])
        .env("QUEUE_PROVIDER", "sqs")
        .env("AWS_ENDPOINT_URL", &url)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Generous: it stops within seconds; before the fix it never did.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("work --until-idle did not stop within 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "{status:?}");
    let mut summary = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut summary).unwrap();
    assert!(
        summary.contains("processed 1") && summary.contains("dead-lettered 0"),
        "the bad message was parked, not dead-lettered: {summary}"
    );
}

/// A queue name no earlier run used (SQS keeps deleted names for a while).
fn unique(stem: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{stem}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// Creates a queue with nothing but its name (`CreateQueue` through the
/// server's query API, as another tool would), so it has no dead-letter
/// queue.
fn create_plain_queue(url: &str, name: &str) {
    let out = std::process::Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            "-H",
            "Authorization: AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
            "-d",
            &format!("Action=CreateQueue&QueueName={name}&Version=2012-11-05"),
            url,
        ])
        .output()
        .expect("curl runs");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("QueueUrl"),
        "CreateQueue {name}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `queues` lists the queue `queue create` made, without the dead-letter
/// queue it made for it.
#[test]
fn queues_lists_created_queues_without_their_dead_letter_queues() {
    let Some(url) = server() else { return };
    let s = Scratch::new("sqs-queues");
    let name = unique("cli-list");
    let out = sqs(&s, &url, &["queue", "create", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sqs(&s, &url, &["queues", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).unwrap();
    let names: Vec<String> = listed
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["queue"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(names.contains(&name), "{listed}");
    assert!(
        !names.iter().any(|n| n.starts_with(&format!("{name}-dlq"))),
        "{listed}"
    );
    let _ = sqs(&s, &url, &["queue", "delete", &name, "--yes"]);
}
