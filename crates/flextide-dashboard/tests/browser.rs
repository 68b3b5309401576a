//! The dashboard in a real browser: serves two memory queues (one with a
//! `<script>` payload and dead letters, one with a worker that fails some
//! messages once), then runs `tests/browser/e2e.mjs` — playwright-core
//! driving Debian's chromium — which checks the overview's counts against
//! `stats()`, the escaping, the payload view, replays a dead letter and
//! sees it handled, deletes the other one from its row (asked first), and
//! purges with the confirmation, taking screenshots. Here the queues then
//! show what the page did: the deleted dead letter is gone from
//! `dead_letters()` and was never handled.
//!
//! Needs node, chromium (`/usr/bin/chromium`, or
//! `FLEXTIDE_TEST_DASHBOARD_CHROMIUM`) and playwright-core installed by
//! `.ci/run` into `~/.cache/flextide-ci/dashboard-node` (or
//! `FLEXTIDE_TEST_DASHBOARD_NODE_MODULES`). Missing: the test is ignored
//! with the reason, or fails when `FLEXTIDE_TEST_REQUIRE` names `dashboard`
//! (or `all`). Screenshots go to `FLEXTIDE_TEST_DASHBOARD_SCREENSHOTS`, else
//! a folder under the target directory.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use flextide_dashboard::Dashboard;
use flextide_queue_conformance::is_required;
use flextide_queue_core::{Message, MessageId, QueueOptions, QueueProvider};
use flextide_queue_memory::{MemoryBroker, MemoryQueue};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

const NAME: &str = "browser::end_to_end";
const XSS: &str = "<script>alert(1)</script>";
const XSS_REASON: &str = "<img src=x onerror=alert(2)>";

struct Tools {
    node: PathBuf,
    chromium: PathBuf,
    node_modules: PathBuf,
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn find_tools() -> Result<Tools, String> {
    let node = env_path("FLEXTIDE_TEST_DASHBOARD_NODE").unwrap_or_else(|| "node".into());
    let node_ok = std::process::Command::new(&node)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_ok {
        return Err(format!(
            "node ({}) does not run: install Node.js (apt-get install nodejs) or set FLEXTIDE_TEST_DASHBOARD_NODE",
            node.display()
        ));
    }
    let chromium =
        env_path("FLEXTIDE_TEST_DASHBOARD_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into());
    if !chromium.is_file() {
        return Err(format!(
            "no chromium at {}: apt-get install chromium, or set FLEXTIDE_TEST_DASHBOARD_CHROMIUM",
            chromium.display()
        ));
    }
    let node_modules = env_path("FLEXTIDE_TEST_DASHBOARD_NODE_MODULES").unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/flextide-ci/dashboard-node/node_modules")
    });
    if !node_modules.join("playwright-core/package.json").is_file() {
        return Err(format!(
            "no playwright-core in {}: run .ci/run (it installs it there from crates/flextide-dashboard/tests/browser/package-lock.json), or set FLEXTIDE_TEST_DASHBOARD_NODE_MODULES",
            node_modules.display()
        ));
    }
    Ok(Tools {
        node,
        chromium,
        node_modules,
    })
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let trial = match find_tools() {
        Ok(tools) => Trial::test(NAME, move || run(tools).map_err(Failed::from)),
        Err(why) if is_required("dashboard") => Trial::test(NAME, move || {
            Err(Failed::from(format!(
                "FLEXTIDE_TEST_REQUIRE names dashboard (or all), but {why}"
            )))
        }),
        Err(why) => Trial::ignorable_test(NAME, move || Ok(Completion::ignored_with(why))),
    };
    libtest_mimic::run(&args, vec![trial]).exit_code()
}

fn run(tools: Tools) -> Result<(), String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(scenario(tools))
}

async fn scenario(tools: Tools) -> Result<(), String> {
    let e = |e: flextide_queue_core::QueueError| e.to_string();
    let broker = MemoryBroker::new();
    let orders = broker.open("orders", QueueOptions::default()).map_err(e)?;
    let emails = broker.open("emails", QueueOptions::default()).map_err(e)?;

    // orders: three dead letters (one reason with markup), then three
    // waiting messages: the script payload, JSON, binary.
    let reasons = [
        XSS_REASON,
        "timeout talking to the invoice service",
        "max attempts exceeded",
    ];
    for (i, reason) in reasons.iter().enumerate() {
        orders
            .push(Message::new(Bytes::from(format!("{{\"invoice\":{i}}}"))))
            .await
            .map_err(e)?;
        let d = orders
            .pop(Duration::from_secs(5))
            .await
            .map_err(e)?
            .ok_or("no message to dead-letter")?;
        orders.dead_letter(&d.receipt, reason).await.map_err(e)?;
    }
    orders
        .push(Message::new(Bytes::from_static(XSS.as_bytes())))
        .await
        .map_err(e)?;
    orders
        .push(Message::new(Bytes::from_static(
            br#"{"step":"send-invoice","n":1}"#,
        )))
        .await
        .map_err(e)?;
    orders
        .push(Message::new(Bytes::from_static(&[
            0xde, 0xad, 0xbe, 0xef, 0, 1, 2,
        ])))
        .await
        .map_err(e)?;

    // emails: a worker that dead-letters a "flaky" message the first time
    // it sees it and handles everything else (and the flaky ones replayed).
    let handled: Arc<Mutex<Vec<MessageId>>> = Arc::default();
    let worker = tokio::spawn(work(emails.clone(), handled.clone()));
    for payload in ["flaky-1", "flaky-2", "ok-1", "ok-2", "ok-3"] {
        emails
            .push(Message::new(Bytes::from(payload)))
            .await
            .map_err(e)?;
    }
    wait_until(
        "the worker dead-lettered the two flaky messages",
        || async {
            let s = emails.stats().await.unwrap();
            s.dead_lettered == 2 && s.depth == 0 && s.in_flight == 0
        },
    )
    .await?;
    let dead = emails.dead_letters(2).await.map_err(e)?;
    // The page replays the first (oldest) and deletes the other.
    let (first_dead, second_dead) = (dead[0].message.id.clone(), dead[1].message.id.clone());

    let orders: Arc<dyn QueueProvider> = Arc::new(orders);
    let emails: Arc<dyn QueueProvider> = Arc::new(emails.clone());
    let dashboard = Dashboard::builder()
        .queue("orders", orders.clone())
        .queue("emails", emails.clone())
        .loopback_only(true)
        .sample_every(Duration::from_secs(1))
        .build()
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = {
        let dashboard = dashboard.clone();
        tokio::spawn(async move { dashboard.serve(listener, std::future::pending()).await })
    };

    let mut expected = serde_json::Map::new();
    for (name, q) in [("orders", &orders), ("emails", &emails)] {
        expected.insert(
            name.into(),
            serde_json::json!(flextide_admin_stats(&**q).await?),
        );
    }

    let shots = env_path("FLEXTIDE_TEST_DASHBOARD_SCREENSHOTS")
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots"));
    std::fs::create_dir_all(&shots).map_err(|e| format!("{}: {e}", shots.display()))?;
    // An ES module finds its packages beside it: run a copy of the script
    // in a folder whose node_modules is the installed one.
    let dir = std::env::temp_dir().join(format!("flextide-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let script = dir.join("e2e.mjs");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/e2e.mjs"),
        &script,
    )
    .map_err(|e| e.to_string())?;
    let link = dir.join("node_modules");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&tools.node_modules, &link).map_err(|e| e.to_string())?;

    let child = tokio::process::Command::new(&tools.node)
        .arg(&script)
        .env("DASHBOARD_URL", format!("http://{addr}"))
        .env("EXPECTED", serde_json::Value::Object(expected).to_string())
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", &tools.chromium)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), child).await;
    let _ = std::fs::remove_dir_all(&dir);
    server.abort();
    worker.abort();
    let out = out
        .map_err(|_| "the browser test took longer than 240 s".to_string())?
        .map_err(|e| format!("node did not start: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    if !out.status.success() {
        return Err(format!(
            "the browser test failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    println!("screenshots in {}", shots.display());

    // What the page did, seen from the queues.
    let o = orders.stats().await.map_err(e)?;
    if o.dead_lettered != 0 {
        return Err(format!(
            "orders still has {} dead letters after the purge",
            o.dead_lettered
        ));
    }
    let left = emails.dead_letters(10).await.map_err(e)?;
    if !left.is_empty() {
        let ids: Vec<&str> = left.iter().map(|d| d.message.id.as_str()).collect();
        return Err(format!(
            "emails still lists dead letters {ids:?}, none expected after one replay and one delete"
        ));
    }
    if !handled.lock().unwrap().contains(&first_dead) {
        return Err("the replayed dead letter was not handled by the worker".into());
    }
    if handled.lock().unwrap().contains(&second_dead) {
        return Err("the deleted dead letter was handled: it was replayed, not deleted".into());
    }
    if emails.stats().await.map_err(e)?.depth != 0 {
        return Err("emails has waiting messages: the deleted dead letter came back".into());
    }
    Ok(())
}

async fn flextide_admin_stats(q: &dyn QueueProvider) -> Result<serde_json::Value, String> {
    let s = q.stats().await.map_err(|e| e.to_string())?;
    Ok(serde_json::json!({
        "ready": s.depth,
        "in_flight": s.in_flight,
        "delayed": s.delayed,
        "dead_letters": s.dead_lettered,
    }))
}

/// The emails worker: "flaky" messages fail into the dead letters the
/// first time; everything else is handled (deleted) and recorded.
async fn work(queue: MemoryQueue, handled: Arc<Mutex<Vec<MessageId>>>) {
    let mut seen = HashSet::new();
    loop {
        let Ok(Some(d)) = queue.pop(Duration::from_millis(200)).await else {
            continue;
        };
        if d.message.payload.starts_with(b"flaky") && seen.insert(d.message.id.clone()) {
            let _ = queue
                .dead_letter(&d.receipt, "smtp said 451: try again later")
                .await;
        } else if queue.delete(&d.receipt).await.is_ok() {
            handled.lock().unwrap().push(d.message.id.clone());
        }
    }
}

async fn wait_until<F, Fut>(what: &str, mut ok: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..600 {
        if ok().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("timed out after 60 s waiting until {what}"))
}
