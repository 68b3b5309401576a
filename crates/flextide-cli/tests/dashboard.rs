//! `flextide dashboard` end to end on a temporary SQLite file: it serves
//! the queues the backend lists (or QUEUE_NAMES), answers the JSON API,
//! refuses other Host names on loopback, wants QUEUE_DASHBOARD_TOKEN
//! before listening elsewhere, and asks for the token when one is set.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Stdio},
};

use common::Scratch;

/// The running command, killed when the test ends (also on a failure).
struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(s: &Scratch, env: &[(&str, &str)], args: &[&str]) -> Server {
    let mut cmd = s.flextide(&[&["dashboard", "--listen", "127.0.0.1:0"][..], args].concat());
    cmd.env_remove("QUEUE_NAMES")
        .env_remove("QUEUE_DASHBOARD_TOKEN")
        .env_remove("QUEUE_DASHBOARD_LISTEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    assert!(!line.contains("password"), "{line}");
    Server(child, addr)
}

/// One HTTP/1.1 GET; the status and the body.
fn get(addr: &str, path: &str, host: &str, extra: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn serves_the_listed_queues_on_loopback() {
    let s = Scratch::new("dashboard-serve");
    s.ok(&["push", "--queue", "alpha", "a1"]);
    s.ok(&["push", "--queue", "alpha", "<script>alert(1)</script>"]);
    s.ok(&["push", "--queue", "beta", "b1"]);
    let server = start(&s, &[], &[]);
    let (status, body) = get(&server.1, "/api/queues", "127.0.0.1", "");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value =
        serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"));
    let queues = v["queues"].as_array().unwrap();
    let alpha = queues.iter().find(|q| q["name"] == "alpha").unwrap();
    assert_eq!(alpha["ready"], 2);
    assert_eq!(alpha["backend"], "sqlite");
    assert!(queues.iter().any(|q| q["name"] == "beta"));

    let (status, body) = get(&server.1, "/queues/alpha", "localhost", "");
    assert_eq!(status, 200);
    assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!body.contains("<script>alert(1)"));
    // Loopback without a token: other Host names are refused (DNS rebinding).
    let (status, _) = get(&server.1, "/api/queues", "rebind.example", "");
    assert_eq!(status, 421);
    let (status, _) = get(&server.1, "/metrics", "127.0.0.1", "");
    assert_eq!(status, 404, "metrics are off unless --metrics");
}

#[test]
fn queue_names_token_and_refusals() {
    let s = Scratch::new("dashboard-token");
    s.ok(&["push", "--queue", "alpha", "a1"]);
    s.ok(&["push", "--queue", "beta", "b1"]);
    let token = "a-long-random-token-0123456789";
    let server = start(
        &s,
        &[("QUEUE_NAMES", "beta"), ("QUEUE_DASHBOARD_TOKEN", token)],
        &["--metrics", "--read-only"],
    );
    let (status, _) = get(&server.1, "/api/queues", "127.0.0.1", "");
    assert_eq!(status, 401);
    let auth = format!("Authorization: Bearer {token}\r\n");
    let (status, body) = get(&server.1, "/api/queues", "127.0.0.1", &auth);
    assert_eq!(status, 200);
    assert!(
        body.contains("\"beta\"") && !body.contains("\"alpha\""),
        "{body}"
    );
    let (status, body) = get(&server.1, "/metrics", "127.0.0.1", &auth);
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"flextide_queue_ready{queue="beta",backend="sqlite"} 1"#),
        "{body}"
    );
    drop(server);

    let out = s.run(&["dashboard", "--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("QUEUE_DASHBOARD_TOKEN"), "{e}");

    let out = s
        .flextide(&["dashboard", "--listen", "127.0.0.1:0"])
        .env("QUEUE_PROVIDER", "memory")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("memory"));
}
